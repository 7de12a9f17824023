"""The fake Kubernetes API's own tests use the kubernetes runner tests' fixtures."""

from tests.runner.kubernetes.conftest import api, kube, kube_server  # noqa: F401
