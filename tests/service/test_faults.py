"""The fault-injection suite at service level: what the control plane can do wrong, and bad input.

Each test ends with the ledger check (one .started and one .finished per triggered event)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jes import ledger
from jes.clients.keptn import auth
from jes.clients.keptn import client as keptn_client
from jes.devtools.controlplane import models
from jes.devtools.controlplane.server import LocalControlPlane
from jes.matcher import config
from jes.matcher import matching as matcher
from jes.models import EventInfo, Outcome, Status, TaskSpec
from jes.reporter import budget, events
from jes.reporter import delivery as reporter_mod
from jes.reporter.delivery import Arrival
from jes.service import handler, ports
from tests.matcher.test_loader_properties import TREES
from tests.service.support import (
    SEED,
    jes_settings,
    ledger_check,
    put_config,
    running,
    sequence_done,
    trigger_body,
    wait_until,
)


def fast(service: Any) -> Any:
    service.poller.slow_retry_s = 0.3
    return service


async def test_401_then_a_fixed_token_heals_without_a_restart(plane: LocalControlPlane, tmp_path: Path) -> None:
    rule = plane.faults.add(status=401, body={"code": 401, "message": "unauthenticated or invalid credentials"})
    async with running(jes_settings(plane, tmp_path)) as service:
        fast(service)
        context = plane.trigger_sequence(trigger_body())
        await wait_until(lambda: rule.fired >= 3, what="refused requests")
        assert not service.ready()
        assert not plane.events(type="sh.keptn.event.sayhello.started", keptn_context=context)
        plane.faults.clear()  # the token was rotated on the server side
        await wait_until(lambda: sequence_done(plane, context), timeout_s=15)
        await wait_until(service.ready, what="ready again")
        assert service.metrics.poll_errors.labels("auth")._value.get() >= 1
    ledger_check(plane)


async def test_timeouts_and_5xx_for_a_while(plane: LocalControlPlane, tmp_path: Path) -> None:
    slow = plane.faults.add(method="POST", path="/v1/event", latency_s=1.5, times=1)  # beyond the client timeout
    flaky = plane.faults.add(method="GET", path="/controlPlane/v1/event/triggered/.*", status=502, times=5)
    # the POST that timed out is processed 1 s later: JES_DATASTORE_SETTLE_S must cover that too
    async with running(jes_settings(plane, tmp_path, http_timeout_s=0.5, datastore_settle_s=3.0)):
        context = plane.trigger_sequence(trigger_body())
        await wait_until(lambda: sequence_done(plane, context), timeout_s=20)
    assert slow.fired == 1 and flaky.fired == 5
    ledger_check(plane)


async def test_429_with_retry_after_is_honoured(plane: LocalControlPlane, tmp_path: Path) -> None:
    throttled = plane.faults.add(method="POST", path="/v1/event", status=429, retry_after_s=1, times=1)
    async with running(jes_settings(plane, tmp_path)):
        context = plane.trigger_sequence(trigger_body())
        await wait_until(lambda: sequence_done(plane, context), timeout_s=15)
    assert throttled.fired == 1
    started = plane.events(type="sh.keptn.event.sayhello.started", keptn_context=context)[0]
    triggered = plane.events(type="sh.keptn.event.sayhello.triggered", keptn_context=context)[0]
    from datetime import datetime

    delay = datetime.fromisoformat(started["time"].replace("Z", "+00:00")) - datetime.fromisoformat(
        triggered["time"].replace("Z", "+00:00")
    )
    assert delay.total_seconds() >= 1.0  # the Retry-After was waited for
    ledger_check(plane)


async def test_garbage_answers_are_survived(plane: LocalControlPlane, tmp_path: Path) -> None:
    garbage = plane.faults.add(method="GET", path="/controlPlane/v1/event/triggered/.*", garbage_body=True, times=3)
    async with running(jes_settings(plane, tmp_path)) as service:
        context = plane.trigger_sequence(trigger_body())
        await wait_until(lambda: sequence_done(plane, context), timeout_s=15)
        assert service.metrics.poll_errors.labels("temporary")._value.get() >= 1
    assert garbage.fired == 3
    ledger_check(plane)


async def test_strict_control_plane_accepts_what_jes_sends(tmp_path: Path) -> None:
    """Against Keptn's strict event validation (64 KB, status.changed refused) everything jes must
    send is accepted; the refused status.changed changes nothing. Every request body jes sent is
    also checked against the contract models."""
    sent: list[tuple[str, str, Any]] = []

    class Recording(httpx.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.method in ("POST", "PUT") and request.content:
                sent.append((request.method, request.url.path, json.loads(request.content)))
            return await super().handle_async_request(request)

    with LocalControlPlane(token="strict", seed_dir=SEED, strict_validation=True) as plane:
        put_config(plane, (Path(__file__).parents[2] / "examples/job/config.yaml").read_text())
        async with running(jes_settings(plane, tmp_path, max_event_bytes=65536), transport=Recording()):
            context = plane.trigger_sequence(trigger_body())
            await wait_until(lambda: sequence_done(plane, context))
        ledger_check(plane)
    checked = 0
    for _method, path, body in sent:
        if path.endswith("/v1/event") and not body["type"].endswith("status.changed"):
            event = models.parse_incoming_event(body)
            assert models.strict_problem(event) is None
            checked += 1
        elif path.endswith("/uniform/registration"):
            models.Registration.model_validate(body)
            checked += 1
    assert checked >= 3  # registration, .started, .finished


# ---------------------------------------------------------------------------------------------
# Bad input: arbitrary configs and events never crash the handler; each gets a clear outcome


class RecordingReporter:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.logs: list[dict[str, Any]] = []

    async def deliver(self, event: dict[str, Any], *, fence: Any) -> Arrival:
        await fence()
        self.sent.append(event)
        return Arrival.ARRIVED

    async def settle(self, probe: dict[str, Any], *, since: float | None = None) -> Arrival:
        return Arrival.MISSING

    async def best_effort(self, event: dict[str, Any]) -> None:
        self.sent.append(event)

    async def error_log(self, entry: dict[str, Any]) -> None:
        self.logs.append(entry)


class TextConfig:
    def __init__(self, text: str) -> None:
        self.text = text

    async def load(self, info: EventInfo) -> config.LoadedConfig:
        return config.load(self.text, file="job/config.yaml")


class NoFiles:
    async def fetch(self, info: EventInfo, task: Any) -> dict[str, bytes]:
        return {}


class InstantRunner:
    """Does not execute anything: the property is about config, matching and reporting."""

    name = "instant"
    absent_means_never_started = True

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def run(self, spec: TaskSpec, **_: Any) -> Outcome:
        now = events.utc_now()
        return Outcome(spec.job_name, Status.SUCCEEDED, "exit code 0", 0, (), now, now)


EVENTS = st.fixed_dictionaries(
    {
        "id": st.text(min_size=1, max_size=40),
        "type": st.sampled_from(["sh.keptn.event.test.triggered", "sh.keptn.event.sayhello.triggered"]),
        "shkeptncontext": st.text(max_size=40),
        "data": st.dictionaries(
            st.sampled_from(["project", "stage", "service", "labels", "test", "sayhello", "deployment"]),
            st.one_of(
                st.text(max_size=10),
                st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
                st.integers(),
            ),
            max_size=6,
        ),
    }
)
CONFIGS = st.one_of(
    TREES.map(lambda tree: json.dumps(tree)),
    st.sampled_from(
        [
            (Path(__file__).parents[2] / "examples/job/all-features.yaml").read_text(),
            (Path(__file__).parents[2] / "examples/job/config.yaml").read_text(),
            "apiVersion: v2\nactions:\n  - events: [{name: ''}]\n    tasks: [{name: t, env: [{name: X, value: $.data.nope, valueFrom: event}]}]\n",
        ]
    ),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(text=CONFIGS, event=EVENTS)
def test_arbitrary_configs_and_events_never_crash_and_always_explain(text: str, event: dict[str, Any]) -> None:
    reporter = RecordingReporter()
    subject = handler.EventHandler(
        configs=TextConfig(text),
        files=NoFiles(),
        runner=InstantRunner(),
        reporter=reporter,
        store=ledger.MemoryLedger(),
        executor=matcher.Executor(location="EU"),
       
        identity=events.Identity(),
        max_event_bytes=8192,
    )
    try:
        matcher.event_info(event)
    except Exception as exc:  # the service rejects these before the handler (reported and skipped)
        assert type(exc).__name__ == "EventError"
        return
    result = asyncio.run(subject.handle(event))
    assert result.outcome in ("no_match", "silent", "succeeded", "errored")
    finished = [e for e in reporter.sent if e["type"].endswith(".finished")]
    started = [e for e in reporter.sent if e["type"].endswith(".started")]
    assert len(finished) == len(started) <= 1
    for event_sent in reporter.sent:
        assert budget.body_size(event_sent) <= 8192
    if result.outcome == "errored":
        assert finished[0]["data"]["message"] and reporter.logs


class MissingConfig:
    async def load(self, info: EventInfo) -> config.LoadedConfig:
        raise ports.ConfigNotFound("unable to find job configuration")


async def test_a_finished_accepted_just_before_a_crash_is_not_sent_again(plane: LocalControlPlane) -> None:
    """The crash came after the control plane accepted .finished but before the claim recorded it
    as sent: the resumed claim finds it in the datastore and completes, even though the config is
    gone now."""
    (event_id,) = plane.inject_triggered(task="test", project="my-first-project", stage="dev", service="service1")
    (event,) = [e for e in plane.open_triggered("sh.keptn.event.test.triggered") if e["id"] == event_id]
    info, identity = matcher.event_info(event), events.Identity(executor="keptn-jes/-")
    store = ledger.MemoryLedger()
    claim = ledger.Claim(ref=ledger.EventRef.of(event), holder=store.holder)
    claim.reports[ledger.Report.STARTED] = ledger.Delivery.SENT
    claim.reports[ledger.Report.FINISHED] = ledger.Delivery.SENDING  # the crash came right after the POST
    await store.save(claim)
    settings_ = jes_settings(plane, Path("/nonexistent"))
    async with auth.make_http_client(settings_) as http:
        client = keptn_client.KeptnClient.from_settings(http, settings_)
        for body in (events.started(info, identity), events.finished(info, identity, status="succeeded", result="pass", message="ok", max_bytes=65536)):
            await client.send_event(body)
        subject = handler.EventHandler(
            configs=MissingConfig(), files=NoFiles(), runner=InstantRunner(), store=store,
            reporter=reporter_mod.KeptnReporter(client, settle_s=0.5),
            executor=matcher.Executor(), identity=identity,
        )  # fmt: skip
        (resumed,) = await store.resumable()
        assert resumed.resumed
        resumed.event = event
        result = await subject.resume(resumed)
    stored = store.get(event_id)
    assert result.outcome == "resumed" and stored is not None and stored.done
    assert len(plane.events(type="sh.keptn.event.test.finished", triggered_id=event_id)) == 1
    assert len(plane.events(type="sh.keptn.event.test.started", triggered_id=event_id)) == 1
