"""How jes proves who it is to the Keptn control plane, and the one HTTP client that carries it.

Two mechanisms, as Keptn's own clients (the distributor, go-utils) have them:

* ``x-token``: the API token, sent on every request when it is not empty;
* OAuth2 client credentials: used when client id, secret, scopes and a discovery or token URL are
  all set. The token URL wins over discovery; discovery is one GET (10 s timeout) of an OIDC
  document for its ``token_endpoint``. The access token is cached and fetched again shortly
  before it expires (or when the control plane answers 401 to it). When an API token is also
  set, both headers are sent.

:func:`make_http_client` builds the :class:`httpx.AsyncClient` that the service creates once and
hands to everything that talks to the control plane. Neither the token nor the client secret ever
appears in an error message or a log line.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import urllib.request
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

import httpx

import jes
from jes import errors
from jes.clients import httptransport
from jes.clients.keptn import direct
from jes.clients.keptn.tokenfile import TokenFile as TokenFile
from jes.settings import Settings

logger = logging.getLogger(__name__)

DISCOVERY_TIMEOUT_S = 10.0
#: A cached access token is replaced this long before it expires (Go's oauth2 uses 10 s).
EXPIRY_MARGIN_S = 10.0
#: A 401 to a token at least this old fetches a new token and repeats the request once.
MIN_AGE_TO_REFETCH_S = 10.0
#: Used when the token endpoint does not say how long the token lives.
DEFAULT_TOKEN_LIFETIME_S = 3600.0


#: Enough for hundreds of concurrent requests without opening a socket for each.
def limits(max_connections: int) -> httpx.Limits:
    """A small pool (``JES_HTTP_MAX_CONNECTIONS``): httpcore checks every pooled connection for each
    request it assigns, so sixteen connections cost about twice the CPU per request of eight."""
    return httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections, keepalive_expiry=30.0
    )


Clock = Callable[[], float]


@dataclass(frozen=True)
class OAuthConfig:
    """What the client-credentials flow needs (a value; the secret is kept out of ``repr``)."""

    client_id: str
    client_secret: str
    scopes: tuple[str, ...]
    token_url: str = ""
    discovery_url: str = ""

    def __repr__(self) -> str:
        return (
            f"OAuthConfig(client_id={self.client_id!r}, scopes={self.scopes!r}, "
            f"token_url={self.token_url!r}, discovery_url={self.discovery_url!r})"
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> OAuthConfig | None:
        if not settings.uses_oauth:
            return None
        return cls(
            client_id=settings.oauth_client_id,
            client_secret=settings.oauth_client_secret,
            scopes=settings.oauth_scopes,
            token_url=settings.oauth_token_url,
            discovery_url=settings.oauth_discovery,
        )


@dataclass(frozen=True)
class _Token:
    value: str
    expires_at: float
    fetched_at: float


class OAuthTokenSource:
    """Fetches and caches client-credentials access tokens; one fetch at a time.

    Requests for the identity provider go through ``http`` with explicit auth, so the Keptn
    ``x-token`` is never sent to it.
    """

    def __init__(self, config: OAuthConfig, http: httpx.AsyncClient, *, clock: Clock = time.monotonic) -> None:
        self._config = config
        self._http = http
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: _Token | None = None
        self._token_url = config.token_url
        self._secret_in_body = False
        self.fetches = 0
        """How many tokens were fetched (for tests and diagnostics)."""

    async def token(self) -> str:
        """A valid access token, from the cache when it is still fresh."""
        cached = self._fresh()
        if cached is not None:
            return cached
        async with self._lock:
            cached = self._fresh()
            if cached is not None:
                return cached
            self._token = await self._fetch()
            return self._token.value

    async def token_url(self) -> str:
        """The token endpoint (discovered once when only a discovery URL is configured)."""
        return await self._resolve_token_url()

    def secrets(self) -> tuple[str, ...]:
        """The client secret and the cached access token (for scrubbing messages)."""
        cached = (self._token.value,) if self._token is not None else ()
        return (self._config.client_secret, *cached)

    def invalidate(self, value: str) -> bool:
        """Forget ``value`` (the server refused it) unless it was fetched only just now.

        A token younger than :data:`MIN_AGE_TO_REFETCH_S` was not revoked; the 401 has another
        cause (a wrong ``x-token``), and fetching again would only load the identity provider.
        """
        token = self._token
        if token is None or token.value != value or self._clock() - token.fetched_at < MIN_AGE_TO_REFETCH_S:
            return False
        self._token = None
        return True

    def _fresh(self) -> str | None:
        token = self._token
        if token is not None and self._clock() < token.expires_at:
            return token.value
        return None

    async def _fetch(self) -> _Token:
        token_url = await self._resolve_token_url()
        response = await self._post_token(token_url, secret_in_body=self._secret_in_body)
        if response.status_code in (400, 401) and not self._secret_in_body:
            # Go's oauth2 auto-detection: some servers want the credentials in the form body.
            retry = await self._post_token(token_url, secret_in_body=True)
            if retry.status_code == 200:
                self._secret_in_body = True
            response = retry
        return self._parse_token(token_url, response)

    async def _resolve_token_url(self) -> str:
        if self._token_url:
            return self._token_url
        url = self._config.discovery_url
        response = await self._call("GET", url, timeout_s=DISCOVERY_TIMEOUT_S)
        if response.status_code != 200:
            raise _status_error("GET", url, response, what="OAuth discovery")
        document = _json_object("GET", url, response, what="OAuth discovery")
        endpoint = document.get("token_endpoint")
        if not isinstance(endpoint, str) or not endpoint:
            raise errors.KeptnPermanentError(
                f"OAuth discovery: GET {url} returned no token_endpoint",
                method="GET",
                url=url,
                status=response.status_code,
            )
        self._token_url = endpoint
        return endpoint

    async def _post_token(self, url: str, *, secret_in_body: bool) -> httpx.Response:
        form = {"grant_type": "client_credentials"}
        if self._config.scopes:
            form["scope"] = " ".join(self._config.scopes)
        auth: httpx.Auth | None = None
        if secret_in_body:
            form["client_id"] = self._config.client_id
            form["client_secret"] = self._config.client_secret
        else:
            # RFC 6749 §2.3.1: id and secret are form-encoded before Basic encoding.
            auth = httpx.BasicAuth(quote_plus(self._config.client_id), quote_plus(self._config.client_secret))
        return await self._call("POST", url, data=form, auth=auth)

    async def _call(
        self,
        method: str,
        url: str,
        *,
        data: dict[str, str] | None = None,
        auth: httpx.Auth | None = None,
        timeout_s: float | None = None,
    ) -> httpx.Response:
        timeout = httpx.Timeout(timeout_s) if timeout_s is not None else self._http.timeout
        try:
            return await self._http.request(
                method,
                url,
                data=data,
                auth=auth,
                timeout=timeout,  # None: not the client's auth
            )
        except httpx.TimeoutException as exc:
            raise errors.KeptnTemporaryError(f"OAuth: {method} {url} timed out", method=method, url=url) from exc
        except httpx.HTTPError as exc:
            raise errors.KeptnTemporaryError(
                f"OAuth: {method} {url} failed: {type(exc).__name__}: {exc}", method=method, url=url
            ) from exc

    def _parse_token(self, url: str, response: httpx.Response) -> _Token:
        if response.status_code != 200:
            raise _status_error("POST", url, response, what="OAuth token request")
        body = _json_object("POST", url, response, what="OAuth token request")
        value = body.get("access_token")
        if not isinstance(value, str) or not value:
            raise errors.KeptnTemporaryError(
                f"OAuth token request: POST {url} returned no access_token", method="POST", url=url
            )
        self.fetches += 1
        now = self._clock()
        return _Token(value, now + _lifetime_s(body.get("expires_in")), now)


def _lifetime_s(expires_in: object) -> float:
    """Seconds to keep a token, leaving a margin before the server's expiry."""
    try:
        seconds = float(expires_in)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return DEFAULT_TOKEN_LIFETIME_S
    if seconds <= 0:
        return 0.0
    return seconds - min(EXPIRY_MARGIN_S, seconds / 2)


def _status_error(method: str, url: str, response: httpx.Response, *, what: str) -> errors.KeptnError:
    said = _oauth_server_message(response)
    status = response.status_code
    message = f"{what}: {method} {url} returned {status}: {said}"
    kwargs: dict[str, Any] = {"method": method, "url": url, "status": status, "server_message": said}
    if status >= 500 or status == 429:
        return errors.KeptnTemporaryError(message, **kwargs)
    if status in (400, 401, 403):
        # invalid_client / unauthorized_client: the credentials are wrong.
        return errors.KeptnAuthError(message, **kwargs)
    if status == 404:
        return errors.KeptnNotFoundError(message, **kwargs)
    return errors.KeptnPermanentError(message, **kwargs)


def _oauth_server_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        return response.text[:256]
    if isinstance(body, dict):
        parts = [str(body[k]) for k in ("error", "error_description", "message") if body.get(k)]
        if parts:
            return ": ".join(parts)[:256]
    return response.text[:256]


def _json_object(method: str, url: str, response: httpx.Response, *, what: str) -> dict[str, object]:
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.KeptnTemporaryError(
            f"{what}: {method} {url} returned invalid JSON: {response.text[:256]!r}",
            method=method,
            url=url,
            status=response.status_code,
        ) from exc
    if not isinstance(body, dict):
        raise errors.KeptnTemporaryError(
            f"{what}: {method} {url} returned {type(body).__name__}, expected a JSON object",
            method=method,
            url=url,
            status=response.status_code,
        )
    return body


class KeptnAuth(httpx.Auth):
    """Adds ``x-token`` (when set) and an OAuth bearer token (when configured) to each request.

    A 401 answer to a bearer token that is not brand new drops that token and retries the
    request once with a new one (the gateway may revoke tokens before their announced expiry).
    """

    def __init__(self, api_token: str | TokenFile = "", oauth: OAuthTokenSource | None = None) -> None:
        self._api_token = api_token
        self._oauth = oauth

    def __repr__(self) -> str:
        return f"KeptnAuth(token={'set' if self._token() else 'unset'}, oauth={self._oauth is not None})"

    def _token(self) -> str:
        return self._api_token.current() if isinstance(self._api_token, TokenFile) else self._api_token

    @property
    def oauth(self) -> OAuthTokenSource | None:
        return self._oauth

    def secrets(self) -> tuple[str, ...]:
        """Values that must never be shown: the API token(s), the client secret, the access token."""
        values = list(self._api_token.seen) if isinstance(self._api_token, TokenFile) else [self._api_token]
        if self._oauth is not None:
            values += self._oauth.secrets()
        return tuple(v for v in values if v)

    def plain_headers(self) -> list[tuple[bytes, bytes]] | None:
        """What the flow adds to a request when it is one plain request (no OAuth, which may
        retry it); None when the flow is needed."""
        token = self._token()
        if self._oauth is not None or not token.isascii():
            return None
        return [(b"x-token", token.encode("ascii"))] if token else []

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("KeptnAuth works with httpx.AsyncClient only")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if token := self._token():
            request.headers["x-token"] = token
        if self._oauth is None:
            yield request
            return
        bearer = await self._oauth.token()
        request.headers["Authorization"] = f"Bearer {bearer}"
        response = yield request
        if response.status_code == 401 and self._oauth.invalidate(bearer):
            request.headers["Authorization"] = f"Bearer {await self._oauth.token()}"
            yield request


def ssl_verify(settings: Settings) -> bool | ssl.SSLContext:
    """The ``verify`` argument for httpx from HTTP_SSL_VERIFY and HTTP_SSL_CA_BUNDLE."""
    if not settings.http_ssl_verify:
        return False
    if not settings.http_ssl_ca_bundle:
        return True
    try:
        return ssl.create_default_context(cafile=settings.http_ssl_ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        raise errors.SettingsError([f"HTTP_SSL_CA_BUNDLE: cannot load {settings.http_ssl_ca_bundle!r}: {exc}"]) from exc


def _proxied() -> bool:
    """Whether the environment names an HTTP proxy (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY): then httpx's
    own transport, which honours it and NO_PROXY, is kept."""
    return any(scheme != "no" for scheme in urllib.request.getproxies_environment())


def make_http_client(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock = time.monotonic,
) -> httpx.AsyncClient:
    """The one client for the control plane: auth, TLS, timeouts and pool limits from ``settings``.

    ``transport`` replaces the network (tests); ``clock`` drives OAuth token expiry.
    The caller owns the client and closes it (``await client.aclose()``).
    """
    verify = ssl_verify(settings)
    if transport is None and not _proxied():
        # httpx's own transport costs ~4x the CPU per request (jes/clients/httptransport.py)
        transport = httptransport.LeanTransport(
            ssl_context=httptransport.tls_context(verify), max_connections=settings.http_max_connections
        )
    client = direct.KeptnHttp(
        verify=verify,
        # waiting for a free pooled connection is not a failure of the control plane: no timeout
        timeout=httpx.Timeout(settings.http_timeout_s or None, pool=None),  # 0: none (the distributor's 0)
        limits=limits(settings.http_max_connections),
        transport=transport,
        follow_redirects=False,
        headers={"User-Agent": f"jes/{jes.__version__}"},
    )
    oauth_config = OAuthConfig.from_settings(settings)
    oauth = OAuthTokenSource(oauth_config, client, clock=clock) if oauth_config is not None else None
    token: str | TokenFile = settings.keptn_api_token
    if settings.keptn_api_token_file:
        token = TokenFile(settings.keptn_api_token_file, clock=clock)
    client.auth = KeptnAuth(token, oauth)
    if isinstance(transport, httptransport.LeanTransport):
        client.lean = transport
    return client


def describe(settings: Settings) -> str:
    """One line for logs: which auth mechanisms are in use (no secrets)."""
    modes = []
    if settings.keptn_api_token_file:
        modes.append(f"x-token from {settings.keptn_api_token_file}")
    elif settings.keptn_api_token:
        modes.append("x-token")
    if settings.uses_oauth:
        source = settings.oauth_token_url or settings.oauth_discovery
        modes.append(f"oauth client credentials via {source}")
    return " + ".join(modes) or "none"


__all__ = [
    "KeptnAuth",
    "OAuthConfig",
    "OAuthTokenSource",
    "describe",
    "make_http_client",
    "ssl_verify",
]
