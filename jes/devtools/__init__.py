"""devtools: ships for ``jes control-plane`` and ``jes demo`` (the local control plane and its
seed data) and the docs generator. Rule: the runtime never imports it; only the CLI and the
commands do."""
