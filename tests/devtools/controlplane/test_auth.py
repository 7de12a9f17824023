"""Authentication: x-token on every route with Keptn's answers, the gateway's 429, OAuth mode."""

from __future__ import annotations

import base64
from collections.abc import Callable

import httpx
import pytest

from jes.devtools.controlplane import server
from tests.devtools.controlplane import helpers

ROUTES = [
    ("GET", f"/controlPlane/v1/event/triggered/{helpers.SAYHELLO_TRIGGERED}"),
    ("POST", "/controlPlane/v1/uniform/registration"),
    ("PUT", "/controlPlane/v1/uniform/registration/abc/ping"),
    ("POST", "/controlPlane/v1/log"),
    ("GET", "/resource-service/v1/project/my-first-project/resource/shipyard.yaml"),
    ("GET", "/mongodb-datastore/event?project=my-first-project"),
]
API_SERVICE_ROUTES = [("POST", "/v1/event"), ("POST", "/v1/auth"), ("GET", "/v1/metadata")]
OAUTH = server.OAuthConfig(client_id="jes", client_secret="s3cret-client", token_ttl_s=60)
ALL_SCOPES = "keptn:events:read keptn:events:write keptn:integrations:write keptn:metadata:read"


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_gateway_routes_answer_401_without_or_with_a_wrong_token(
    cp: server.LocalControlPlane, make_client: Callable[..., httpx.Client], method: str, path: str
) -> None:
    for token in (None, "wrong"):
        reply = make_client(cp, token=token).request(method, path, json={})

        assert reply.status_code == 401
        assert reply.json() == {"code": 401, "message": "unauthenticated or invalid credentials"}


@pytest.mark.parametrize(("method", "path"), API_SERVICE_ROUTES)
def test_api_service_routes_answer_with_their_own_messages(
    cp: server.LocalControlPlane, make_client: Callable[..., httpx.Client], method: str, path: str
) -> None:
    missing = make_client(cp, token=None).request(method, path, json=helpers.hello())
    wrong = make_client(cp, token="wrong").request(method, path, json=helpers.hello())

    assert (missing.status_code, missing.json()) == (
        401,
        {"code": 401, "message": "unauthenticated for invalid credentials"},
    )
    assert (wrong.status_code, wrong.json()) == (401, {"code": 401, "message": "incorrect api key auth"})


def test_the_token_never_appears_in_answers(
    cp: server.LocalControlPlane, make_client: Callable[..., httpx.Client]
) -> None:
    for token in (None, "wrong", helpers.TOKEN):
        for method, path in ROUTES + API_SERVICE_ROUTES:
            reply = make_client(cp, token=token).request(method, path, content=b"{bad")
            assert helpers.TOKEN not in reply.text


def test_an_empty_token_disables_the_check(
    make_cp: Callable[..., server.LocalControlPlane], make_client: Callable[..., httpx.Client]
) -> None:
    client = make_client(make_cp(token=""), token=None)

    assert client.get("/v1/metadata").status_code == 200
    assert client.get(f"/controlPlane/v1/event/triggered/{helpers.SAYHELLO_TRIGGERED}").status_code == 200


def test_repeated_bad_tokens_get_429_until_a_good_one(
    make_cp: Callable[..., server.LocalControlPlane],
    make_client: Callable[..., httpx.Client],
    clock: server.FakeClock,
) -> None:
    cp = make_cp(rate_limit_bad_tokens=True, clock=clock)
    bad, good = make_client(cp, token="wrong"), make_client(cp)
    path = f"/controlPlane/v1/event/triggered/{helpers.SAYHELLO_TRIGGERED}"

    statuses = [bad.get(path).status_code for _ in range(4)]
    assert statuses == [401, 401, 429, 429]
    assert bad.get(path).json() == {"code": 429, "message": "too many requests"}
    clock.advance(1)
    assert bad.get(path).status_code == 401
    assert good.get(path).status_code == 200
    assert [bad.get(path).status_code for _ in range(3)] == [401, 401, 429]


# -- OAuth ------------------------------------------------------------------------------------


def token_reply(cp: server.LocalControlPlane, *, basic: bool = True, secret: str = "s3cret-client",
                scope: str = ALL_SCOPES, grant: str = "client_credentials") -> httpx.Response:  # fmt: skip
    form = {"grant_type": grant, "scope": scope}
    headers = {}
    if basic:
        headers["Authorization"] = "Basic " + base64.b64encode(f"jes:{secret}".encode()).decode()
    else:
        form.update(client_id="jes", client_secret=secret)
    return httpx.post(cp.oauth_token_url, data=form, headers=headers, timeout=5, verify=helpers.SSL_CONTEXT)


def bearer_client(cp: server.LocalControlPlane, access_token: str) -> httpx.Client:
    headers = {"Authorization": f"Bearer {access_token}"}
    return httpx.Client(base_url=cp.url, headers=headers, timeout=5, verify=helpers.SSL_CONTEXT)


@pytest.fixture
def oauth_cp(make_cp: Callable[..., server.LocalControlPlane], clock: server.FakeClock) -> server.LocalControlPlane:
    return make_cp(oauth=OAUTH, clock=clock)


def test_discovery_names_the_token_endpoint(oauth_cp: server.LocalControlPlane) -> None:
    document = httpx.get(oauth_cp.oauth_discovery_url, timeout=5, verify=helpers.SSL_CONTEXT).json()

    assert document["token_endpoint"] == oauth_cp.oauth_token_url
    assert "client_credentials" in document["grant_types_supported"]


@pytest.mark.parametrize("basic", [True, False], ids=["basic-auth", "body-auth"])
def test_the_token_endpoint_issues_bearer_tokens(oauth_cp: server.LocalControlPlane, basic: bool) -> None:
    reply = token_reply(oauth_cp, basic=basic)

    assert reply.status_code == 200
    body = reply.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 60 and body["access_token"]
    with bearer_client(oauth_cp, body["access_token"]) as client:
        assert client.post("/v1/event", json=helpers.hello()).status_code == 200
        assert client.get(f"/controlPlane/v1/event/triggered/{helpers.SAYHELLO_TRIGGERED}").status_code == 200


@pytest.mark.parametrize(
    ("change", "status", "error"),
    [
        ({"secret": "wrong"}, 401, "invalid_client"),
        ({"grant": "password"}, 400, "unsupported_grant_type"),
    ],
)
def test_the_token_endpoint_refuses_bad_requests(
    oauth_cp: server.LocalControlPlane, change: dict[str, str], status: int, error: str
) -> None:
    reply = token_reply(oauth_cp, **change)  # type: ignore[arg-type]

    assert reply.status_code == status
    assert reply.json()["error"] == error


def test_bearer_tokens_expire(oauth_cp: server.LocalControlPlane, clock: server.FakeClock) -> None:
    access_token = token_reply(oauth_cp).json()["access_token"]
    with bearer_client(oauth_cp, access_token) as client:
        assert client.get("/v1/metadata").status_code == 200
        clock.advance(61)
        reply = client.get("/v1/metadata")

    assert reply.status_code == 401
    assert reply.json() == {"code": 401, "message": "the bearer token has expired"}
    assert 'error="invalid_token"' in reply.headers["www-authenticate"]


def test_requests_without_a_valid_bearer_token_are_refused(oauth_cp: server.LocalControlPlane) -> None:
    with httpx.Client(base_url=oauth_cp.url, headers={"x-token": helpers.TOKEN}, verify=helpers.SSL_CONTEXT) as client:
        assert client.get("/v1/metadata").status_code == 401
    with bearer_client(oauth_cp, "made-up") as client:
        assert client.get("/v1/metadata").json() == {"code": 401, "message": "invalid bearer token"}


def test_scopes_are_enforced(oauth_cp: server.LocalControlPlane) -> None:
    access_token = token_reply(oauth_cp, scope="keptn:events:read").json()["access_token"]
    with bearer_client(oauth_cp, access_token) as client:
        assert client.get(f"/controlPlane/v1/event/triggered/{helpers.SAYHELLO_TRIGGERED}").status_code == 200
        reply = client.post("/v1/event", json=helpers.hello())

    assert reply.status_code == 403
    assert reply.json() == {"code": 403, "message": "insufficient scope: this request needs keptn:events:write"}


def test_a_client_may_only_get_its_allowed_scopes(
    make_cp: Callable[..., server.LocalControlPlane],
) -> None:
    cp = make_cp(oauth=server.OAuthConfig(client_id="jes", client_secret="s3cret-client", allowed_scopes=("a",)))

    assert token_reply(cp, scope="a").status_code == 200
    assert token_reply(cp, scope="a b").json()["error"] == "invalid_scope"


def test_oauth_can_require_the_x_token_as_well(
    make_cp: Callable[..., server.LocalControlPlane],
) -> None:
    oauth = server.OAuthConfig(client_id="jes", client_secret="s3cret-client", require_x_token=True)
    cp = make_cp(oauth=oauth)
    access_token = token_reply(cp).json()["access_token"]

    with bearer_client(cp, access_token) as client:
        assert client.get("/v1/metadata").status_code == 401
        assert client.get("/v1/metadata", headers={"x-token": helpers.TOKEN}).status_code == 200


def test_without_oauth_there_is_no_token_endpoint(cp: server.LocalControlPlane) -> None:
    form = {"grant_type": "client_credentials"}
    assert httpx.get(cp.oauth_discovery_url, verify=helpers.SSL_CONTEXT).status_code == 404
    assert httpx.post(cp.oauth_token_url, data=form, verify=helpers.SSL_CONTEXT).status_code == 404
