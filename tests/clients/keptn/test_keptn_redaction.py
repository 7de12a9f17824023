"""The API token and the OAuth client secret never appear in an error or a log record."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from jes import errors
from jes.clients.keptn import auth, client, configsource, wire
from jes.sources import poller
from tests.clients.keptn.support import CLIENT_SECRET, TOKEN, FakeClock, RecordingSleep, Script, make_settings, reply

SECRETS = (TOKEN, CLIENT_SECRET)

OAUTH: dict[str, Any] = {
    "oauth_client_id": "jes-client",
    "oauth_client_secret": CLIENT_SECRET,
    "oauth_scopes": ("keptn:events:write",),
    "oauth_token_url": "https://idp.test/token",
}


def echo_headers(request: httpx.Request) -> httpx.Response:
    """A hostile server that puts the request headers into its error message."""
    return reply(500, {"code": 500, "message": f"headers: {dict(request.headers)}"})


FAILURES: list[Any] = [
    reply(401, {"code": 401, "message": "incorrect api key auth"}),
    reply(403, text="<html>forbidden</html>"),
    reply(404, {"code": 404, "message": "not found"}),
    reply(429, {"code": 429, "message": "too many requests"}, headers={"Retry-After": "1"}),
    reply(502, text="bad gateway"),
    reply(200, text="garbage"),
    httpx.ConnectError("refused"),
    httpx.ReadTimeout("slow"),
    httpx.RemoteProtocolError("dropped"),
]


def texts_of(exc: BaseException) -> list[str]:
    found = [str(exc), repr(exc)]
    found += [str(v) for v in vars(exc).values()]
    if exc.__cause__ is not None and not isinstance(exc.__cause__, httpx.HTTPError):
        found += texts_of(exc.__cause__)
    return found


async def exercise(keptn: client.KeptnClient) -> list[str]:
    """Every client call once; the texts of the errors they raised."""
    registration = wire.Registration(name="jes", metadata=wire.IntegrationMetadata(hostname="h"))
    calls = [
        lambda: keptn.get_triggered("sh.keptn.event.test.triggered"),
        lambda: keptn.send_event({"type": "sh.keptn.event.test.started", "data": {}}),
        lambda: keptn.register(registration),
        lambda: keptn.ping("i"),
        lambda: keptn.list_registrations("jes"),
        lambda: keptn.post_logs([wire.LogEntry(integrationid="i", message="m")]),
        lambda: keptn.get_resource("p", "job/config.yaml", stage="s", service="v"),
        lambda: keptn.list_resources("p", "s", "v"),
        lambda: keptn.find_events(keptn_context="c"),
        lambda: keptn.check(),
        lambda: configsource.ConfigSource(keptn).fetch_config("p", "s", "v", "abc"),
    ]
    texts = []
    for call in calls:
        try:
            await call()
        except errors.JesError as exc:
            texts += texts_of(exc)
    return texts


@pytest.mark.parametrize("mode", ["token", "oauth"])
@pytest.mark.parametrize("failure", [*FAILURES, echo_headers])
async def test_no_secret_in_errors_or_logs(
    script: Script,
    sleep: RecordingSleep,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    mode: str,
    failure: Any,
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = make_settings(**(OAUTH if mode == "oauth" else {}))
    script.on("POST", "/token", reply(200, {"access_token": "bearer-value", "expires_in": 60}))
    script.on("POST", "/api/v1/event", failure)
    script.on("POST", "/api/.*", failure)
    script.on("GET", "/api/.*", failure)
    script.on("PUT", "/api/.*", failure)
    async with auth.make_http_client(settings, transport=httpx.MockTransport(script), clock=clock) as http:
        keptn = client.KeptnClient.from_settings(http, settings, sleep=sleep)
        texts = await exercise(keptn)
        the_poller = poller.Poller(keptn, settings.with_overrides(pubsub_topics=("x",)), _ignore, sleep=sleep)
        for _ in range(2):
            try:
                await the_poller.heartbeat_once()
            except errors.KeptnError as exc:
                texts += texts_of(exc)
            await the_poller.poll_once()
    assert texts, "the failures must have raised errors"
    logged = [record.getMessage() for record in caplog.records]
    logged += [record.exc_text or "" for record in caplog.records]
    for text in texts + logged:
        for secret in SECRETS:
            assert secret not in text


async def test_a_rejected_oauth_client_never_shows_its_secret(
    script: Script, sleep: RecordingSleep, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    script.on("POST", "/token", lambda r: reply(401, {"error": "invalid_client", "echo": r.content.decode()}))
    settings = make_settings(**OAUTH)
    async with auth.make_http_client(settings, transport=httpx.MockTransport(script)) as http:
        texts = await exercise(client.KeptnClient.from_settings(http, settings, sleep=sleep))
    assert any("invalid_client" in text for text in texts)
    for text in texts + [r.getMessage() for r in caplog.records]:
        assert CLIENT_SECRET not in text and TOKEN not in text


async def _ignore(event: dict[str, Any], subscription_id: str) -> None:
    return None


def test_settings_repr_hides_secrets() -> None:
    text = repr(make_settings(**OAUTH))
    assert TOKEN not in text and CLIENT_SECRET not in text
