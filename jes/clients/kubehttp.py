"""Kubernetes JSON calls on the event loop, over the lean HTTP/1.1 transport.

The official client is synchronous: each call took a thread hop, the client's request assembly and
urllib3, about 0.5 ms of CPU per request on loopback; the same request here costs about a third of
that (``make bench``; bench/README.md "Profiling"). Server, credentials and TLS are still the
``kubernetes`` client's :class:`~kubernetes.client.Configuration`; the bearer token is asked of it
for every request, so in-cluster tokens that the kubelet rotates are picked up as the client
itself does. A configuration this path cannot serve exactly as the client would (an HTTP proxy, a
TLS server name or host name check of its own) keeps the client's path: :func:`usable`.

The token is asked of the configuration at most every :data:`TOKEN_RECHECK_S`: its refresh hook
re-applies the whole kubeconfig (reading the proxy environment) on every call, which cost as much
CPU as the request. That delay is safe: the client itself re-reads an in-cluster token file only
every minute, and renews an exec or OIDC token 5 minutes before it expires
(``kubernetes.config.kube_config`` ``EXPIRY_SKEW_PREVENTION_DELAY``).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlencode, urlsplit

import kubernetes.client

import jes
from jes.clients.httptransport import Answer, LeanTransport, Opened, Origin

USER_AGENT = f"jes/{jes.__version__}".encode()
#: How long a bearer token asked of the configuration is used before asking again.
TOKEN_RECHECK_S = 10.0


def tls_context(configuration: kubernetes.client.Configuration) -> ssl.SSLContext:
    """The client's TLS settings: its CA (else the system's), its client certificate, or no check."""
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file or None)
    return context


def usable(configuration: kubernetes.client.Configuration) -> bool:
    """Whether :class:`KubeHttp` serves this configuration exactly as the client would."""
    scheme = urlsplit(configuration.host or "").scheme
    overrides = getattr(configuration, "tls_server_name", None) or getattr(configuration, "assert_hostname", None)
    return scheme in ("http", "https") and not configuration.proxy and not overrides


def authorization_of(configuration: kubernetes.client.Configuration) -> str:
    """The Authorization header the client would send ("" for none): a token from a kubeconfig or
    the service account (kept as ``BearerToken``), or basic auth (kept as ``authorization``). Asking
    runs the configuration's refresh hook, which renews an expiring token."""
    found = configuration.auth_settings().get("BearerToken")
    return str(found["value"]) if found and found.get("value") else ""


class KubeHttp:
    """One pool of connections to the API server; JSON in, :class:`Answer` out."""

    def __init__(
        self,
        configuration: kubernetes.client.Configuration,
        *,
        max_connections: int,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._monotonic = monotonic
        self._token: tuple[float, str] | None = None
        """(when it was asked for, the Authorization value)"""
        url = urlsplit(configuration.host)
        port = url.port or (443 if url.scheme == "https" else 80)
        self.origin: Origin = (url.scheme, url.hostname or "", port)
        self.base_path = url.path.rstrip("/")
        self._configuration = configuration
        tls = tls_context(configuration) if url.scheme == "https" else None
        self.transport = LeanTransport(ssl_context=tls, max_connections=max_connections)

    async def call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None,
        body: bytes | None,
        content_type: str,
        timeout_s: float | None,
    ) -> Answer:
        """One request, its answer read whole; httpx's exceptions when there is none."""
        target = self.base_path + path
        if query:
            target += "?" + urlencode(query)
        headers = [(b"Accept", b"application/json, */*"), (b"User-Agent", USER_AGENT)]
        token = self.authorization()
        if token:
            headers.append((b"Authorization", token.encode("latin-1")))
        if body is not None:
            headers.append((b"Content-Type", content_type.encode("ascii")))
        return await self.transport.exchange(
            method, self.origin, target.encode("ascii"), headers, body or b"", timeout_s
        )

    def authorization(self) -> str:
        """The Authorization header's value ("" for none), asked of the configuration (which
        refreshes expiring tokens) at most every :data:`TOKEN_RECHECK_S`."""
        now = self._monotonic()
        if self._token is None or now - self._token[0] >= TOKEN_RECHECK_S:
            self._token = (now, authorization_of(self._configuration))
        return self._token[1]

    async def stream(
        self,
        path: str,
        *,
        query: Mapping[str, str],
        timeout_s: float | None,
        read_timeout_s: float | None,
    ) -> Opened:
        """A GET whose answer is streamed (a log): its head, the body unread. ``read_timeout_s``
        bounds each wait for more of it (None: a followed log may be idle for long)."""
        headers = [(b"Accept", b"*/*"), (b"User-Agent", USER_AGENT)]
        if token := self.authorization():
            headers.append((b"Authorization", token.encode("latin-1")))
        timeouts: dict[str, float | None] = dict.fromkeys(("connect", "write", "pool"), timeout_s)
        timeouts["read"] = read_timeout_s
        target = f"{self.base_path}{path}?{urlencode(query)}".encode("ascii")
        return await self.transport.open("GET", self.origin, target, headers, b"", timeouts)

    async def aclose(self) -> None:
        await self.transport.aclose()
