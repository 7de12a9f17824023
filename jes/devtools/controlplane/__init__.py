"""A local, in-memory Keptn v1 control plane for development, demos and tests.

It serves the HTTP contract of reference/keptn-api.md §10 under ``/api``: the api-service
(``/v1/event``), the shipyard-controller (``/controlPlane/v1/...``: sequences, triggered events,
uniform registration, logs), the resource-service and the mongodb-datastore, with the API
gateway's token check and URL decoding. Entry points: :class:`server.LocalControlPlane` (tests,
``jes demo``) and :func:`server.run_control_plane` (``jes control-plane``).

Modules: ``keptntime`` (Keptn's timestamps), ``faults`` (injected failures), ``models`` (the
request contract as pydantic models), ``shipyard`` (the shipyard file), ``eventtypes`` (Keptn
event type grammar), ``datastore``, ``resources``, ``projects``, ``sequences`` (with
``openevents`` and ``runs``), ``uniform`` (the stores behind the services), ``state`` (all of
them behind one lock, plus the event pump), ``auth`` (x-token and OAuth), ``asgi`` (body limit,
faults, auth, dropped connections), ``app``, ``resource_api`` and ``httputil`` (routes), ``seed``
(loading a seed directory) and ``server`` (uvicorn in a thread). The clock, the fault-rule base
and the threaded server are shared with the fake Kubernetes API of the tests:
:mod:`jes.devtools.doubles`.
"""
