"""The shipyard-controller: sequences, the count rule, aggregation, timeouts, queueing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from jes import errors
from jes.devtools.controlplane import server
from tests.devtools.controlplane import helpers

DELIVERY = "sh.keptn.event.dev.delivery.triggered"
DEPLOYMENT = "sh.keptn.event.deployment.triggered"
TEST = "sh.keptn.event.test.triggered"


@pytest.fixture
def pipeline(cp: server.LocalControlPlane) -> server.LocalControlPlane:
    cp.create_project("pipeline", helpers.PIPELINE_SHIPYARD)
    cp.create_service("pipeline", "api")
    cp.create_service("pipeline", "web")
    return cp


def one_open(cp: server.LocalControlPlane, client: httpx.Client, event_type: str, **params: Any) -> dict[str, Any]:
    cp.wait_idle()
    (event,) = helpers.triggered(client, event_type, **params)
    return event


def answer(cp: server.LocalControlPlane, client: httpx.Client, *bodies: dict[str, Any]) -> None:
    for body in bodies:
        helpers.send(client, body)
    cp.wait_idle()


def types(cp: server.LocalControlPlane, context: str) -> list[str]:
    cp.wait_idle()
    return [e["type"] for e in cp.events(keptn_context=context)]


def sequence_finished(cp: server.LocalControlPlane, context: str) -> dict[str, Any]:
    cp.wait_idle()
    (event,) = [
        e for e in cp.events(keptn_context=context) if e["type"].endswith(".finished") and e["type"].count(".") == 5
    ]
    return event


def test_hello_world_runs_through_started_and_finished(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    context = helpers.send(client, helpers.HELLO_APAC)
    task = one_open(cp, client, helpers.SAYHELLO_TRIGGERED, project="my-first-project", stage="dev", service="service1")

    answer(cp, client, helpers.response(task, "started"))
    assert helpers.triggered(client, helpers.SAYHELLO_TRIGGERED), "open until finished"
    answer(cp, client, helpers.response(task, "finished", message="Hello, world from APAC!"))

    assert helpers.triggered(client, helpers.SAYHELLO_TRIGGERED) == []
    assert types(cp, context) == [
        "sh.keptn.event.dev.sequence1.triggered",
        "sh.keptn.event.sayhello.triggered",
        "sh.keptn.event.sayhello.started",
        "sh.keptn.event.sayhello.finished",
        "sh.keptn.event.dev.sequence1.finished",
    ]
    finished = sequence_finished(cp, context)
    (trigger,) = cp.events(keptn_context=context, type="sh.keptn.event.dev.sequence1.triggered")
    assert finished["triggeredid"] == trigger["id"]
    assert finished["source"] == "shipyard-controller"
    assert finished["data"]["status"] == "succeeded" and finished["data"]["result"] == "pass"
    assert finished["data"]["labels"] == {"foo": "bar - labels are optional"}
    assert cp.sequences(keptn_context=context)[0]["state"] == "finished"


def test_two_started_need_two_finished(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    context = helpers.send(client, helpers.hello())
    task = one_open(cp, client, helpers.SAYHELLO_TRIGGERED)

    answer(cp, client, helpers.response(task, "started", "eu"), helpers.response(task, "started", "apac"))
    answer(cp, client, helpers.response(task, "finished", "eu"))
    assert helpers.triggered(client, helpers.SAYHELLO_TRIGGERED) != []
    answer(cp, client, helpers.response(task, "finished", "apac", status="succeeded", result="warning"))

    assert helpers.triggered(client, helpers.SAYHELLO_TRIGGERED) == []
    assert sequence_finished(cp, context)["data"]["result"] == "warning"


def test_a_late_started_completes_the_task(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    context = helpers.send(client, helpers.hello())
    task = one_open(cp, client, helpers.SAYHELLO_TRIGGERED)

    answer(cp, client, helpers.response(task, "finished"), helpers.response(task, "started"))

    assert sequence_finished(cp, context)["data"]["status"] == "succeeded"


def test_only_finished_hangs_and_never_times_out(
    cp: server.LocalControlPlane, client: httpx.Client, clock: server.FakeClock
) -> None:
    context = helpers.send(client, helpers.hello())
    task = one_open(cp, client, helpers.SAYHELLO_TRIGGERED)

    answer(cp, client, helpers.response(task, "finished"))
    clock.advance(3600)
    cp.state.tick()

    assert helpers.triggered(client, helpers.SAYHELLO_TRIGGERED) == [task]
    assert cp.sequences(keptn_context=context)[0]["state"] == "started"
    assert not [t for t in types(cp, context) if t.endswith("sequence1.finished")]


def test_no_answer_times_the_sequence_out(
    cp: server.LocalControlPlane, client: httpx.Client, clock: server.FakeClock
) -> None:
    context = helpers.send(client, helpers.hello())
    one_open(cp, client, helpers.SAYHELLO_TRIGGERED)

    clock.advance(599)
    cp.state.tick()
    assert helpers.triggered(client, helpers.SAYHELLO_TRIGGERED) != []
    clock.advance(2)
    cp.wait_for(lambda: helpers.triggered(client, helpers.SAYHELLO_TRIGGERED) == [])  # the pump's 50 ms watch

    finished = sequence_finished(cp, context)
    assert finished["data"]["status"] == "errored" and finished["data"]["result"] == "fail"
    assert finished["data"]["message"] == (
        "sequence timed out while waiting for task sh.keptn.event.sayhello.triggered to receive a correlating "
        ".started or .finished event"
    )
    assert cp.sequences(keptn_context=context)[0]["state"] == "timedOut"


def test_the_task_timeout_is_configurable(make_cp: Any, make_client: Any, clock: server.FakeClock) -> None:
    cp = make_cp(clock=clock, task_started_wait_s=5)
    client = make_client(cp)
    context = helpers.send(client, helpers.hello())
    task = one_open(cp, client, helpers.SAYHELLO_TRIGGERED)
    answer(cp, client, helpers.response(task, "started"))

    clock.advance(10)
    cp.state.tick()

    assert helpers.triggered(client, helpers.SAYHELLO_TRIGGERED) == [task], "a started task does not time out"
    other = helpers.send(client, helpers.hello(service="service2"))
    one_open(cp, client, helpers.SAYHELLO_TRIGGERED, service="service2")
    clock.advance(6)
    cp.state.tick()
    assert sequence_finished(cp, other)["data"]["status"] == "errored"
    assert context != other


def test_tasks_pass_data_on_and_get_their_properties(pipeline: server.LocalControlPlane, client: httpx.Client) -> None:
    body = helpers.sequence_trigger(
        "pipeline", "dev", "delivery", "api", labels={"run": "7"}, configurationChange={"a": 1}
    )
    context = helpers.send(client, body)

    deployment = one_open(pipeline, client, DEPLOYMENT)
    assert deployment["data"]["deployment"] == {"deploymentstrategy": "direct"}
    assert deployment["data"]["configurationChange"] == {"a": 1}
    answer(
        pipeline,
        client,
        helpers.response(deployment, "started"),
        helpers.response(deployment, "finished", message="deployed", deployment={"deploymentURIsLocal": ["http://x"]}),
    )
    test = one_open(pipeline, client, TEST)

    assert test["shkeptncontext"] == context and test["id"] != deployment["id"]
    assert test["gitcommitid"] == deployment["gitcommitid"]
    data = test["data"]
    assert data["deployment"] == {"deploymentURIsLocal": ["http://x"]}  # finished data, not the properties
    assert data["test"] == {"teststrategy": "functional"}
    assert data["labels"] == {"run": "7"}
    assert (data["result"], data["status"], data["message"]) == ("pass", "succeeded", "")


def test_a_failed_task_ends_the_sequence(pipeline: server.LocalControlPlane, client: httpx.Client) -> None:
    context = helpers.send(client, helpers.sequence_trigger("pipeline", "dev", "delivery", "api"))
    deployment = one_open(pipeline, client, DEPLOYMENT)

    answer(
        pipeline,
        client,
        helpers.response(deployment, "started"),
        helpers.response(deployment, "finished", status="errored", result="fail", message="image pull failed"),
    )

    finished = sequence_finished(pipeline, context)
    assert (finished["data"]["status"], finished["data"]["result"]) == ("errored", "fail")
    assert finished["data"]["message"] == "image pull failed"
    assert TEST not in types(pipeline, context)
    assert not any(t.startswith("sh.keptn.event.prod") for t in types(pipeline, context)), (
        "no follow-up after a failure"
    )


@pytest.mark.parametrize(
    ("finished_data", "status", "result"),
    [
        ({"status": "succeeded", "result": "fail"}, "succeeded", "fail"),
        ({"status": "unknown-thing", "result": "pass"}, "unknown", "fail"),
        ({}, "unknown", "fail"),
        ({"status": "aborted", "result": "pass"}, "aborted", "pass"),
    ],
)
def test_results_and_statuses_are_aggregated(
    pipeline: server.LocalControlPlane,
    client: httpx.Client,
    finished_data: dict[str, str],
    status: str,
    result: str,
) -> None:
    context = helpers.send(client, helpers.sequence_trigger("pipeline", "dev", "delivery", "api"))
    deployment = one_open(pipeline, client, DEPLOYMENT)
    finished = helpers.response(deployment, "finished")
    finished["data"] = {k: v for k, v in finished["data"].items() if k not in ("status", "result")} | finished_data

    answer(pipeline, client, helpers.response(deployment, "started"), finished)

    data = sequence_finished(pipeline, context)["data"]
    assert (data["status"], data["result"]) == (status, result)


def test_the_last_task_triggers_follow_up_sequences(pipeline: server.LocalControlPlane, client: httpx.Client) -> None:
    context = helpers.send(client, helpers.sequence_trigger("pipeline", "dev", "delivery", "web"))
    for event_type in (DEPLOYMENT, TEST):
        task = one_open(pipeline, client, event_type)
        answer(pipeline, client, helpers.response(task, "started"), helpers.response(task, "finished"))

    release = one_open(pipeline, client, "sh.keptn.event.release.triggered")

    assert release["shkeptncontext"] == context
    assert release["data"]["stage"] == "prod" and release["data"]["service"] == "web"
    assert "sh.keptn.event.prod.delivery.triggered" in types(pipeline, context)


def test_an_empty_sequence_finishes_at_once(pipeline: server.LocalControlPlane, client: httpx.Client) -> None:
    context = helpers.send(client, helpers.sequence_trigger("pipeline", "dev", "empty", "api"))

    assert sequence_finished(pipeline, context)["data"]["result"] == "pass"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (helpers.sequence_trigger("nope", "dev", "sequence1", "service1"), "project nope not found"),
        (helpers.sequence_trigger("my-first-project", "prod", "sequence1", "service1"), "stage prod not found"),
        (helpers.sequence_trigger("my-first-project", "dev", "other", "service1"), "sequence other not found"),
    ],
)
def test_an_unstartable_sequence_finishes_errored(
    cp: server.LocalControlPlane, client: httpx.Client, body: dict[str, Any], reason: str
) -> None:
    context = helpers.send(client, body)

    finished = sequence_finished(cp, context)
    assert finished["type"] == body["type"].replace(".triggered", ".finished")
    assert (finished["data"]["status"], finished["data"]["result"]) == ("errored", "fail")
    assert finished["data"]["message"].startswith("Unable to start sequence")
    assert reason in finished["data"]["message"]


def test_a_trigger_without_a_service_is_dropped(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    body = helpers.hello()
    del body["data"]["service"]

    context = helpers.send(client, body)

    assert types(cp, context) == [body["type"]]


def test_one_sequence_per_service_at_a_time(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    first = helpers.send(client, helpers.hello("APAC"))
    second = helpers.send(client, helpers.hello("EU"))
    elsewhere = helpers.send(client, helpers.hello("EU", service="service2"))
    cp.wait_idle()

    (task,) = helpers.triggered(client, helpers.SAYHELLO_TRIGGERED, service="service1")
    assert task["shkeptncontext"] == first
    assert helpers.triggered(client, helpers.SAYHELLO_TRIGGERED, service="service2")[0]["shkeptncontext"] == elsewhere
    assert cp.sequences(keptn_context=second)[0]["state"] == "waiting"
    answer(cp, client, helpers.response(task, "started"), helpers.response(task, "finished"))

    (task,) = helpers.triggered(client, helpers.SAYHELLO_TRIGGERED, service="service1")
    assert task["shkeptncontext"] == second
    assert task["data"]["sayhello"] == {"location": "EU"}


def test_status_changed_is_stored_but_changes_nothing(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    context = helpers.send(client, helpers.hello())
    task = one_open(cp, client, helpers.SAYHELLO_TRIGGERED)
    status_changed = helpers.response(task, "started")
    status_changed["type"] = "sh.keptn.event.sayhello.status.changed"

    answer(cp, client, helpers.response(task, "started"), status_changed, helpers.response(task, "finished"))

    assert "sh.keptn.event.sayhello.status.changed" in types(cp, context)
    assert sequence_finished(cp, context)["data"]["status"] == "succeeded"


@pytest.mark.parametrize(
    "change",
    [
        {"shkeptncontext": "2f1e9d1c-0000-4000-8000-000000000000"},
        {"triggeredid": "some-other-id"},
        {"type": "sh.keptn.event.other.started"},
        {"data": {"project": "other", "stage": "dev", "service": "service1"}},
        {"data": {"project": "my-first-project", "stage": "dev"}},
    ],
    ids=["context", "triggeredid", "task", "project", "no-service"],
)
def test_answers_that_do_not_correlate_are_ignored(
    cp: server.LocalControlPlane, client: httpx.Client, change: dict[str, Any]
) -> None:
    helpers.send(client, helpers.hello())
    task = one_open(cp, client, helpers.SAYHELLO_TRIGGERED)
    started = {**helpers.response(task, "started"), **change}
    finished = {**helpers.response(task, "finished"), **change}
    finished["type"] = started["type"].replace(".started", ".finished")

    answer(cp, client, started, finished)

    assert helpers.triggered(client, helpers.SAYHELLO_TRIGGERED) == [task]


def test_triggered_after_hides_a_task_until_it_is_due(
    pipeline: server.LocalControlPlane, client: httpx.Client, clock: server.FakeClock
) -> None:
    helpers.send(client, helpers.sequence_trigger("pipeline", "dev", "delayed", "api"))
    pipeline.wait_idle()
    assert helpers.triggered(client, "sh.keptn.event.wait.triggered") == []

    clock.advance(600)

    (task,) = helpers.triggered(client, "sh.keptn.event.wait.triggered")
    assert task["time"] == "2024-01-01T12:10:00.000Z"


def control(client: httpx.Client, context: str, body: Any, project: str = helpers.PROJECT) -> httpx.Response:
    return client.post(f"/controlPlane/v1/sequence/{project}/{context}/control", json=body)


def test_abort_ends_a_sequence_and_starts_the_next(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    first = helpers.send(client, helpers.hello("APAC"))
    second = helpers.send(client, helpers.hello("EU"))
    task = one_open(cp, client, helpers.SAYHELLO_TRIGGERED)
    answer(cp, client, helpers.response(task, "started"))

    reply = control(client, first, {"state": "abort"})

    assert (reply.status_code, reply.json()) == (200, {})
    finished = sequence_finished(cp, first)
    assert (finished["data"]["status"], finished["data"]["result"]) == ("aborted", "pass")  # Keptn's rule
    assert finished["triggeredid"] == cp.events(keptn_context=first)[0]["id"]
    assert client.get(f"/controlPlane/v1/event/triggered/{helpers.SAYHELLO_TRIGGERED}",
                      params={"eventID": task["id"]}).json()["events"] == []  # fmt: skip
    assert cp.sequences(keptn_context=first)[0]["state"] == "aborted"
    assert one_open(cp, client, helpers.SAYHELLO_TRIGGERED)["shkeptncontext"] == second


def test_a_late_finished_for_an_aborted_task_is_stored_and_ignored(
    pipeline: server.LocalControlPlane, client: httpx.Client
) -> None:
    context = helpers.send(client, helpers.sequence_trigger("pipeline", "dev", "delivery", "api"))
    task = one_open(pipeline, client, DEPLOYMENT)
    answer(pipeline, client, helpers.response(task, "started"))
    control(client, context, {"state": "abort"}, project="pipeline")

    answer(pipeline, client, helpers.response(task, "finished"))

    assert helpers.triggered(client, TEST) == []  # the next task never opens
    assert "sh.keptn.event.deployment.finished" in types(pipeline, context)
    assert [e["type"] for e in pipeline.events(keptn_context=context) if "prod" in e["type"]] == []  # no follow-up
    assert pipeline.sequences(keptn_context=context)[0]["state"] == "aborted"


def test_abort_in_one_stage_leaves_the_others(pipeline: server.LocalControlPlane, client: httpx.Client) -> None:
    context = helpers.send(client, helpers.sequence_trigger("pipeline", "dev", "delivery", "api"))
    one_open(pipeline, client, DEPLOYMENT)

    assert control(client, context, {"state": "abort", "stage": "prod"}, project="pipeline").status_code == 200

    assert one_open(pipeline, client, DEPLOYMENT)["shkeptncontext"] == context
    control(client, context, {"state": "abort", "stage": "dev"}, project="pipeline")
    assert helpers.triggered(client, DEPLOYMENT) == []


@pytest.mark.parametrize(
    ("project", "context", "body", "status"),
    [
        (helpers.PROJECT, "2f1e9d1c-0000-4000-8000-000000000000", {"state": "abort"}, 200),  # only logged
        ("no-such-project", "ctx", {"state": "pause"}, 200),
        (helpers.PROJECT, "{running}", {"state": "explode"}, 200),  # Keptn's switch ignores it
        (helpers.PROJECT, "{running}", {"stage": "dev"}, 400),  # binding:"required"
        (helpers.PROJECT, "{running}", {"state": ""}, 400),
        (helpers.PROJECT, "{running}", ["abort"], 400),
    ],
)
def test_control_answers_as_keptn_does(
    cp: server.LocalControlPlane, client: httpx.Client, project: str, context: str, body: Any, status: int
) -> None:
    running = helpers.send(client, helpers.hello())
    one_open(cp, client, helpers.SAYHELLO_TRIGGERED)

    reply = control(client, context.format(running=running), body, project=project)

    assert reply.status_code == status
    assert cp.sequences(keptn_context=running)[0]["state"] == "started"  # untouched


def test_pause_holds_the_next_task_until_resume(pipeline: server.LocalControlPlane, client: httpx.Client) -> None:
    context = helpers.send(client, helpers.sequence_trigger("pipeline", "dev", "delivery", "api"))
    task = one_open(pipeline, client, DEPLOYMENT)
    answer(pipeline, client, helpers.response(task, "started"))
    sent: list[str] = []
    pipeline.state.publishers.append(lambda event: sent.append(event["type"]))

    assert control(client, context, {"state": "pause"}, project="pipeline").status_code == 200
    assert pipeline.sequences(keptn_context=context)[0]["state"] == "paused"
    answer(pipeline, client, helpers.response(task, "finished"))  # the running task goes on

    # Keptn stores the next task's .triggered (pollable) but its dispatcher does not send it
    held = one_open(pipeline, client, TEST)
    assert TEST not in sent and TEST not in types(pipeline, context)
    assert control(client, context, {"state": "resume"}, project="pipeline").status_code == 200
    assert pipeline.sequences(keptn_context=context)[0]["state"] == "started"
    assert sent.count(TEST) == 1 and TEST in types(pipeline, context)
    assert one_open(pipeline, client, TEST) == held


def test_a_paused_context_does_not_start_a_queued_sequence(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    first = helpers.send(client, helpers.hello("APAC"))
    second = helpers.send(client, helpers.hello("EU"))
    task = one_open(cp, client, helpers.SAYHELLO_TRIGGERED)
    control(client, second, {"state": "pause"})

    answer(cp, client, helpers.response(task, "started"), helpers.response(task, "finished"))

    assert sequence_finished(cp, first)["data"]["status"] == "succeeded"
    assert helpers.triggered(client, helpers.SAYHELLO_TRIGGERED) == []
    assert cp.sequences(keptn_context=second)[0]["state"] == "paused"
    control(client, second, {"state": "resume"})
    assert one_open(cp, client, helpers.SAYHELLO_TRIGGERED)["shkeptncontext"] == second


def test_sequence_states_endpoint(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    context = helpers.send(client, helpers.hello())
    cp.wait_idle()

    body = client.get("/controlPlane/v1/sequence/my-first-project", params={"keptnContext": context}).json()

    (state,) = body["states"]
    assert state["name"] == "sequence1" and state["state"] == "started" and state["service"] == "service1"
    assert state["stages"][0]["latestEvent"]["type"] == helpers.SAYHELLO_TRIGGERED
    assert client.get("/controlPlane/v1/sequence/nope").status_code == 404


def test_trigger_sequence_python_api(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    context = cp.trigger_sequence(helpers.hello("EU"))

    (task,) = cp.open_triggered(helpers.SAYHELLO_TRIGGERED)
    assert task["shkeptncontext"] == context
    with pytest.raises(errors.EventError, match="data in body is required"):
        cp.trigger_sequence({"type": "x", "source": "y"})


def test_deleting_a_project_forgets_its_open_events(cp: server.LocalControlPlane, client: httpx.Client) -> None:
    helpers.send(client, helpers.hello())
    helpers.send(client, helpers.hello("EU"))
    one_open(cp, client, helpers.SAYHELLO_TRIGGERED)

    assert client.delete("/controlPlane/v1/project/my-first-project").status_code == 200

    assert helpers.triggered(client, helpers.SAYHELLO_TRIGGERED) == []
    assert helpers.triggered(client, "sh.keptn.event.dev.sequence1.triggered") == []
    assert client.get("/controlPlane/v1/project/my-first-project").status_code == 404
    assert client.delete("/controlPlane/v1/project/my-first-project").status_code == 404
