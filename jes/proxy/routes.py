"""Where a proxied request goes: the distributor's three prefixes mapped to the control plane.

Two route sets, chosen as the distributor chooses them (reference/distributor.md §4.1):

* **remote** (``KEPTN_API_ENDPOINT`` set): ``{endpoint}{prefix}/{rest}``. For ``/resource-service``
  the resource URI after the last ``/resource/`` is query-escaped once more, because the API
  gateway (nginx) decodes the path once before the resource service query-unescapes it again
  (keptn/keptn#2707; :func:`jes.clients.keptn.client.encode_resource_uri` escapes twice because it
  starts from a plain URI, the proxy's caller has escaped once already);
* **in-cluster** (no endpoint): ``http://<service>:8080/{rest}``, the path forwarded as received.

Paths are the *raw* (still percent-encoded) paths of the request, so ``job%2Fconfig.yaml`` stays one
segment; the raw query string is copied unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote_plus

from jes.settings import Settings

CONTROL_PLANE = "/controlPlane"
RESOURCE_SERVICE = "/resource-service"
DATASTORE = "/mongodb-datastore"
#: The only prefixes the distributor (1.4.5) proxies; anything else is answered 404.
PREFIXES = (CONTROL_PLANE, RESOURCE_SERVICE, DATASTORE)

#: Keptn's in-cluster services behind each prefix (go-utils ``DefaultInClusterAPIMappings``).
IN_CLUSTER_BASES: Mapping[str, str] = {
    CONTROL_PLANE: "http://shipyard-controller:8080",
    RESOURCE_SERVICE: "http://resource-service:8080",
    DATASTORE: "http://mongodb-datastore:8080",
}

_RESOURCE_MARK = "/resource/"


@dataclass(frozen=True)
class Routes:
    """Base URL per prefix; ``escape_resource_uri`` for the gateway's extra decoding (remote)."""

    bases: Mapping[str, str]
    escape_resource_uri: bool

    def target(self, raw_path: str, raw_query: str = "") -> str | None:
        """The upstream URL for a raw request path, or None when its prefix is not proxied.

        The first path segment must *equal* a prefix. The distributor matches string prefixes, so
        ``/controlPlaneX/...`` reached the control plane there; that quirk is not kept.
        """
        prefix, rest = split_prefix(raw_path)
        if prefix is None:
            return None
        if prefix == RESOURCE_SERVICE and self.escape_resource_uri:
            rest = escape_resource_uri(rest)
        url = f"{self.bases[prefix]}/{rest}"
        return f"{url}?{raw_query}" if raw_query else url


def split_prefix(raw_path: str) -> tuple[str | None, str]:
    """``("/controlPlane", "v1/project")`` for ``/controlPlane/v1/project``; ``(None, "")`` when
    the first segment is not one of :data:`PREFIXES`."""
    if not raw_path.startswith("/"):
        return None, ""
    first, _, rest = raw_path[1:].partition("/")
    prefix = "/" + first
    if prefix not in PREFIXES:
        return None, ""
    return prefix, rest


def escape_resource_uri(rest: str) -> str:
    """``rest`` with the part after its *last* ``/resource/`` query-escaped once more.

    The distributor splits at every ``/resource/`` and keeps only the piece between the last two
    (losing what came before); here everything before the last one is kept as it is.
    """
    marked = "/" + rest
    at = marked.rfind(_RESOURCE_MARK)
    if at < 0:
        return rest
    head, uri = marked[: at + len(_RESOURCE_MARK)], marked[at + len(_RESOURCE_MARK) :]
    # quote_plus with safe="" is Go's url.QueryEscape: % -> %25, / -> %2F, space -> +
    return (head + quote_plus(uri, safe=""))[1:]


def remote_routes(endpoint: str) -> Routes:
    """Routes through the API gateway at ``endpoint`` (``KEPTN_API_ENDPOINT``, e.g. ``https://k/api``)."""
    base = endpoint.rstrip("/")
    return Routes(bases={prefix: base + prefix for prefix in PREFIXES}, escape_resource_uri=True)


def in_cluster_routes() -> Routes:
    """Routes to Keptn's services by their in-cluster names (NATS mode)."""
    return Routes(bases=dict(IN_CLUSTER_BASES), escape_resource_uri=False)


def routes_for(settings: Settings) -> Routes:
    """Remote when ``KEPTN_API_ENDPOINT`` is set, in-cluster otherwise (as the distributor)."""
    if settings.in_cluster:
        return in_cluster_routes()
    return remote_routes(settings.keptn_api_endpoint)
