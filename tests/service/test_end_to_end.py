"""jes serve end to end, in-process: local control plane + service + local runner over loopback."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import httpx
import pytest

from jes.devtools.controlplane.server import LocalControlPlane
from tests.service.support import (
    TOKEN,
    jes_settings,
    ledger_check,
    put_config,
    running,
    sequence_done,
    task_events,
    trigger_body,
    wait_until,
)


def config_with(tasks_yaml: str, *, silent: bool = False, extra_actions: str = "") -> str:
    return (
        "apiVersion: v2\nactions:\n"
        f"  - name: act\n    silent: {str(silent).lower()}\n"
        "    events: [{name: sh.keptn.event.sayhello.triggered}]\n"
        f"    tasks:\n{tasks_yaml}{extra_actions}"
    )


def sh(name: str, script: str, **extra: object) -> str:
    fields = "".join(f"\n        {k}: {json.dumps(v)}" for k, v in extra.items())
    return f"      - name: {name}\n        image: alpine\n        cmd: [/bin/sh, -c]\n        args: [{json.dumps(script)}]{fields}\n"


async def test_hello_world_apac_and_eu(plane: LocalControlPlane, tmp_path: Path) -> None:
    async with running(jes_settings(plane, tmp_path)):
        contexts = {loc: plane.trigger_sequence(trigger_body(loc)) for loc in ("APAC", "EU")}
        await wait_until(lambda: all(sequence_done(plane, c) for c in contexts.values()), what="both sequences")
    for location, greeting in (("APAC", "Hello, world from APAC!"), ("EU", "Hello, world from Europe!")):
        events = task_events(plane, contexts[location])
        types = [e["type"].removeprefix("sh.keptn.event.sayhello.") for e in events]
        assert types == ["triggered", "started", "status.changed", "status.changed", "finished"]
        progress = [e["data"]["message"] for e in events[2:4]]
        assert progress[0] == "task 1/1 'Say Hello World' started (image alpine)"
        assert re.fullmatch(r"task 1/1 'Say Hello World' succeeded in \d+\.\d s", progress[1])
        finished = events[-1]
        assert finished["triggeredid"] == events[0]["id"]
        assert (finished["data"]["status"], finished["data"]["result"]) == ("succeeded", "pass")
        assert greeting in finished["data"]["message"]
        assert finished["data"]["jes"]["tasks"][0]["status"] == "succeeded"
        assert (
            plane.events(type="sh.keptn.event.dev.sequence1.finished", keptn_context=contexts[location])[0]["data"][
                "result"
            ]
            == "pass"
        )
    ledger_check(plane)


async def test_failing_task_reports_reason_and_logs_and_stops(plane: LocalControlPlane, tmp_path: Path) -> None:
    marker = tmp_path / "third-ran"
    put_config(
        plane,
        config_with(
            sh("first", "echo first ok")
            + sh("second", "echo about to fail; echo oops >&2; exit 3")
            + sh("third", f"touch {marker}")
        ),
    )
    async with running(jes_settings(plane, tmp_path / "state")) as service:
        context = plane.trigger_sequence(trigger_body())
        await wait_until(lambda: sequence_done(plane, context))
        integration = service.poller.integration_id
    finished = task_events(plane, context)[-1]
    data = finished["data"]
    assert (data["status"], data["result"]) == ("errored", "fail")
    assert data["message"].startswith("Task 'second' failed: exit code 3\n\nLogs:\n")
    assert "about to fail\noops\n" in data["message"]
    assert "Task 'first' finished successfully!" in data["message"]
    assert [t["status"] for t in data["jes"]["tasks"]] == ["succeeded", "failed"]
    assert not marker.exists(), "tasks after a failure must not run"
    logs = plane.logs(integration)
    assert len(logs) == 1 and logs[0]["triggeredid"] == finished["triggeredid"] and "exit code 3" in logs[0]["message"]
    ledger_check(plane)


async def test_invalid_config_is_reported_with_where_and_what(plane: LocalControlPlane, tmp_path: Path) -> None:
    put_config(
        plane,
        "apiVersion: v2\nactions:\n  - name: a\n    events: [{name: sh.keptn.event.sayhello.triggered}]\n    tasks:\n      - cmd: echo\n",
    )
    async with running(jes_settings(plane, tmp_path)):
        context = plane.trigger_sequence(trigger_body())
        await wait_until(lambda: sequence_done(plane, context))
    types = [e["type"] for e in task_events(plane, context)]
    assert types == [
        "sh.keptn.event.sayhello.triggered",
        "sh.keptn.event.sayhello.started",
        "sh.keptn.event.sayhello.finished",
    ]
    data = task_events(plane, context)[-1]["data"]
    assert (data["status"], data["result"]) == ("errored", "fail")
    assert "job/config.yaml is invalid" in data["message"]
    assert "job/config.yaml (service my-first-project/dev/service1: job/config.yaml at " in data["message"]
    assert ":6:14: actions[0].tasks[0].cmd: expected a list of strings, got a string" in data["message"]


async def test_missing_config_sends_nothing_but_an_error_log(plane: LocalControlPlane, tmp_path: Path) -> None:
    plane.create_project(
        "other",
        "apiVersion: spec.keptn.sh/0.2.2\nkind: Shipyard\nmetadata: {name: s}\nspec:\n  stages:\n    - name: dev\n      sequences:\n        - name: sequence1\n          tasks: [{name: sayhello}]\n",
    )
    plane.create_service("other", "svc")
    async with running(jes_settings(plane, tmp_path)) as service:
        context = plane.trigger_sequence(
            {**trigger_body(), "data": {"project": "other", "stage": "dev", "service": "svc"}}
        )
        await wait_until(lambda: bool(plane.logs(service.poller.integration_id)), what="an error log entry")
        await asyncio.sleep(0.3)
    assert [e["type"] for e in task_events(plane, context)] == ["sh.keptn.event.sayhello.triggered"]
    (entry,) = plane.logs()
    assert "unable to find job configuration" in entry["message"]
    assert entry["task"] == "sayhello" and entry["shkeptncontext"] == context


async def test_no_match_sends_nothing(plane: LocalControlPlane, tmp_path: Path) -> None:
    async with running(jes_settings(plane, tmp_path)) as service:
        context = plane.trigger_sequence(trigger_body("MARS"))
        await wait_until(lambda: service.metrics.events_skipped.labels("no_match")._value.get() == 1, what="no_match")
    assert [e["type"] for e in task_events(plane, context)] == ["sh.keptn.event.sayhello.triggered"]


async def test_silent_action_runs_and_sends_nothing(plane: LocalControlPlane, tmp_path: Path) -> None:
    marker = tmp_path / "silent-ran"
    put_config(plane, config_with(sh("quiet", f"echo hi > {marker}"), silent=True))
    async with running(jes_settings(plane, tmp_path / "state")):
        context = plane.trigger_sequence(trigger_body())
        await wait_until(marker.exists, what="the silent task")
        await asyncio.sleep(0.3)
    assert [e["type"] for e in task_events(plane, context)] == ["sh.keptn.event.sayhello.triggered"]


async def test_output_over_the_budget_keeps_head_and_tail(plane: LocalControlPlane, tmp_path: Path) -> None:
    put_config(
        plane,
        config_with(
            sh(
                "loud",
                "echo FIRST-LINE; i=0; while [ $i -lt 20000 ]; do echo line $i padding padding padding; i=$((i+1)); done; echo LAST-LINE",
            )
        ),
    )
    async with running(jes_settings(plane, tmp_path, max_event_bytes=16384)):
        context = plane.trigger_sequence(trigger_body())
        await wait_until(lambda: sequence_done(plane, context))
    finished = task_events(plane, context)[-1]
    message = finished["data"]["message"]
    assert "FIRST-LINE" in message and "LAST-LINE" in message and "bytes omitted" in message
    sent = len(json.dumps(finished, separators=(",", ":")).encode())
    assert sent <= 16384 + 200  # the server adds its own id/time; the body jes posted was within the budget
    assert finished["data"]["result"] == "pass"


async def test_test_events_carry_start_and_end(plane: LocalControlPlane, tmp_path: Path) -> None:
    put_config(
        plane,
        "apiVersion: v2\nactions:\n  - name: t\n    events: [{name: sh.keptn.event.test.triggered}]\n    tasks:\n"
        + sh("t", "echo tested"),
    )
    settings = jes_settings(plane, tmp_path, pubsub_topics=("sh.keptn.event.test.triggered",))
    async with running(settings):
        (event_id,) = plane.inject_triggered(task="test", project="my-first-project", stage="dev", service="service1")
        await wait_until(lambda: bool(plane.events(type="sh.keptn.event.test.finished", triggered_id=event_id)))
    data = plane.events(type="sh.keptn.event.test.finished", triggered_id=event_id)[0]["data"]
    assert set(data["test"]) == {"start", "end"} and data["test"]["start"].endswith("Z")


async def test_started_is_not_held_back_by_the_concurrency_limit(plane: LocalControlPlane, tmp_path: Path) -> None:
    put_config(plane, config_with(sh("slow", "sleep 1")))
    settings = jes_settings(plane, tmp_path, max_concurrent_events=1)
    async with running(settings) as service:
        ids = plane.inject_triggered(
            task="sayhello", project="my-first-project", stage="dev", service="service1", count=3
        )
        await wait_until(
            lambda: service.metrics.events_waiting._value.get() == 2, what="two events waiting for the slot"
        )
        await wait_until(
            lambda: all(plane.events(type="sh.keptn.event.sayhello.finished", triggered_id=i) for i in ids),
            timeout_s=10,
        )
    kinds = [
        e["type"].rsplit(".", 1)[-1]
        for e in plane.events()
        if e.get("triggeredid") in ids and e["type"].endswith(("started", "finished"))
    ]
    assert kinds == ["started", "started", "started", "finished", "finished", "finished"]  # .started never waits
    ledger_check(plane)


async def test_an_event_gives_its_slot_up_before_it_reports(plane: LocalControlPlane, tmp_path: Path) -> None:
    """With one slot, the second event's task starts while the first one's .finished is still on
    its way (held 2 s by the control plane): reporting does not keep the slot."""
    put_config(plane, config_with(sh("quick", "echo done")))
    plane.faults.add(method="POST", path=r"^/v1/event$", latency_s=2.0, body_matches=r"\.finished\"", times=1)
    async with running(jes_settings(plane, tmp_path, max_concurrent_events=1)):
        first, second = plane.inject_triggered(
            task="sayhello", project="my-first-project", stage="dev", service="service1", count=2
        )
        await wait_until(
            lambda: all(plane.events(type="sh.keptn.event.sayhello.finished", triggered_id=i) for i in (first, second)),
            timeout_s=15,
        )
    task_started = {
        e["triggeredid"]: e["time"]
        for e in plane.events(type="sh.keptn.event.sayhello.status.changed")
        if "started" in e["data"].get("message", "")
    }
    held, other = sorted((first, second), key=task_started.__getitem__)  # the first to run sent the first .finished
    (held_finished,) = plane.events(type="sh.keptn.event.sayhello.finished", triggered_id=held)
    assert task_started[other] < held_finished["time"], (task_started, held_finished["time"])
    ledger_check(plane)


async def test_control_plane_outage_mid_run_delays_but_never_loses_or_doubles(
    plane: LocalControlPlane, tmp_path: Path
) -> None:
    put_config(plane, config_with(sh("t", "sleep 0.3; echo done")))
    async with running(jes_settings(plane, tmp_path)) as service:
        context = plane.trigger_sequence(trigger_body())
        await wait_until(lambda: bool(plane.events(type="sh.keptn.event.sayhello.started", keptn_context=context)))
        plane.faults.add(status=503)  # everything fails from now on
        errors = service.metrics.report_errors.labels("server")
        # until a report failed (not a fixed time: under load the task may not have ended within it)
        await wait_until(lambda: errors._value.get() >= 1, timeout_s=15, what="a report refused with 503")
        assert not plane.events(type="sh.keptn.event.sayhello.finished", keptn_context=context)
        plane.faults.clear()
        await wait_until(lambda: sequence_done(plane, context), timeout_s=15)
    ledger_check(plane)


async def test_connection_dropped_after_the_report_was_accepted_is_not_sent_twice(
    plane: LocalControlPlane, tmp_path: Path
) -> None:
    rule = plane.faults.add(method="POST", path=r"^/v1/event$", drop_connection=True, times=2)
    async with running(jes_settings(plane, tmp_path)):
        context = plane.trigger_sequence(trigger_body())  # the Python API does not go through the faults
        await wait_until(lambda: sequence_done(plane, context), timeout_s=15)
    assert rule.fired == 2  # .started and .status.changed or .finished hit the dropped connection
    ledger_check(plane)


async def test_invalid_events_are_reported_and_skipped_and_others_still_handled(
    plane: LocalControlPlane, tmp_path: Path
) -> None:
    async with running(jes_settings(plane, tmp_path)) as service:
        plane.inject_triggered(
            task="sayhello", project="my-first-project", stage="dev", service="service1", data={"labels": {"bad": 1}}
        )
        context = plane.trigger_sequence(trigger_body())
        await wait_until(lambda: sequence_done(plane, context))
        await wait_until(
            lambda: service.metrics.events_skipped.labels("invalid")._value.get() == 1, what="the invalid event"
        )
        assert any(
            "data.labels must map names to strings" in entry["message"]
            for entry in plane.logs(service.poller.integration_id)
        )


async def test_token_never_appears_in_logs_events_or_metrics(
    plane: LocalControlPlane, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    put_config(plane, config_with(sh("t", "env; echo KEPTN_API_TOKEN=${KEPTN_API_TOKEN:-unset}")))
    caplog.set_level("DEBUG")
    async with running(jes_settings(plane, tmp_path)) as service:
        context = plane.trigger_sequence(trigger_body())
        await wait_until(lambda: sequence_done(plane, context))
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"http://127.0.0.1:{service.health.port}/metrics")).text
            ready = await http.get(f"http://127.0.0.1:{service.health.port}/ready")
    assert ready.status_code == 200
    finished = task_events(plane, context)[-1]
    assert "KEPTN_API_TOKEN=unset" in finished["data"]["message"]
    for text in (caplog.text, metrics, json.dumps(plane.events()), json.dumps(plane.logs())):
        assert TOKEN not in text


async def test_health_ready_and_metrics(plane: LocalControlPlane, tmp_path: Path) -> None:
    async with running(jes_settings(plane, tmp_path)) as service:
        base = f"http://127.0.0.1:{service.health.port}"
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{base}/health")).json() == {"status": "OK"}
            await wait_until(service.ready, what="readiness")
            assert (await http.get(f"{base}/ready")).status_code == 200
            context = plane.trigger_sequence(trigger_body())
            await wait_until(lambda: sequence_done(plane, context) and service.in_flight == 0)
            text = (await http.get(f"{base}/metrics")).text
            plane.faults.add(method="GET", path=r"/controlPlane/v1/event/triggered/.*", status=500)
            await wait_until(lambda: not service.ready(), what="not ready while polls fail")
            assert (await http.get(f"{base}/ready")).status_code == 503
    for name in (
        'jes_events_received_total{topic="sh.keptn.event.sayhello.triggered"} 1.0',
        "jes_events_matched_total 1.0",
        'jes_events_finished_total{result="pass"} 1.0',
        'jes_task_duration_seconds_count{status="succeeded"} 1.0',
        "jes_events_in_flight 0.0",
        "jes_jobs_in_flight 0.0",
        'jes_report_delivery_seconds_count{kind="finished"} 1.0',
        "jes_event_pickup_seconds_count 1.0",
        "jes_event_completion_seconds_count 1.0",
    ):
        assert name in text, name
    last_poll = re.search(r"^jes_poll_last_success_timestamp_seconds (\S+)$", text, re.MULTILINE)
    assert last_poll and abs(float(last_poll.group(1)) - time.time()) < 60, "the last successful poll is recent"
    pickup_sum = re.search(r"^jes_event_pickup_seconds_sum (\S+)$", text, re.MULTILINE)
    assert pickup_sum and 0 <= float(pickup_sum.group(1)) < 10, "from the event's own time to jes taking it"


async def test_two_located_executors_run_each_event_in_exactly_one_region(
    plane: LocalControlPlane, tmp_path: Path, repo: Path
) -> None:
    put_config(plane, (repo / "examples/job/regions.yaml").read_text())
    apac = jes_settings(plane, tmp_path / "apac", location="APAC", k8s_namespace="keptn-jes-apac")
    eu = jes_settings(plane, tmp_path / "eu", location="EU", k8s_namespace="keptn-jes-eu")
    async with running(apac), running(eu):
        contexts = {loc: plane.trigger_sequence(trigger_body(loc)) for loc in ("APAC", "EU", "APAC")}
        contexts["EU2"] = plane.trigger_sequence(trigger_body("EU"))
        await wait_until(lambda: all(sequence_done(plane, c) for c in contexts.values()))
    for location, context in contexts.items():
        jes_events = [e for e in task_events(plane, context) if e["source"] == "job-executor-service"]
        executors = {e["data"]["jes"]["executor"] for e in jes_events}
        expected = "keptn-jes-apac/APAC" if location == "APAC" else "keptn-jes-eu/EU"
        assert executors == {expected}
    assert len(plane.integrations()) == 2
    ledger_check(plane)
