"""KeptnClient against a scripted transport: paths, payloads, pagination, errors and retries."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from jes import errors
from jes.clients.keptn import arrival, client, httperrors, wire
from jes.util import retry
from tests.clients.keptn.support import TOKEN, RecordingSleep, Script, reply

ClientFactory = Callable[..., client.KeptnClient]
TRIGGERED = "/api/controlPlane/v1/event/triggered/sh.keptn.event.test.triggered"


def event(event_id: str, **data: Any) -> dict[str, Any]:
    return {"id": event_id, "type": "sh.keptn.event.test.triggered", "shkeptncontext": "ctx", "data": data}


async def test_the_token_goes_in_x_token_and_only_when_set(script: Script, make_client: ClientFactory) -> None:
    script.on("GET", TRIGGERED, reply(200, {"events": [], "nextPageKey": "0"}))
    await make_client().get_triggered("sh.keptn.event.test.triggered")
    await make_client(keptn_api_token="").get_triggered("sh.keptn.event.test.triggered")
    with_token, without = script.requests
    assert with_token.headers["x-token"] == TOKEN
    assert "x-token" not in without.headers
    assert "authorization" not in with_token.headers


async def test_triggered_events_follow_pages_and_send_only_given_filters(
    script: Script, make_client: ClientFactory
) -> None:
    pages = {
        None: {"events": [event("a"), event("b")], "nextPageKey": "2", "totalCount": 3},
        "2": {"events": [event("c")], "nextPageKey": "0", "totalCount": 3},
    }
    script.on("GET", TRIGGERED, lambda r: reply(200, pages[r.url.params.get("nextPageKey")]))
    events = await make_client().get_triggered("sh.keptn.event.test.triggered", project="p", service="s")
    assert [e["id"] for e in events] == ["a", "b", "c"]
    first = script.requests[0].url.params
    assert (first["project"], first["service"]) == ("p", "s")
    assert "stage" not in first


async def test_the_server_pagination_bug_yields_each_event_once_and_ends(
    script: Script, make_client: ClientFactory
) -> None:
    # Keptn's page-2 bug (0.16-1.4.5): every later page repeats the first one.
    def buggy(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params.get("nextPageKey", "0"))
        more = offset + 2 < 6
        return reply(200, {"events": [event("a"), event("b")], "nextPageKey": str(offset + 2) if more else "0"})

    script.on("GET", TRIGGERED, buggy)
    events = await make_client().get_triggered("sh.keptn.event.test.triggered")
    assert [e["id"] for e in events] == ["a", "b"]
    assert len(script.requests) == 2  # the second page brought nothing new


async def test_an_empty_answer_has_no_events(script: Script, make_client: ClientFactory) -> None:
    script.on("GET", TRIGGERED, reply(200, {"events": [], "nextPageKey": "0"}))
    assert await make_client().get_triggered("sh.keptn.event.test.triggered") == []


async def test_temporary_errors_are_retried_with_the_backoff(
    script: Script, make_client: ClientFactory, sleep: RecordingSleep
) -> None:
    script.on("GET", TRIGGERED, reply(503, {"code": 503, "message": "down"}), reply(200, {"events": [event("a")]}))
    events = await make_client().get_triggered("sh.keptn.event.test.triggered")
    assert [e["id"] for e in events] == ["a"]
    assert sleep.delays == [retry.QUICK.delays_s[0]]


async def test_temporary_errors_raise_after_the_last_retry(
    script: Script, make_client: ClientFactory, sleep: RecordingSleep
) -> None:
    script.on("GET", TRIGGERED, reply(500, {"code": 500, "message": "mongo timeout"}))
    with pytest.raises(errors.KeptnTemporaryError) as caught:
        await make_client().get_triggered("sh.keptn.event.test.triggered")
    assert len(script.requests) == len(retry.QUICK.delays_s) + 1
    assert sleep.delays == list(retry.QUICK.delays_s)
    message = str(caught.value)
    assert "GET http://cp.test/api/controlPlane/v1/event/triggered/sh.keptn.event.test.triggered" in message
    assert "500" in message and "mongo timeout" in message
    assert caught.value.status == 500 and caught.value.server_message == "mongo timeout"


async def test_retry_after_of_a_429_stretches_the_wait(
    script: Script, make_client: ClientFactory, sleep: RecordingSleep
) -> None:
    script.on(
        "GET",
        TRIGGERED,
        reply(429, {"code": 429, "message": "too many requests"}, headers={"Retry-After": "7"}),
        reply(200, {"events": []}),
    )
    await make_client().get_triggered("sh.keptn.event.test.triggered")
    assert sleep.delays == [7.0]


def test_retry_after_accepts_an_http_date() -> None:
    request = httpx.Request("GET", "http://x/")
    past = httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, request=request)
    assert httperrors.retry_after_s(past) == 0.0
    junk = httpx.Response(429, headers={"Retry-After": "soon"}, request=request)
    assert httperrors.retry_after_s(junk) is None


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        pytest.param(401, errors.KeptnAuthError, id="401"),
        pytest.param(403, errors.KeptnAuthError, id="403"),
        pytest.param(404, errors.KeptnNotFoundError, id="404"),
        pytest.param(400, errors.KeptnPermanentError, id="400"),
        pytest.param(422, errors.KeptnPermanentError, id="422"),
    ],
)
async def test_client_errors_are_not_retried(
    script: Script, make_client: ClientFactory, sleep: RecordingSleep, status: int, error_type: type[Exception]
) -> None:
    script.on("GET", TRIGGERED, reply(status, {"code": status, "message": "incorrect api key auth"}))
    with pytest.raises(error_type) as caught:
        await make_client().get_triggered("sh.keptn.event.test.triggered")
    assert len(script.requests) == 1 and sleep.delays == []
    assert isinstance(caught.value, errors.Permanent)
    assert f"returned {status}: incorrect api key auth" in str(caught.value)


async def test_a_non_json_error_body_is_quoted_up_to_256_characters(script: Script, make_client: ClientFactory) -> None:
    script.on("GET", TRIGGERED, reply(403, text="<html>" + "x" * 1000 + "</html>"))
    with pytest.raises(errors.KeptnAuthError) as caught:
        await make_client().get_triggered("sh.keptn.event.test.triggered")
    assert caught.value.server_message == ("<html>" + "x" * 1000)[:256]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("<html>bad gateway</html>", id="html"),
        pytest.param('{"events": [', id="truncated"),
        pytest.param('["not", "an", "object"]', id="list"),
        pytest.param('{"events": "nope"}', id="wrong-shape"),
    ],
)
async def test_garbage_from_the_server_is_a_clear_temporary_error(
    script: Script, make_client: ClientFactory, body: str
) -> None:
    script.on("GET", TRIGGERED, reply(200, text=body))
    with pytest.raises(errors.KeptnTemporaryError) as caught:
        await make_client().get_triggered("sh.keptn.event.test.triggered")
    assert "GET http://cp.test/api/controlPlane/v1/event/triggered" in str(caught.value)
    assert len(script.requests) == len(retry.QUICK.delays_s) + 1


async def test_connection_errors_and_timeouts_are_temporary(script: Script, make_client: ClientFactory) -> None:
    script.on(
        "GET",
        TRIGGERED,
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("timed out"),
        reply(200, {"events": [event("a")]}),
    )
    assert len(await make_client().get_triggered("sh.keptn.event.test.triggered")) == 1
    assert len(script.requests) == 3


async def test_a_timeout_names_the_request_and_the_timeout(script: Script, make_client: ClientFactory) -> None:
    script.on("GET", TRIGGERED, httpx.ReadTimeout("timed out"))
    with pytest.raises(errors.KeptnTemporaryError) as caught:
        await make_client(http_timeout_s=12.5).get_triggered("sh.keptn.event.test.triggered", backoff=retry.Backoff(()))
    assert str(caught.value) == (
        "GET http://cp.test/api/controlPlane/v1/event/triggered/sh.keptn.event.test.triggered?pageSize=50: "
        "ReadTimeout: no answer after 12.5s"
    )


# -- sending events -----------------------------------------------------------------------------

STARTED = {
    "specversion": "1.0",
    "source": "job-executor-service",
    "type": "sh.keptn.event.test.started",
    "shkeptncontext": "ctx-1",
    "triggeredid": "t-1",
    "data": {"project": "p", "stage": "s", "service": "svc"},
}


async def test_send_event_posts_json_and_returns_the_keptn_context(script: Script, make_client: ClientFactory) -> None:
    script.on("POST", "/api/v1/event", reply(200, {"keptnContext": "ctx-server"}))
    assert await make_client().send_event(STARTED) == "ctx-server"
    request = script.requests[0]
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == STARTED


@pytest.mark.parametrize("answer", [reply(204), reply(200, text="OK"), reply(201, {"something": "else"})])
async def test_an_accepted_event_without_a_context_answer_is_not_sent_again(
    script: Script, make_client: ClientFactory, answer: httpx.Response
) -> None:
    script.on("POST", "/api/v1/event", answer)
    assert await make_client().send_event(STARTED) == "ctx-1"
    assert len(script.requests) == 1


async def test_send_event_retries_when_the_server_certainly_did_not_take_it(
    script: Script, make_client: ClientFactory
) -> None:
    script.on(
        "POST",
        "/api/v1/event",
        httpx.ConnectError("refused"),
        reply(500, {"code": 500, "message": "nats publish failed"}),
        reply(200, {"keptnContext": "ctx-1"}),
    )
    assert await make_client().send_event(STARTED) == "ctx-1"
    assert len(script.requests) == 3


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(httpx.ReadTimeout("no answer"), id="read-timeout"),
        pytest.param(httpx.RemoteProtocolError("Server disconnected without sending a response."), id="dropped"),
        pytest.param(httpx.ReadError("connection reset"), id="reset"),
        pytest.param(reply(504, text="<html>504 Gateway Time-out</html>"), id="gateway-timeout"),
        pytest.param(reply(502, text="<html>502 Bad Gateway</html>"), id="bad-gateway"),
    ],
)
async def test_send_event_does_not_repeat_a_post_that_may_have_arrived(
    script: Script, make_client: ClientFactory, sleep: RecordingSleep, failure: Exception | httpx.Response
) -> None:
    script.on("POST", "/api/v1/event", failure, reply(200, {"keptnContext": "ctx-1"}))
    with pytest.raises(httperrors.EventMaybeDeliveredError) as caught:
        await make_client().send_event(STARTED)
    assert len(script.requests) == 1 and sleep.delays == []
    assert caught.value.maybe_delivered
    assert isinstance(caught.value, errors.KeptnTemporaryError)
    assert "POST http://cp.test/api/v1/event" in str(caught.value)


async def test_other_posts_retry_after_a_dropped_connection(script: Script, make_client: ClientFactory) -> None:
    script.on(
        "POST",
        "/api/controlPlane/v1/uniform/registration",
        httpx.RemoteProtocolError("dropped"),
        reply(200, {"id": "abc"}),
    )
    registration = wire.Registration(name="jes", metadata=wire.IntegrationMetadata(hostname="h"))
    assert await make_client().register(registration) == "abc"


async def test_send_event_rejected_as_invalid_is_permanent(script: Script, make_client: ClientFactory) -> None:
    script.on("POST", "/api/v1/event", reply(422, {"code": 602, "message": "data in body is required"}))
    with pytest.raises(errors.KeptnPermanentError, match="data in body is required"):
        await make_client().send_event({"type": "x"})
    assert len(script.requests) == 1


# -- uniform ------------------------------------------------------------------------------------


async def test_register_sends_the_registration_and_returns_the_id(script: Script, make_client: ClientFactory) -> None:
    script.on("POST", "/api/controlPlane/v1/uniform/registration", reply(201, {"id": "int-1"}))
    registration = wire.Registration(
        name="job-executor-service",
        metadata=wire.IntegrationMetadata(
            hostname="node-1",
            integrationversion="0.1.0",
            distributorversion="0.15.0",
            location="remote-execution-plane",
            kubernetesmetadata=wire.KubernetesMetadata(namespace="ns", podname="pod", deploymentname="dep"),
        ),
        subscriptions=(
            wire.Subscription(
                event="sh.keptn.event.test.triggered", filter=wire.SubscriptionFilter(projects=("p",))
            ),
        ),
    )
    assert await make_client().register(registration) == "int-1"
    (body,) = script.bodies("POST", "/api/controlPlane/v1/uniform/registration")
    assert body == {
        "name": "job-executor-service",
        "metadata": {
            "hostname": "node-1",
            "integrationversion": "0.1.0",
            "distributorversion": "0.15.0",
            "location": "remote-execution-plane",
            "kubernetesmetadata": {"namespace": "ns", "podname": "pod", "deploymentname": "dep"},
        },
        "subscriptions": [
            {"event": "sh.keptn.event.test.triggered", "filter": {"projects": ["p"], "stages": [], "services": []}}
        ],
    }


async def test_ping_returns_the_integration_with_null_filters_as_empty(
    script: Script, make_client: ClientFactory
) -> None:
    script.on(
        "PUT",
        "/api/controlPlane/v1/uniform/registration/int-1/ping",
        reply(
            200,
            {
                "id": "int-1",
                "name": "job-executor-service",
                "metadata": {"hostname": "node-1", "lastseen": "2023-12-21T10:00:05.123Z", "extra": 1},
                "subscriptions": [
                    {
                        "id": "s1",
                        "event": "a.triggered",
                        "filter": {"projects": None, "stages": None, "services": None},
                    },
                    {"id": "s2", "event": "b.triggered", "filter": None},
                    {"id": "s3", "event": "c.triggered"},
                ],
            },
        ),
    )
    integration = await make_client().ping("int-1")
    assert integration.id == "int-1"
    assert [s.event for s in integration.subscriptions] == ["a.triggered", "b.triggered", "c.triggered"]
    assert all(s.filter == wire.SubscriptionFilter() for s in integration.subscriptions)
    assert integration.metadata.lastseen == "2023-12-21T10:00:05.123Z"


async def test_ping_of_an_unknown_integration_is_not_found(script: Script, make_client: ClientFactory) -> None:
    script.on(
        "PUT",
        "/api/controlPlane/v1/uniform/registration/gone/ping",
        reply(404, {"code": 404, "message": "uniform integration not found"}),
    )
    with pytest.raises(errors.KeptnNotFoundError, match="uniform integration not found"):
        await make_client().ping("gone")


async def test_ping_with_null_subscriptions_has_none(script: Script, make_client: ClientFactory) -> None:
    script.on("PUT", "/api/controlPlane/v1/uniform/registration/i/ping", reply(200, {"id": "i", "subscriptions": None}))
    assert (await make_client().ping("i")).subscriptions == ()


async def test_a_ping_answer_of_the_wrong_shape_is_temporary(script: Script, make_client: ClientFactory) -> None:
    script.on("PUT", "/api/controlPlane/v1/uniform/registration/i/ping", reply(200, {"subscriptions": [{"id": 3}]}))
    with pytest.raises(errors.KeptnTemporaryError, match="unexpected Integration"):
        await make_client().ping("i", backoff=retry.Backoff(()))


async def test_list_registrations_by_name(script: Script, make_client: ClientFactory) -> None:
    script.on(
        "GET",
        "/api/controlPlane/v1/uniform/registration",
        lambda r: (
            reply(200, [{"id": "x", "name": r.url.params["name"]}])
            if "name" in r.url.params
            else reply(200, text="null")
        ),
    )
    keptn = make_client()
    (found,) = await keptn.list_registrations("job-executor-service")
    assert (found.id, found.name) == ("x", "job-executor-service")
    assert await keptn.list_registrations() == []


async def test_post_logs(script: Script, make_client: ClientFactory) -> None:
    script.on("POST", "/api/controlPlane/v1/log", reply(200, {}))
    entry = wire.LogEntry(integrationid="i", message="boom", shkeptncontext="c", task="test", triggeredid="t")
    await make_client().post_logs([entry])
    await make_client().post_logs([])
    (body,) = script.bodies("POST", "/api/controlPlane/v1/log")
    (logged,) = body["logs"]
    assert logged["integrationid"] == "i" and logged["message"] == "boom" and logged["task"] == "test"
    assert logged["time"].endswith("Z")


# -- resources ----------------------------------------------------------------------------------


def resource_body(content: bytes, version: str = "c0ffee") -> dict[str, Any]:
    return {
        "resourceURI": "job%2Fconfig.yaml",
        "resourceContent": base64.b64encode(content).decode(),
        "metadata": {"upstreamURL": "https://git.example/p.git", "version": version},
    }


async def test_get_resource_double_encodes_the_uri_and_pins_the_commit(
    script: Script, make_client: ClientFactory
) -> None:
    script.on(
        "GET",
        "/api/resource-service/v1/project/p/stage/dev/service/hello/resource/.*",
        reply(200, resource_body(b"x: 1")),
    )
    resource = await make_client().get_resource(
        "p", "job/config.yaml", stage="dev", service="hello", git_commit_id="abc123"
    )
    assert (resource.content, resource.version, resource.uri) == (b"x: 1", "c0ffee", "job/config.yaml")
    request = script.requests[0]
    assert request.url.raw_path == (
        b"/api/resource-service/v1/project/p/stage/dev/service/hello/resource/job%252Fconfig.yaml?gitCommitID=abc123"
    )


@pytest.mark.parametrize(
    ("uri", "encoded"),
    [
        ("/job/config.yaml", "job%252Fconfig.yaml"),
        ("files/a b+c.txt", "files%252Fa%2Bb%252Bc.txt"),
        ("plain.txt", "plain.txt"),
    ],
)
def test_resource_uris_are_query_escaped_twice(uri: str, encoded: str) -> None:
    assert client.encode_resource_uri(uri) == encoded


async def test_project_level_resources_and_the_configurable_service_path(
    script: Script, make_client: ClientFactory
) -> None:
    script.on("GET", "/api/configuration-service/v1/project/p/resource/.*", reply(200, resource_body(b"y")))
    resource = await make_client(resource_service_path="configuration-service").get_resource("p", "job/config.yaml")
    assert resource.content == b"y"
    assert "gitCommitID" not in script.requests[0].url.params


async def test_bad_base64_content_is_temporary(script: Script, make_client: ClientFactory) -> None:
    script.on("GET", "/api/resource-service/.*", reply(200, {"resourceContent": "!!!not base64"}))
    with pytest.raises(errors.KeptnTemporaryError, match="not base64"):
        await make_client().get_resource("p", "job/config.yaml")


async def test_list_resources_pages_and_normalises_uris(script: Script, make_client: ClientFactory) -> None:
    pages = {
        None: {
            "resources": [{"resourceURI": "/job/config.yaml"}, {"resourceURI": "helm/values.yaml"}],
            "nextPageKey": "2",
        },
        "2": {"resources": [{"resourceURI": "/helm/Chart.yaml"}], "nextPageKey": "0"},
    }
    script.on(
        "GET",
        "/api/resource-service/v1/project/p/stage/dev/service/hello/resource",
        lambda r: reply(200, pages[r.url.params.get("nextPageKey")]),
    )
    uris = await make_client().list_resources("p", "dev", "hello")
    assert uris == ["/job/config.yaml", "/helm/values.yaml", "/helm/Chart.yaml"]


# -- datastore ----------------------------------------------------------------------------------


def stored(type_: str, triggered_id: str, source: str, executor: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"project": "p"}
    if executor is not None:
        data["jes"] = {"executor": executor}
    return {"id": f"{type_}-{source}-{executor}", "type": type_, "triggeredid": triggered_id, "source": source,
            "data": data}  # fmt: skip


async def test_find_events_queries_the_datastore_page_by_page(script: Script, make_client: ClientFactory) -> None:
    pages = {
        None: {"events": [stored("a", "t", "s")], "nextPageKey": "1", "totalCount": 2},
        "1": {"events": [stored("b", "t", "s")], "nextPageKey": "0", "totalCount": 2},
    }
    script.on("GET", "/api/mongodb-datastore/event", lambda r: reply(200, pages[r.url.params.get("nextPageKey")]))
    events = await make_client().find_events(keptn_context="ctx", event_type="sh.keptn.event.test.started")
    assert [e["type"] for e in events] == ["a", "b"]
    params = script.requests[0].url.params
    assert (params["keptnContext"], params["type"]) == ("ctx", "sh.keptn.event.test.started")


async def test_delivered_matches_type_triggered_id_source_and_marker(
    script: Script, make_client: ClientFactory
) -> None:
    started = "sh.keptn.event.test.started"
    script.on(
        "GET",
        "/api/mongodb-datastore/event",
        reply(200, {"events": [stored(started, "t-1", "other"), stored(started, "t-1", "jes", executor="ns/EU")]}),
    )
    keptn = make_client()

    async def check(**kwargs: Any) -> bool:
        query = {"keptn_context": "ctx", "event_type": started, "triggered_id": "t-1", "source": "jes"} | kwargs
        return await arrival.delivered(keptn, **query)

    assert await check()
    assert await check(marker={"executor": "ns/EU"})
    assert not await check(marker={"executor": "ns/APAC"})
    assert not await check(triggered_id="t-2")
    assert not await check(source="someone")


async def test_check_authenticates_and_reads_metadata(script: Script, make_client: ClientFactory) -> None:
    script.on("POST", "/api/v1/auth", reply(200))
    script.on("GET", "/api/v1/metadata", reply(200, {"keptnversion": "1.4.5", "namespace": "keptn"}))
    result = await make_client().check()
    assert result["authenticated"] is True
    assert result["metadata"]["keptnversion"] == "1.4.5"


async def test_check_with_a_wrong_token_is_an_auth_error(script: Script, make_client: ClientFactory) -> None:
    script.on("POST", "/api/v1/auth", reply(401, {"code": 401, "message": "incorrect api key auth"}))
    with pytest.raises(errors.KeptnAuthError, match=r"POST http://cp.test/api/v1/auth returned 401"):
        await make_client().check()


async def test_user_info_in_the_endpoint_never_reaches_a_message(script: Script, make_client: ClientFactory) -> None:
    script.on("GET", TRIGGERED, reply(500, {"message": "x"}))
    keptn = make_client(keptn_api_endpoint="http://user:pa55word@cp.test/api")
    with pytest.raises(errors.KeptnTemporaryError) as caught:
        await keptn.get_triggered("sh.keptn.event.test.triggered", backoff=retry.Backoff(()))
    assert "pa55word" not in str(caught.value) and "pa55word" not in caught.value.url


async def test_started_reports_use_at_most_half_of_the_connections() -> None:
    """Under a burst every open event is taken and its .started sent at once: the reports of
    events already running (.finished, progress) must not queue behind all of them."""
    active: dict[str, int] = {"started": 0, "other": 0}
    peak: dict[str, int] = {"started": 0, "other": 0}
    gate = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        kind = "started" if b".started" in request.content else "other"
        active[kind] += 1
        peak[kind] = max(peak[kind], active[kind])
        await gate.wait()
        active[kind] -= 1
        return httpx.Response(200, json={"keptnContext": "c"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        keptn = client.KeptnClient(http, "http://cp.test/api", max_in_flight=8)
        started = [{"type": "sh.keptn.event.a.started", "shkeptncontext": "c", "id": f"s{k}"} for k in range(20)]
        finished = [{"type": "sh.keptn.event.a.finished", "shkeptncontext": "c", "id": f"f{k}"} for k in range(2)]
        sends = [asyncio.create_task(keptn.send_event(e)) for e in started + finished]
        for _ in range(50):
            await asyncio.sleep(0)
        assert active == {"started": 4, "other": 2}  # the .finished got a connection at once
        gate.set()
        await asyncio.gather(*sends)
    assert peak == {"started": 4, "other": 2}
