"""sources: where triggered events come from (HTTP polling of the control plane) — :mod:`.poller`
registers, heartbeats and polls, :mod:`.topics` says what is polled and what was delivered,
:mod:`.problems` classifies and logs failures. Rule: a stage — it imports only clients, models,
settings, util and errors; the service consumes it."""
