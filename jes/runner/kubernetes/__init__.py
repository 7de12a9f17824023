"""runner.kubernetes: one batch/v1 Job per task — the runner, waiting (watch, status, timers),
log following, and the Job manifests (:mod:`.manifests`, pure, also used by ``jes render``)."""
