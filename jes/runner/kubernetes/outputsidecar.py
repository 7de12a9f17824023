"""The ``jes-output`` native sidecar of a task's pod (``JES_TASK_OUTPUTS``): it relays the task's
``$KEPTN_OUTPUT_FILE`` through its log once the task ended (:mod:`jes.runner.outputrelay`). Pure."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from jes.models import Resources
from jes.runner.kubernetes.status import RELAY_CONTAINER
from jes.runner.outputs import KUBERNETES_OUTPUT_DIR, KUBERNETES_OUTPUT_FILE

OUTPUT_CONTAINER = RELAY_CONTAINER
"""The native sidecar that relays the task's output file (:mod:`jes.runner.outputrelay`)."""
OUTPUT_VOLUME = "job-output"
NO_TOKEN_VOLUME = "jes-output-no-token"
"""An empty volume mounted over the service account token's path in the sidecar only: the
ServiceAccount admission plugin then mounts no token into it (``plugin/pkg/admission/serviceaccount/
admission.go``: "Existing mounts at the default mount path prevent mounting of the API token")."""
TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
OUTPUT_RESOURCES = Resources(limits_cpu="100m", limits_memory="64Mi", requests_cpu="5m", requests_memory="16Mi")


#: The sidecar's container security context: the restricted Pod Security Standard, whatever the
#: task's (it runs jes's own code, as the jes image's non-root user).
OUTPUT_SECURITY_CONTEXT: Mapping[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "privileged": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "runAsUser": 10001,  # the jes image's user (Dockerfile): also when the pod's default is root (0)
    "runAsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def output_sidecar(image: str, max_output_bytes: int) -> dict[str, Any]:
    """The ``jes-output`` native sidecar (an init container with ``restartPolicy: Always``,
    Kubernetes 1.29+): started before the task, it waits for SIGTERM — sent once the task's
    container ended (KEP-753) — and then prints the output file to its log
    (:mod:`jes.runner.outputrelay`)."""
    return {
        "name": OUTPUT_CONTAINER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "restartPolicy": "Always",
        "command": ["python", "-m", "jes.runner.outputrelay", KUBERNETES_OUTPUT_FILE, str(max_output_bytes)],
        "resources": OUTPUT_RESOURCES.as_k8s(),
        "securityContext": copy.deepcopy(OUTPUT_SECURITY_CONTEXT),
        "volumeMounts": [
            {"name": OUTPUT_VOLUME, "mountPath": KUBERNETES_OUTPUT_DIR, "readOnly": True},
            {"name": NO_TOKEN_VOLUME, "mountPath": TOKEN_PATH, "readOnly": True},
        ],
    }


def output_volume_size(max_output_bytes: int) -> str:
    """Room for the output file and some slack (a task may write it more than once)."""
    return f"{max(1, -(-4 * max_output_bytes // (1024 * 1024)))}Mi"
