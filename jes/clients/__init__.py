"""clients: how jes talks to the outside — the Keptn control plane (:mod:`.keptn`) and the
Kubernetes API (:mod:`.kube`). Rule: below the stages; one client of each kind is built by the
service (or a command) and passed down; foreign errors are translated into :mod:`jes.errors` here."""
