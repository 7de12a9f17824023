"""runner.kubernetes: one batch/v1 Job per task.

- :mod:`.runner` — :class:`~.runner.KubernetesRunner` and the flow of one run, in phases:
  :mod:`.creation` (ConfigMaps, the Job, then the token Secret; adoption, owner references), :mod:`.waiting` (until the
  Job ends or can never start; :mod:`.timers`), :mod:`.finishing` (final pods, the outcome, stopping
  the Job), with :mod:`.tasklogs` (a run's container logs), :mod:`.events` (what Kubernetes Events
  tell) and :mod:`.task` (the task with its manifest, shared by the phases);
- :mod:`.watch` (the shared watches), :mod:`.status` (reading Job and pod status), :mod:`.logs`
  (following container logs);
- :mod:`.manifests` — the Job manifests (pure, also used by ``jes render``).

RBAC — what jes's service account needs **in every namespace Jobs run in** (a Role and a
RoleBinding per namespace)::

    rules:
      - apiGroups: ["batch"]
        resources: ["jobs"]
        verbs: ["create", "get", "list", "watch", "delete"]   # create/adopt, wait, stop
      - apiGroups: [""]
        resources: ["pods"]
        verbs: ["get", "list", "watch"]                       # fail fast, exit codes, log targets
      - apiGroups: [""]
        resources: ["pods/log"]
        verbs: ["get"]                                        # task output
      - apiGroups: [""]
        resources: ["events"]
        verbs: ["list"]                                       # FailedCreate, Failed* messages
      - apiGroups: [""]
        resources: ["configmaps"]
        verbs: ["create", "get", "patch", "delete"]           # files; owner reference; clean-up
      - apiGroups: [""]
        resources: ["secrets"]
        verbs: ["create", "delete"]                           # only for tasks with API-proxy access:
                                                              # their token Secret; a leftover one

jes never reads a Secret, and may not: no ``get``, ``list``, ``watch`` — and no ``patch`` or
``update`` either, since their answer is the whole object, Secrets of Keptn's beside the Job's
included. It creates the token Secret of its own tasks with their Job as owner already in the create
body, and deletes one left from an earlier attempt (a task's ``valueFrom: secret`` is resolved by
the kubelet). Without proxy access for tasks the ``secrets`` rule is not needed at all. Missing
``events: list`` only loses event messages (logged); missing ``configmaps: patch`` leaves the
ConfigMaps without an owner (logged). Everything else fails the task with a reason such as
``permission denied: jes may not create batch/jobs in namespace 'ci'``.
"""
