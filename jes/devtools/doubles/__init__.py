"""What the two test doubles share: the local control plane (:mod:`jes.devtools.controlplane`,
shipped) and the fake Kubernetes API (``fakes.fake_kube``, tests only, which imports this).

Modules: ``clock`` (real time, or a fake clock tests move by hand), ``faults`` (the base of an
injected failure and the thread-safe list that fires them) and ``server`` (an ASGI app served by
uvicorn on its own event loop in a background thread, as tests need it).

Only what both doubles mean the same way lives here: how a fault matches a request, what it
answers and how a dropped connection is made stay with each double.
"""
