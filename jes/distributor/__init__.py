"""distributor: what ``jes distributor`` adds to the sources and the proxy to stand in for the Keptn
distributor — :mod:`.config` (its variables, defaults and parsing), :mod:`.recipient` (events POSTed
to the integration beside it, retried, concurrently), :mod:`.redelivery` (NATS mode: what the
recipient did not take is offered again for a while), :mod:`.uniform` (registration and heartbeat
as the distributor does them) and :mod:`.errorlog` (the uniform error log). Rule: a stage — it
imports only clients, models, settings, util and errors; ``jes.commands.distributor`` wires it to
the sources and the proxy."""
