"""Keptn's services at their in-cluster names (NATS mode), as the distributor reaches them."""

from __future__ import annotations

#: In NATS mode (no endpoint) the Keptn services are reached at their in-cluster names, without a
#: token, as the distributor does: the first segment of a gateway path names the service.
IN_CLUSTER_SERVICES: dict[str, str] = {
    "controlPlane": "http://shipyard-controller:8080",
    "resource-service": "http://resource-service:8080",
    "configuration-service": "http://configuration-service:8080",
    "mongodb-datastore": "http://mongodb-datastore:8080",
    "v1": "http://api-service:8080/v1",
}


def in_cluster_url(path: str) -> str:
    """The in-cluster URL of a gateway path (``/controlPlane/v1/x`` → shipyard-controller's ``/v1/x``)."""
    first, _, rest = path.lstrip("/").partition("/")
    base = IN_CLUSTER_SERVICES.get(first)
    if base is None:
        raise ValueError(f"no in-cluster Keptn service serves {path}")
    return f"{base}/{rest}"
