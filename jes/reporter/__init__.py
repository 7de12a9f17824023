"""reporter: Keptn event builders within the size budget (:mod:`.events`) and their delivery to
the control plane (:mod:`.delivery`): it delivers and returns, it never persists. Rule: a stage."""
