"""x-token and OAuth client credentials; TLS and timeout settings of the shared HTTP client."""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from jes import errors, settings
from jes.clients import httptransport
from jes.clients.keptn import auth, client
from tests.clients.keptn.support import CLIENT_SECRET, TOKEN, FakeClock, Script, make_settings, reply

ClientFactory = Callable[..., client.KeptnClient]
API = "/api/controlPlane/v1/uniform/registration"
TOKEN_URL = "https://idp.test/oauth2/token"
DISCOVERY_URL = "https://idp.test/.well-known/openid-configuration"

OAUTH: dict[str, Any] = {
    "oauth_client_id": "jes-client",
    "oauth_client_secret": CLIENT_SECRET,
    "oauth_scopes": ("keptn:events:write", "keptn:integrations:write"),
    "oauth_token_url": TOKEN_URL,
}


def token_answer(value: str, expires_in: int | None = 100) -> httpx.Response:
    body: dict[str, Any] = {"access_token": value, "token_type": "Bearer"}
    if expires_in is not None:
        body["expires_in"] = expires_in
    return reply(200, body)


def issued_tokens(*values: str) -> Callable[[httpx.Request], httpx.Response]:
    queue = list(values)
    return lambda request: token_answer(queue.pop(0))


async def test_oauth_posts_client_credentials_with_basic_auth(script: Script, make_client: ClientFactory) -> None:
    script.on("POST", "/oauth2/token", token_answer("at-1"))
    script.on("GET", API, reply(200, []))
    await make_client(**OAUTH).list_registrations()
    token_request, api_request = script.requests
    assert str(token_request.url) == TOKEN_URL
    form = parse_qs(token_request.content.decode())
    assert form == {"grant_type": ["client_credentials"], "scope": ["keptn:events:write keptn:integrations:write"]}
    basic = base64.b64decode(token_request.headers["authorization"].removeprefix("Basic ")).decode()
    assert basic == f"jes-client:{CLIENT_SECRET}"
    assert "x-token" not in token_request.headers  # the Keptn token never goes to the identity provider
    assert api_request.headers["authorization"] == "Bearer at-1"
    assert api_request.headers["x-token"] == TOKEN  # both when both are configured


async def test_oauth_without_an_api_token_sends_only_the_bearer(script: Script, make_client: ClientFactory) -> None:
    script.on("POST", "/oauth2/token", token_answer("at-1"))
    script.on("GET", API, reply(200, []))
    await make_client(keptn_api_token="", **OAUTH).list_registrations()
    assert "x-token" not in script.requests[1].headers


async def test_the_token_is_cached_and_refreshed_before_it_expires(
    script: Script, make_client: ClientFactory, clock: FakeClock
) -> None:
    script.on("POST", "/oauth2/token", issued_tokens("at-1", "at-2"))
    script.on("GET", API, reply(200, []))
    keptn = make_client(**OAUTH)
    for _ in range(3):
        await keptn.list_registrations()
    clock.advance(89)  # expires_in 100, refreshed 10 s early
    await keptn.list_registrations()
    assert script.count("POST", "/oauth2/token") == 1
    clock.advance(1)
    await keptn.list_registrations()
    assert script.count("POST", "/oauth2/token") == 2
    bearers = [r.headers["authorization"] for r in script.requests if r.url.path == API]
    assert bearers == ["Bearer at-1"] * 4 + ["Bearer at-2"]


async def test_concurrent_requests_share_one_token_fetch(script: Script, make_client: ClientFactory) -> None:
    async def slow_token(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.01)
        return token_answer("at-1")

    script.on("POST", "/oauth2/token", slow_token)  # type: ignore[arg-type]
    script.on("GET", API, reply(200, []))
    keptn = make_client(**OAUTH)
    await asyncio.gather(*(keptn.list_registrations() for _ in range(50)))
    assert script.count("POST", "/oauth2/token") == 1


async def test_a_401_to_an_older_bearer_token_fetches_a_new_one_and_retries_once(
    script: Script, make_client: ClientFactory, clock: FakeClock
) -> None:
    revoked = {"at-1": False}
    script.on("POST", "/oauth2/token", issued_tokens("at-1", "at-2"))
    script.on(
        "GET",
        API,
        lambda r: reply(401, {"message": "expired"}) if revoked.get(r.headers["authorization"][7:]) else reply(200, []),
    )
    keptn = make_client(**OAUTH)
    await keptn.list_registrations()
    clock.advance(auth.MIN_AGE_TO_REFETCH_S)
    revoked["at-1"] = True  # the gateway revoked it before its announced expiry
    await keptn.list_registrations()
    assert script.count("POST", "/oauth2/token") == 2
    assert script.count("GET", API) == 3


async def test_a_401_to_a_brand_new_token_is_not_retried(
    script: Script, make_client: ClientFactory, clock: FakeClock
) -> None:
    # e.g. the x-token is wrong: a new bearer token would not help
    script.on("POST", "/oauth2/token", issued_tokens("at-1", "at-2", "at-3"))
    script.on("GET", API, reply(401, {"message": "incorrect api key auth"}))
    keptn = make_client(**OAUTH)
    for _ in range(3):
        with pytest.raises(errors.KeptnAuthError):
            await keptn.list_registrations()
    assert script.count("POST", "/oauth2/token") == 1
    assert script.count("GET", API) == 3


async def test_discovery_finds_the_token_endpoint_once(script: Script, make_client: ClientFactory) -> None:
    script.on("GET", "/.well-known/openid-configuration", reply(200, {"issuer": "x", "token_endpoint": TOKEN_URL}))
    script.on("POST", "/oauth2/token", token_answer("at-1", expires_in=0))
    script.on("GET", API, reply(200, []))
    settings = OAUTH | {"oauth_token_url": "", "oauth_discovery": DISCOVERY_URL}
    keptn = make_client(**settings)
    await keptn.list_registrations()
    await keptn.list_registrations()  # expires_in 0: a new token, but no new discovery
    assert script.count("GET", "/.well-known/openid-configuration") == 1
    assert script.count("POST", "/oauth2/token") == 2
    discovery = script.requests[0]
    assert "x-token" not in discovery.headers and "authorization" not in discovery.headers


async def test_the_token_url_wins_over_discovery(script: Script, make_client: ClientFactory) -> None:
    script.on("POST", "/oauth2/token", token_answer("at-1"))
    script.on("GET", API, reply(200, []))
    await make_client(**OAUTH | {"oauth_discovery": DISCOVERY_URL}).list_registrations()
    assert script.count("GET", "/.well-known/openid-configuration") == 0


async def test_discovery_failure_is_reported_with_its_url(script: Script, make_client: ClientFactory) -> None:
    script.on("GET", "/.well-known/openid-configuration", reply(404, text="nope"))
    settings = OAUTH | {"oauth_token_url": "", "oauth_discovery": DISCOVERY_URL}
    with pytest.raises(errors.KeptnNotFoundError, match=r"OAuth discovery: GET https://idp.test/.well-known"):
        await make_client(**settings).list_registrations()


async def test_rejected_client_credentials_are_an_auth_error_without_the_secret(
    script: Script, make_client: ClientFactory
) -> None:
    script.on(
        "POST",
        "/oauth2/token",
        reply(401, {"error": "invalid_client", "error_description": "Client authentication failed"}),
    )
    with pytest.raises(errors.KeptnAuthError) as caught:
        await make_client(**OAUTH).get_triggered("sh.keptn.event.test.triggered")
    message = str(caught.value)
    assert "POST https://idp.test/oauth2/token returned 401: invalid_client: Client authentication failed" in message
    assert CLIENT_SECRET not in message and TOKEN not in message
    # Basic first, then the credentials in the body (Go's oauth2 auto-detection); no quick retries.
    assert script.count("POST", "/oauth2/token") == 2
    assert CLIENT_SECRET in script.requests[1].content.decode()


async def test_an_identity_provider_that_wants_the_secret_in_the_body(
    script: Script, make_client: ClientFactory
) -> None:
    def token_endpoint(request: httpx.Request) -> httpx.Response:
        if "client_secret" in parse_qs(request.content.decode()):
            return token_answer("at-1")
        return reply(400, {"error": "invalid_request"})

    script.on("POST", "/oauth2/token", token_endpoint)
    script.on("GET", API, reply(200, []))
    keptn = make_client(**OAUTH | {"oauth_token_url": TOKEN_URL})
    await keptn.list_registrations()
    assert script.requests[-1].headers["authorization"] == "Bearer at-1"


async def test_an_unreachable_token_endpoint_is_temporary(script: Script, make_client: ClientFactory) -> None:
    script.on("POST", "/oauth2/token", httpx.ConnectError("refused"), token_answer("at-1"))
    script.on("GET", "/api/controlPlane/v1/event/triggered/.*", reply(200, {"events": []}))
    assert await make_client(**OAUTH).get_triggered("sh.keptn.event.test.triggered") == []


@pytest.mark.parametrize(
    "missing",
    ["oauth_client_id", "oauth_client_secret", "oauth_scopes", "oauth_token_url"],
)
async def test_oauth_needs_every_setting(script: Script, make_client: ClientFactory, missing: str) -> None:
    script.on("GET", API, reply(200, []))
    empty: Any = () if missing == "oauth_scopes" else ""
    await make_client(**OAUTH | {missing: empty}).list_registrations()
    assert [r.url.path for r in script.requests] == [API]
    assert "authorization" not in script.requests[0].headers


def test_the_secret_is_not_in_the_oauth_config_repr() -> None:
    config = auth.OAuthConfig.from_settings(make_settings(**OAUTH))
    assert config is not None and CLIENT_SECRET not in repr(config)
    assert TOKEN not in repr(auth.KeptnAuth(TOKEN))


def test_describe_names_the_mechanisms_without_secrets() -> None:
    assert auth.describe(make_settings()) == "x-token"
    assert auth.describe(make_settings(**OAUTH)) == f"x-token + oauth client credentials via {TOKEN_URL}"
    assert auth.describe(make_settings(keptn_api_token="")) == "none"


# -- TLS and client settings --------------------------------------------------------------------


def test_tls_verification_follows_the_settings(tmp_path: Path) -> None:
    assert auth.ssl_verify(make_settings()) is True
    assert auth.ssl_verify(make_settings(http_ssl_verify=False, http_ssl_ca_bundle="/ignored")) is False
    with pytest.raises(errors.SettingsError, match="HTTP_SSL_CA_BUNDLE"):
        auth.ssl_verify(make_settings(http_ssl_ca_bundle=str(tmp_path / "missing.pem")))


def test_a_ca_bundle_becomes_an_ssl_context() -> None:
    bundle = ssl.get_default_verify_paths().cafile
    if not bundle:
        pytest.skip("no system CA file to load")
    context = auth.ssl_verify(make_settings(http_ssl_ca_bundle=bundle))
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED


async def test_the_http_client_has_timeouts_and_a_small_pool() -> None:
    http = auth.make_http_client(make_settings(http_timeout_s=7.0))
    try:
        # every request has a timeout; waiting for a pooled connection is not a failure
        assert http.timeout == httpx.Timeout(7.0, pool=None)
        transport = http._transport  # type: ignore[attr-defined]
        assert isinstance(transport, httptransport.LeanTransport)
        assert transport.max_connections == 8  # JES_HTTP_MAX_CONNECTIONS
        assert not http.follow_redirects
    finally:
        await http.aclose()


async def test_behind_an_http_proxy_the_client_keeps_httpx_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lean transport does not speak to proxies: with HTTP_PROXY set, httpx's own transport
    (which honours HTTP_PROXY and NO_PROXY) carries the requests."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    http = auth.make_http_client(make_settings())
    try:
        assert not isinstance(http._transport, httptransport.LeanTransport)  # type: ignore[attr-defined]
        assert http._transport._pool._max_connections == 8  # type: ignore[attr-defined]
    finally:
        await http.aclose()


async def test_the_auth_works_only_with_the_async_client() -> None:
    with pytest.raises(RuntimeError, match="AsyncClient"):
        next(auth.KeptnAuth(TOKEN).sync_auth_flow(httpx.Request("GET", "http://x/")))


async def test_the_token_file_is_read_again_when_the_secret_is_rotated(tmp_path: Path) -> None:
    """The chart mounts the token Secret as a file; Kubernetes updates it in place on rotation."""
    token_file = tmp_path / "token"
    token_file.write_text("first-token\n")
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("x-token", ""))
        return httpx.Response(200, json={})

    now = [0.0]
    current = settings.load({"KEPTN_API_ENDPOINT": "http://cp.test/api", "KEPTN_API_TOKEN": "ignored",
                             "KEPTN_API_TOKEN_FILE": str(token_file)})  # fmt: skip
    assert current.keptn_api_token == "first-token"
    async with auth.make_http_client(current, transport=httpx.MockTransport(answer), clock=lambda: now[0]) as http:
        await http.get("http://cp.test/api/v1/metadata")
        token_file.write_text("second-token\n")
        os.utime(token_file, (time.time() + 5, time.time() + 5))
        now[0] += 2
        await http.get("http://cp.test/api/v1/metadata")
        assert isinstance(http.auth, auth.KeptnAuth)
        assert set(http.auth.secrets()) >= {"first-token", "second-token"}
    assert seen == ["first-token", "second-token"]


def test_an_unreadable_token_file_stops_jes_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(errors.SettingsError, match=r"KEPTN_API_TOKEN_FILE: cannot read .*/nope: No such file"):
        settings.load({"KEPTN_API_TOKEN_FILE": str(tmp_path / "nope")})
