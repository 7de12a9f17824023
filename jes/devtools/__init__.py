"""devtools: ships for ``jes control-plane`` and ``jes demo`` (the local control plane and its
seed data, ``examples`` over ``data/``), the parts of the control plane the fake Kubernetes API of
the tests reuses (``doubles``: clock, fault rules, threaded server) and the docs generator. Rule:
the runtime never imports it; only the CLI and the commands do (and ``fakes``, outside the wheel).
"""
