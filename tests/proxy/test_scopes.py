"""Per-task tokens: what a task may do through the proxy (its own event's status and error log,
its own service's resources, its own context's events) and nothing else; the task listener wants
a live token on every route but /health."""

from __future__ import annotations

import pytest

from jes.proxy.scopes import ScopeStore, TaskScope, token_from_headers
from tests.proxy.support import status_changed

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
