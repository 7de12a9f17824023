"""Kubernetes JSON calls on the event loop, over the lean HTTP/1.1 transport.

The official client is synchronous: each call took a thread hop, the client's request assembly and
urllib3, about 0.5 ms of CPU per request on loopback; the same request here costs about a third of
that (README "Where the CPU goes"). Server, credentials and TLS are still the ``kubernetes``
client's :class:`~kubernetes.client.Configuration`. A configuration this path cannot serve exactly
as the client would (an HTTP proxy, a TLS server name or host name check of its own) keeps the
client's path: :func:`usable`.

The token is asked of the configuration at most every :data:`TOKEN_RECHECK_S`, in a thread: its
refresh hook re-applies the whole kubeconfig (reading the proxy environment) on every call, which
cost as much CPU as the request, and may run an exec plugin. That delay is safe: the client itself
re-reads an in-cluster token file only every minute, and renews an exec or OIDC token 5 minutes
before it expires (``kubernetes.config.kube_config`` ``EXPIRY_SKEW_PREVENTION_DELAY``). At the same
moments the CA and client certificate files are looked at: a rotated cluster CA or certificate is
used for the next connections, as the client's urllib3 pool, which loads them per connection, did.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlencode, urlsplit

import kubernetes.client
import kubernetes.client.rest

import jes
from jes.clients.httptransport import Answer, LeanTransport, Opened, Origin
from jes.util.gates import RoutineLimit

logger = logging.getLogger(__name__)

USER_AGENT = f"jes/{jes.__version__}".encode()
#: How long a bearer token asked of the configuration is used before asking again.
TOKEN_RECHECK_S = 10.0


def tls_context(configuration: kubernetes.client.Configuration) -> ssl.SSLContext:
    """The client's TLS settings: its CA (file or data; else the system's), its client certificate,
    or no check."""
    data = configuration.ca_cert_data
    context = ssl.create_default_context(
        cafile=configuration.ssl_ca_cert or None,
        cadata=data.decode() if isinstance(data, bytes) else data or None,
    )
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file or None)
    return context


def tls_files(configuration: kubernetes.client.Configuration) -> tuple[float | None, ...]:
    """When the CA and client certificate files last changed (None: none, or unreadable)."""
    found: list[float | None] = []
    for path in (configuration.ssl_ca_cert, configuration.cert_file, configuration.key_file):
        try:
            found.append(os.stat(path).st_mtime if path else None)
        except OSError:
            found.append(None)
    return tuple(found)


def usable(configuration: kubernetes.client.Configuration) -> bool:
    """Whether :class:`KubeHttp` serves this configuration exactly as the client would: not through
    an HTTP proxy (unless ``no_proxy`` exempts the server, as the client's own check does), not with
    a TLS server name or host name check of its own."""
    scheme = urlsplit(configuration.host or "").scheme
    overrides = getattr(configuration, "tls_server_name", None) or getattr(configuration, "assert_hostname", None)
    return scheme in ("http", "https") and not proxy_for(configuration) and not overrides


def proxy_for(configuration: kubernetes.client.Configuration) -> str | None:
    """The HTTP proxy the client would use for its server (None: none, or ``no_proxy`` exempts it)."""
    if not configuration.proxy:
        return None
    exempt = kubernetes.client.rest.should_bypass_proxies(configuration.host, configuration.no_proxy or "")
    return None if exempt else str(configuration.proxy)


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
        routine: RoutineLimit | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``routine``: hold routine requests back while the server queues (see the transport);
        for short calls only — a long stream would hold a routine place for as long as it runs."""
        self._monotonic = monotonic
        self._token: tuple[float, str] | None = None
        """(when it was asked for, the Authorization value)"""
        url = urlsplit(configuration.host)
        port = url.port or (443 if url.scheme == "https" else 80)
        self.origin: Origin = (url.scheme, url.hostname or "", port)
        self.base_path = url.path.rstrip("/")
        self._configuration = configuration
        self._refreshing = asyncio.Lock()
        self._tls_files = tls_files(configuration)
        tls = tls_context(configuration) if url.scheme == "https" else None
        self.transport = LeanTransport(ssl_context=tls, max_connections=max_connections, routine=routine)

    async def call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None,
        body: bytes | None,
        content_type: str,
        timeout_s: float | None,
        kind: str = "",
    ) -> Answer:
        """One request, its answer read whole; httpx's exceptions when there is none. ``kind``
        (``create jobs``): requests of one kind take about as long (see the transport's ``open``)."""
        target = self.base_path + path
        if query:
            target += "?" + urlencode(query)
        headers = await self._headers(b"application/json, */*")
        if body is not None:
            headers.append((b"Content-Type", content_type.encode("ascii")))
        return await self.transport.exchange(
            method, self.origin, target.encode("ascii"), headers, body or b"", timeout_s, kind
        )

    async def _headers(self, accept: bytes) -> list[tuple[bytes, bytes]]:
        headers = [(b"Accept", accept), (b"User-Agent", USER_AGENT)]
        if token := await self.authorization():
            headers.append((b"Authorization", token.encode("latin-1")))
        return headers

    async def authorization(self) -> str:
        """The Authorization header's value ("" for none), asked of the configuration at most every
        :data:`TOKEN_RECHECK_S` — in a thread, one at a time: its refresh hook may run an exec
        plugin (``aws eks get-token``) — together with a look at the certificate files."""
        if self._token is None or self._monotonic() - self._token[0] >= TOKEN_RECHECK_S:
            async with self._refreshing:
                if self._token is None or self._monotonic() - self._token[0] >= TOKEN_RECHECK_S:
                    await asyncio.to_thread(self._recheck)
        return self._token[1] if self._token is not None else ""

    def _recheck(self) -> None:
        """(In a thread.) Ask for the token again, renew the TLS context when a certificate file
        changed (a rotated cluster CA or client certificate); on failure keep what there was."""
        previous = self._token[1] if self._token is not None else ""
        try:
            value = authorization_of(self._configuration)
        except Exception as exc:  # (a failing refresh hook: the server will say whether the old one still works)
            logger.warning("renewing the Kubernetes API token failed, keeping the one before: %s", exc)
            value = previous
        self._token = (self._monotonic(), value)
        files = tls_files(self._configuration)
        if self.origin[0] == "https" and files != self._tls_files:
            try:
                self.transport.use_tls(tls_context(self._configuration))
                self._tls_files = files
            except (OSError, ssl.SSLError) as exc:
                logger.warning("reloading the Kubernetes API certificates failed, keeping the ones before: %s", exc)

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
        headers = await self._headers(b"*/*")
        timeouts: dict[str, float | None] = dict.fromkeys(("connect", "write", "pool"), timeout_s)
        timeouts["read"] = read_timeout_s
        target = f"{self.base_path}{path}?{urlencode(query)}".encode("ascii")
        return await self.transport.open("GET", self.origin, target, headers, b"", timeouts)

    async def aclose(self) -> None:
        await self.transport.aclose()
