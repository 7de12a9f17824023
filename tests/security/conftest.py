"""The end-to-end fixtures (an unkind local control plane, the fake Kubernetes API)."""

from tests.service.conftest import kube, plane

__all__ = ["kube", "plane"]
