"""Who may call the local control plane: Keptn's ``x-token``, or an OAuth gateway's Bearer tokens.

Token mode (the default) checks ``x-token`` on every API route with Keptn's answers: the
api-service's own messages on ``/v1/...``, the gateway's on everything else, and optionally the
gateway's 429 after repeated bad tokens. An empty token disables the check (in-cluster Keptn).

OAuth mode emulates an OAuth-enforcing gateway in front of Keptn (OSS Keptn itself never checks
Bearer tokens): a client-credentials token endpoint (client authenticated by HTTP Basic or in the
form body), an OIDC discovery document, and Bearer checking with expiry and, optionally, scopes
named like Keptn's swagger annotations (``keptn:events:write`` ...).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import parse_qs, unquote_plus

from jes.devtools.doubles import clock

TOKEN_PATH = "/oauth/token"
DISCOVERY_PATH = "/.well-known/openid-configuration"
SCOPE_PREFIX = "keptn:"

NGINX_UNAUTHORIZED = "unauthenticated or invalid credentials"
API_MISSING_TOKEN = "unauthenticated for invalid credentials"
API_WRONG_TOKEN = "incorrect api key auth"


@dataclass(frozen=True)
class OAuthConfig:
    """OAuth mode: the one client allowed, token lifetime, scope policy.

    ``allowed_scopes``: the scopes this client may obtain (``None``: whatever it asks for).
    ``enforce_scopes``: every route needs its scope in the token. ``require_x_token``: the
    ``x-token`` is checked as well, as when the gateway forwards to a token-checking Keptn.
    """

    client_id: str
    client_secret: str
    token_ttl_s: float = 300.0
    allowed_scopes: tuple[str, ...] | None = None
    enforce_scopes: bool = True
    require_x_token: bool = False


@dataclass(frozen=True)
class Denial:
    """An answer refusing a request."""

    status: int
    body: dict[str, object]
    headers: Mapping[str, str]


@dataclass(frozen=True)
class _Issued:
    expires: datetime
    scopes: frozenset[str]


def required_scope(method: str, path: str) -> str | None:
    """The OAuth scope a request needs (path relative to the API prefix)."""
    reading = method in ("GET", "HEAD")
    table = (
        ("/v1/event", "events:write", "events:write"),
        ("/v1/metadata", "metadata:read", "metadata:read"),
        ("/controlPlane/v1/event", "events:read", "events:write"),
        ("/controlPlane/v1/uniform", "integrations:read", "integrations:write"),
        ("/controlPlane/v1/log", "logs:read", "logs:write"),
        ("/controlPlane/v1/project", "projects:read", "projects:write"),
        ("/controlPlane/v1/sequence", "sequences:read", "sequences:write"),
        ("/resource-service", "resources:read", "resources:write"),
        ("/configuration-service", "resources:read", "resources:write"),
        ("/mongodb-datastore", "events:read", "events:read"),
    )
    for prefix, read_scope, write_scope in table:
        if path.startswith(prefix):
            return SCOPE_PREFIX + (read_scope if reading else write_scope)
    return None


class Authenticator:
    """Checks credentials and issues OAuth tokens; thread-safe."""

    def __init__(
        self, *, token: str, oauth: OAuthConfig | None, clock_: clock.Clock, rate_limit_bad_tokens: bool = False
    ) -> None:
        self._token = token
        self._oauth = oauth
        self._clock = clock_
        self._rate_limit = rate_limit_bad_tokens
        self._issued: dict[str, _Issued] = {}
        self._buckets: dict[str, tuple[float, datetime]] = {}
        self._lock = threading.Lock()

    @property
    def oauth(self) -> OAuthConfig | None:
        return self._oauth

    # -- checking ----------------------------------------------------------------------------

    def check(self, method: str, path: str, headers: Mapping[str, str], client_ip: str) -> Denial | None:
        """``None`` if the request may proceed (``path`` relative to the API prefix)."""
        if self._oauth is not None:
            denial = self._check_bearer(method, path, headers.get("authorization", ""))
            if denial is not None or not self._oauth.require_x_token:
                return denial
        return self._check_x_token(path, headers.get("x-token"), client_ip)

    def _check_x_token(self, path: str, given: str | None, client_ip: str) -> Denial | None:
        if not self._token:
            return None
        if given is not None and hmac.compare_digest(given.encode(), self._token.encode()):
            self._reset_bucket(client_ip)
            return None
        if path.startswith("/v1/"):
            message = API_MISSING_TOKEN if given is None else API_WRONG_TOKEN
            return _deny(401, message)
        if self._rate_limit and not self._take_bucket(client_ip):
            return _deny(429, "too many requests")
        return _deny(401, NGINX_UNAUTHORIZED)

    def _check_bearer(self, method: str, path: str, authorization: str) -> Denial | None:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return _deny(401, "a Bearer token is required", bearer_error="invalid_request")
        with self._lock:
            issued = self._issued.get(value.strip())
        if issued is None:
            return _deny(401, "invalid bearer token", bearer_error="invalid_token")
        if self._clock.now() >= issued.expires:
            return _deny(401, "the bearer token has expired", bearer_error="invalid_token")
        scope = required_scope(method.upper(), path)
        assert self._oauth is not None
        if self._oauth.enforce_scopes and scope is not None and scope not in issued.scopes:
            return _deny(403, f"insufficient scope: this request needs {scope}", bearer_error="insufficient_scope")
        return None

    def _take_bucket(self, client_ip: str) -> bool:
        """Gateway rate limit for bad tokens: 1 request/s, burst 2, per client address."""
        now = self._clock.now()
        with self._lock:
            tokens, since = self._buckets.get(client_ip, (2.0, now))
            tokens = min(2.0, tokens + (now - since).total_seconds())
            allowed = tokens >= 1.0
            self._buckets[client_ip] = (tokens - 1.0 if allowed else tokens, now)
            return allowed

    def _reset_bucket(self, client_ip: str) -> None:
        if self._rate_limit:
            with self._lock:
                self._buckets.pop(client_ip, None)

    # -- issuing -----------------------------------------------------------------------------

    def issue_token(self, form_body: bytes, authorization: str) -> tuple[int, dict[str, object]]:
        """The token endpoint: (status, JSON body) per RFC 6749 §4.4 / §5."""
        if self._oauth is None:
            return 404, {"error": "not_found", "error_description": "OAuth is not enabled"}
        form = {k: v[-1] for k, v in parse_qs(form_body.decode("utf-8", "replace"), keep_blank_values=True).items()}
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type", "error_description": "only client_credentials"}
        client_id, client_secret = _basic_credentials(authorization) or (
            form.get("client_id", ""),
            form.get("client_secret", ""),
        )
        if not (
            hmac.compare_digest(client_id.encode(), self._oauth.client_id.encode())
            and hmac.compare_digest(client_secret.encode(), self._oauth.client_secret.encode())
        ):
            return 401, {"error": "invalid_client", "error_description": "unknown client or wrong secret"}
        requested = frozenset(form.get("scope", "").split())
        allowed = self._oauth.allowed_scopes
        if allowed is not None and not requested <= set(allowed):
            return 400, {"error": "invalid_scope", "error_description": "scope not allowed for this client"}
        access_token = secrets.token_urlsafe(32)
        expires = self._clock.now() + timedelta(seconds=self._oauth.token_ttl_s)
        with self._lock:
            self._issued[access_token] = _Issued(expires=expires, scopes=requested)
        body: dict[str, object] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": int(self._oauth.token_ttl_s),
        }
        if requested:
            body["scope"] = " ".join(sorted(requested))
        return 200, body

    @staticmethod
    def discovery(issuer: str) -> dict[str, object]:
        """The OIDC discovery document (only ``token_endpoint`` matters to clients)."""
        return {
            "issuer": issuer,
            "token_endpoint": issuer + TOKEN_PATH,
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "response_types_supported": ["token"],
        }


def _basic_credentials(authorization: str) -> tuple[str, str] | None:
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return None
    # RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
    return unquote_plus(client_id), unquote_plus(secret)


def _deny(status: int, message: str, *, bearer_error: str | None = None) -> Denial:
    headers = {"WWW-Authenticate": f'Bearer error="{bearer_error}"'} if bearer_error else {}
    return Denial(status=status, body={"code": status, "message": message}, headers=headers)
