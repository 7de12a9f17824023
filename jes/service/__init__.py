"""service: the only place where the stages meet — wiring (:mod:`.core`), the event handler that
owns each claim (:mod:`.handler`), the adapters of the control plane to the handler's providers,
health and metrics. Rule: stages never import each other; they meet here. Keep this file light."""
