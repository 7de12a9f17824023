"""runner: a rendered task in, an outcome out — Kubernetes Jobs (:mod:`.kubernetes`) or local
processes (:mod:`.local`) behind one protocol (:mod:`.base`). Rule: a stage; it imports clients,
models, settings, util and errors, never another stage."""
