"""Per-task tokens: what a task may do through the proxy (its own event's status and error log,
its own service's resources, its own context's events) and nothing else; the task listener wants
a live token on every route but /health."""

from __future__ import annotations

import base64

import httpx
import pytest

from jes.devtools.controlplane.server import LocalControlPlane
from jes.proxy.scopes import ScopeStore, TaskScope, token_from_headers
from tests.proxy.conftest import MakeProxy
from tests.proxy.support import CONFIG_PATH, HELLO_APAC, PROJECT, SERVICE, STAGE, Proxy, status_changed

SCOPE = TaskScope(keptn_context="ctx-1", triggered_id="trig-1", project="p", stage="s", service="svc",
                  task_name="sayhello", job_name="job-1")  # fmt: skip
OWN_RESOURCES = ["resource-service", "v1", "project", "p", "stage", "s", "service", "svc", "resource"]


# -- the store -----------------------------------------------------------------------------------


def test_a_minted_token_is_random_and_only_its_hash_is_kept() -> None:
    store = ScopeStore()
    first, second = store.mint(SCOPE), store.mint(SCOPE)
    assert first != second and len(first) >= 40
    assert store.lookup(first) == SCOPE and store.lookup(second) == SCOPE
    assert first not in repr(vars(store)) and second not in repr(vars(store))
    assert store.lookup("") is None and store.lookup("made-up") is None


def test_revoking_by_token_or_by_job_name() -> None:
    store = ScopeStore()
    token = store.mint(SCOPE)
    other = store.mint(TaskScope(**{**vars(SCOPE), "job_name": "job-2"}))
    assert store.revoke(token) == 1 and store.lookup(token) is None
    assert store.lookup(other) is not None
    again = store.mint(SCOPE)
    assert store.revoke("job-1") == 1 and store.lookup(again) is None
    assert store.revoke("job-1") == 0 and len(store) == 1


def test_the_token_comes_from_x_token_or_a_bearer_authorization() -> None:
    assert token_from_headers({"x-token": "a"}) == "a"
    assert token_from_headers({"authorization": "Bearer b"}) == "b"
    assert token_from_headers({"authorization": "Basic Yjpj"}) == ""
    assert token_from_headers({}) == ""


@pytest.mark.parametrize(
    ("segments", "query"),
    [
        (OWN_RESOURCES, ""),
        ([*OWN_RESOURCES, "job%2Fconfig.yaml"], "gitCommitID=abc"),
        ([*OWN_RESOURCES, "job", "config.yaml"], ""),
        (["mongodb-datastore", "event"], "keptnContext=ctx-1&type=x"),
        (
            ["mongodb-datastore", "event", "type", "sh.keptn.event.sayhello.finished"],
            "filter=shkeptncontext%3Actx-1+AND+data.project%3Ap",
        ),
    ],
)
def test_what_a_scoped_token_may_read(segments: list[str], query: str) -> None:
    assert ScopeStore().check(SCOPE, "GET", segments, query) is None


@pytest.mark.parametrize(
    ("method", "segments", "query"),
    [
        ("PUT", [*OWN_RESOURCES, "x"], ""),
        ("DELETE", [*OWN_RESOURCES, "x"], ""),
        ("GET", ["resource-service", "v1", "project", "p", "stage", "s", "service", "other", "resource"], ""),
        ("GET", ["resource-service", "v1", "project", "p", "stage", "s", "resource"], ""),
        ("GET", ["resource-service", "v1", "project", "p", "resource", "x"], ""),
        (
            "GET",
            ["resource-service", "v1", "project", "p", "stage", "s", "service", "svc%2F..%2Fother", "resource"],
            "",
        ),
        ("GET", [*OWN_RESOURCES, "..%2F..%2F..%2Fother%2Fresource%2Fx"], ""),
        ("GET", [*OWN_RESOURCES, "%252e%252e", "x"], ""),
        ("GET", [*OWN_RESOURCES, "..", "..", "..", "service", "other", "resource", "x"], ""),
        ("GET", ["controlPlane", "v1", "project"], ""),
        ("GET", ["mongodb-datastore", "event"], "project=p"),
        ("GET", ["mongodb-datastore", "event"], "keptnContext=ctx-2"),
        ("GET", ["mongodb-datastore", "event"], "keptnContext=ctx-1&keptnContext=ctx-2"),
        ("GET", ["mongodb-datastore", "event", "type", "x"], "keptnContext=ctx-1"),
        ("GET", ["mongodb-datastore", "event", "type", "x"], "filter=shkeptncontext:ctx-1+AND+shkeptncontext:ctx-2"),
        ("GET", ["mongodb-datastore", "event", "type", "x"], "filter=shkeptncontext:ctx-1+AND+$where:1"),
    ],
)
def test_everything_else_is_refused_saying_what_the_token_may_do(method: str, segments: list[str], query: str) -> None:
    refused = ScopeStore().check(SCOPE, method, segments, query)
    assert refused is not None
    assert refused.startswith(
        "this task's token may only: send sh.keptn.event.sayhello.status.changed or sh.keptn.log.error for its own "
        "event (shkeptncontext ctx-1, triggeredid trig-1); read resources of p/s/svc; read events of its own context"
    )


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"type": "sh.keptn.event.sayhello.finished"}, "may not send"),
        ({"type": "sh.keptn.event.sayhello.started"}, "may not send"),
        ({"type": "sh.keptn.event.sayhello.triggered"}, "may not send"),
        ({"type": "sh.keptn.event.other.status.changed"}, "may not send"),
        ({"shkeptncontext": "ctx-2"}, "shkeptncontext 'ctx-2'"),
        ({"triggeredid": "trig-2"}, "triggeredid 'trig-2'"),
        ({"data": {"project": "p", "stage": "s", "service": "other"}}, "data.service 'other'"),
        ({"data": None}, "no data"),
    ],
)
def test_events_other_than_its_own_status_or_error_log_are_refused(changes: dict[str, object], why: str) -> None:
    refused = ScopeStore().check(SCOPE, "POST", (), "", status_changed(SCOPE, **changes))
    assert refused is not None and why in refused


def test_its_own_status_and_error_log_events_are_allowed() -> None:
    store = ScopeStore()
    assert store.check(SCOPE, "POST", (), "", status_changed(SCOPE)) is None
    assert store.check(SCOPE, "POST", (), "", status_changed(SCOPE, type="sh.keptn.log.error")) is None


# -- over loopback -------------------------------------------------------------------------------


async def scoped(plane: LocalControlPlane, proxy: Proxy) -> tuple[TaskScope, str]:
    """A real sayhello task of the hello-world sequence and a token for it."""
    context = plane.trigger_sequence(HELLO_APAC)
    triggered = plane.open_triggered("sh.keptn.event.sayhello.triggered")[0]
    assert triggered["shkeptncontext"] == context
    scope = TaskScope(keptn_context=context, triggered_id=triggered["id"], project=PROJECT, stage=STAGE,
                      service=SERVICE, task_name="sayhello", job_name="jes-sayhello-1")  # fmt: skip
    return scope, proxy.scopes.mint(scope)


async def test_a_task_sends_its_own_status_and_is_refused_anything_else(
    plane: LocalControlPlane, make_proxy: MakeProxy, caller: httpx.AsyncClient
) -> None:
    proxy = await make_proxy(task=True)
    scope, token = await scoped(plane, proxy)
    auth = {"x-token": token}
    sent = await caller.post(f"{proxy.task_url}/event", json=status_changed(scope), headers=auth)
    assert (sent.status_code, sent.content) == (200, b"")
    assert [e["type"] for e in plane.events(keptn_context=scope.keptn_context, type=scope.status_changed_type)] == [
        "sh.keptn.event.sayhello.status.changed"
    ]
    other = await caller.post(
        f"{proxy.task_url}/event", json=status_changed(scope, shkeptncontext="another"), headers=auth
    )
    assert other.status_code == 403
    assert other.json()["code"] == 403
    assert other.json()["message"].startswith("this task's token may only: send sh.keptn.event.sayhello.status.changed")
    assert f"shkeptncontext {scope.keptn_context}" in other.json()["message"] and "'another'" in other.json()["message"]
    finished = status_changed(scope, type="sh.keptn.event.sayhello.finished")
    finished["data"] = {**finished["data"], "result": "pass"}
    refused = await caller.post(f"{proxy.task_url}/event", json=finished, headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 403
    assert len(proxy.forwarded) == 1  # only the allowed status


async def test_a_task_reads_its_own_service_and_context_only(
    plane: LocalControlPlane, make_proxy: MakeProxy, caller: httpx.AsyncClient
) -> None:
    plane.create_service(PROJECT, "service2")
    plane.put_resource(project=PROJECT, stage=STAGE, service="service2", uri="secret.txt", content=b"not yours")
    proxy = await make_proxy(task=True)
    scope, token = await scoped(plane, proxy)
    auth = {"x-token": token}
    own = await caller.get(proxy.task_url + CONFIG_PATH, headers=auth)
    assert own.status_code == 200, own.text
    assert b"sayhello" in base64.b64decode(own.json()["resourceContent"])
    foreign = f"/resource-service/v1/project/{PROJECT}/stage/{STAGE}/service/service2/resource/secret.txt"
    assert (await caller.get(proxy.url + foreign)).status_code == 200  # it exists (trusted listener)
    refused = await caller.get(proxy.task_url + foreign, headers=auth)
    assert refused.status_code == 403 and "read resources of my-first-project/dev/service1" in refused.json()["message"]
    sneaky = CONFIG_PATH.replace("job%2Fconfig.yaml", "..%2F..%2F..%2Fservice%2Fservice2%2Fresource%2Fsecret.txt")
    assert (await caller.get(proxy.task_url + sneaky, headers=auth)).status_code == 403
    events = await caller.get(
        f"{proxy.task_url}/mongodb-datastore/event", params={"keptnContext": scope.keptn_context}, headers=auth
    )
    assert events.status_code == 200 and events.json()["events"]
    assert (
        await caller.get(f"{proxy.task_url}/mongodb-datastore/event", params={"project": PROJECT}, headers=auth)
    ).status_code == 403
    assert (await caller.get(f"{proxy.task_url}/controlPlane/v1/project", headers=auth)).status_code == 403


async def test_the_task_listener_wants_a_live_token_except_for_health(
    plane: LocalControlPlane, make_proxy: MakeProxy, caller: httpx.AsyncClient
) -> None:
    proxy = await make_proxy(task=True)
    scope, token = await scoped(plane, proxy)
    missing = await caller.get(proxy.task_url + CONFIG_PATH)
    assert missing.status_code == 401 and "x-token" in missing.json()["message"]
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert (await caller.post(f"{proxy.task_url}/event", json=status_changed(scope))).status_code == 401
    assert (await caller.get(f"{proxy.task_url}/nowhere")).status_code == 401
    assert (await caller.get(f"{proxy.task_url}/health")).status_code == 200
    assert (await caller.get(proxy.task_url + CONFIG_PATH, headers={"x-token": token})).status_code == 200
    proxy.scopes.revoke(scope.job_name)
    revoked = await caller.get(proxy.task_url + CONFIG_PATH, headers={"x-token": token})
    assert revoked.status_code == 401 and "revoked" in revoked.json()["message"]
    # the trusted listener works like the distributor: no token needed
    assert (await caller.get(proxy.url + CONFIG_PATH)).status_code == 200
