"""sources: where triggered events come from (HTTP polling of the control plane). Rule: a stage —
it imports only clients, models, settings, util and errors; the service consumes it."""
