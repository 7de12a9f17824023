"""proxy: the distributor's API proxy and event forwarding, with per-task scoped credentials —
:mod:`.routes` (where a request goes), :mod:`.app` (the ASGI app: ``/health``, ``/event``, the
proxy, its error answers), :mod:`.headers` (what crosses, secrets scrubbed), :mod:`.events`
(structured CloudEvents in), :mod:`.scopes` (task tokens and what they allow), :mod:`.server`
(the trusted and the task listener). Rule: a stage — it imports only clients, models, settings,
util and errors; the service wires it (builds the shared client, sends events on, mints tokens)."""
