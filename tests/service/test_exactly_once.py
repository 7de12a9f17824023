"""Exactly once when Keptn and Kubernetes behave as they really do.

Each test stands for a way the promise broke against doubles kinder than reality: an outage at
claim time, replicas with skewed clocks, a Job deleted by its TTL before jes resumed, a report the
control plane rejects, an event larger than a Lease annotation may hold, a datastore that lags or is
down, and done claims that must outlive the control plane's listing of their event."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from fakes.fake_kube import FakeKube
from jes import ledger
from jes.clients.keptn import auth
from jes.clients.keptn import client as keptn_client
from jes.devtools.controlplane.server import LocalControlPlane
from jes.ledger import leases
from jes.matcher import matching as matcher
from jes.models import Outcome, Status, TaskSpec, job_name
from jes.reporter import delivery as reporter
from jes.reporter import events
from jes.service import handler, ports
from jes.service.providers import ControlPlaneTriggered
from tests.service.support import (
    SEED,
    TOKEN,
    jes_settings,
    job_uids,
    jobs_created,
    ledger_check,
    make_kube_service,
    put_config,
    running,
    sequence_done,
    started,
    trigger_body,
    wait_until,
)

FINISHED = "sh.keptn.event.sayhello.finished"
STARTED = "sh.keptn.event.sayhello.started"


def claims_in(kube: FakeKube) -> list[dict[str, Any]]:
    leases_ = kube.objects("leases", "keptn-jes")
    return [lease for lease in leases_ if lease["metadata"]["labels"].get(leases.CLAIM_LABEL) == "event"]


def watch_holders(kube: FakeKube) -> dict[str, set[str]]:
    """Every holder each claim Lease will have had (filled as the fake API changes them)."""
    seen: dict[str, set[str]] = {}
    lock = threading.Lock()

    def note(plural: str, kind: str, obj: dict[str, Any]) -> None:
        if plural != "leases" or obj["metadata"].get("labels", {}).get(leases.CLAIM_LABEL) != "event":
            return
        holder = (obj.get("spec") or {}).get("holderIdentity") or ""
        with lock:
            seen.setdefault(obj["metadata"]["name"], set()).add(holder)

    kube.store_listener(note)
    return seen


# ---------------------------------------------------------------------------------------------
# Kubernetes


OUTAGE_S = 70.0


async def test_an_outage_of_the_kubernetes_api_at_claim_time_is_waited_out(
    plane: LocalControlPlane, kube: FakeKube, tmp_path: Path
) -> None:
    """70 s of 503 from the Lease API when the event arrives: longer than any retry of one call.
    The event stays with the process and is handled once the API heals, exactly once."""
    async with started(make_kube_service(plane, kube, tmp_path, "jes-0")) as service:
        outage = kube.faults.fail(503, times=None, resource="coordination.k8s.io/leases", verb="create")
        healed_at = time.monotonic() + OUTAGE_S
        context = plane.trigger_sequence(trigger_body("EU"))
        await wait_until(lambda: service.metrics.event_retries._value.get() >= 3, timeout_s=30, what="failed claims")
        await asyncio.sleep(healed_at - time.monotonic())
        assert not plane.events(type=STARTED, keptn_context=context)
        assert outage.hits > 10
        kube.faults.remove(outage)
        await wait_until(lambda: sequence_done(plane, context), timeout_s=60, what="the event after the outage")
    ledger_check(plane)
    assert set(jobs_created(kube).values()) == {1}


@pytest.mark.parametrize("skew_s", [60.0, -60.0])
async def test_replicas_whose_clocks_differ_never_take_live_claims(
    plane: LocalControlPlane, kube: FakeKube, tmp_path: Path, skew_s: float
) -> None:
    """Liveness is judged on the reader's monotonic clock: a minute of skew between two nodes makes
    no replica look dead (judged by the holder's renewTime, the other would steal every claim)."""
    kube.behave(image="alpine", logs="slow\n", duration_s=2.0)  # longer than JES_LEASE_DURATION_S (1.5)
    seen = watch_holders(kube)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(started(make_kube_service(plane, kube, tmp_path, "jes-a")))
        await stack.enter_async_context(
            started(make_kube_service(plane, kube, tmp_path, "jes-b", wall_clock=lambda: time.time() + skew_s))
        )
        ids = plane.inject_triggered(
            task="sayhello", project="my-first-project", stage="dev", service="service1",
            data={"sayhello": {"location": "EU"}}, count=8,
        )  # fmt: skip
        await wait_until(lambda: all(plane.events(type=FINISHED, triggered_id=i) for i in ids), timeout_s=30)
    ledger_check(plane)
    assert set(jobs_created(kube).values()) == {1}
    stolen = {name: holders for name, holders in seen.items() if len(holders - {""}) > 1}
    assert not stolen, f"claims taken over from a live replica: {stolen}"


TTL_CONFIG = """apiVersion: v2
actions:
  - name: hello
    events: [{name: sh.keptn.event.sayhello.triggered}]
    tasks:
      - name: hello
        image: alpine
        ttlSecondsAfterFinished: 60
        cmd: [echo]
        args: [hello]
"""


async def test_a_job_deleted_by_its_ttl_before_the_resume_is_not_run_again(
    plane: LocalControlPlane, kube: FakeKube, tmp_path: Path
) -> None:
    kube.behave(image="alpine", logs="ran once\n", duration_s=3600)
    put_config(plane, TTL_CONFIG)
    first = make_kube_service(plane, kube, tmp_path, "jes-0")
    await first.start()
    context = plane.trigger_sequence(trigger_body("EU"))
    await wait_until(lambda: kube.objects("pods", "keptn-jes"), what="the task's pod")
    original = job_uids(kube)
    await first.abandon()  # jes dies while the task runs
    kube.clock.advance(3600)  # the task ends...
    await wait_until(lambda: all(j["status"].get("succeeded") for j in kube.objects("jobs", "keptn-jes")))
    kube.clock.advance(61)  # ...and its TTL deletes the Job, the pod and the logs before jes is back
    await wait_until(lambda: not kube.objects("jobs", "keptn-jes"), what="the TTL deletion")
    async with started(make_kube_service(plane, kube, tmp_path, "jes-0")):
        await wait_until(lambda: sequence_done(plane, context), what="the resumed event")
    ledger_check(plane)
    assert jobs_created(kube) == Counter(original.keys())  # created once, never again
    finished = plane.events(type=FINISHED, keptn_context=context)[0]["data"]
    assert finished["result"] == "pass", finished["message"]
    assert "logs no longer available" in finished["message"]


async def test_a_triggered_event_larger_than_a_lease_annotation_is_handled(
    plane: LocalControlPlane, kube: FakeKube, tmp_path: Path
) -> None:
    """The claim never holds the event (Kubernetes caps all annotations of an object at 256 KiB)."""
    big = {"sayhello": {"location": "EU"}, "payload": "x" * 300_000}
    async with started(make_kube_service(plane, kube, tmp_path, "jes-0")):
        (event_id,) = plane.inject_triggered(
            task="sayhello", project="my-first-project", stage="dev", service="service1", data=big
        )
        await wait_until(lambda: plane.events(type=FINISHED, triggered_id=event_id), timeout_s=20)
    ledger_check(plane)
    (claim,) = claims_in(kube)
    assert len(json.dumps(claim)) < 4096


# ---------------------------------------------------------------------------------------------
# Reports the control plane refuses


async def test_a_rejected_finished_is_an_alarm_retried_until_accepted(plane: LocalControlPlane, tmp_path: Path) -> None:
    rule = plane.faults.add(method="POST", path="/v1/event", status=422, body_matches=r"sayhello\.finished")
    async with running(jes_settings(plane, tmp_path), rejected_retry_s=0.3) as service:
        context = plane.trigger_sequence(trigger_body())
        rejected = service.metrics.reports_rejected.labels("finished")
        # (counted once jes has read the answer: the fault fires first)
        await wait_until(lambda: rule.fired >= 2 and rejected._value.get() >= 2, what="the rejected .finished to be retried")
        assert not service.ready()
        assert any("rejects sh.keptn.event.sayhello.finished" in p for p in service.problems())
        assert not sequence_done(plane, context)  # not dropped as if it had been sent
        plane.faults.remove(rule)
        await wait_until(lambda: sequence_done(plane, context))
        await wait_until(lambda: not service.reporter.rejections)
    ledger_check(plane)


# ---------------------------------------------------------------------------------------------
# Done claims


async def test_done_claims_outlive_the_control_planes_listing_of_their_event(
    plane: LocalControlPlane, tmp_path: Path
) -> None:
    """Another integration also started the task, so Keptn still lists it after jes's .finished; a
    restarted jes must not take it again. The claim goes only once the event stops being listed and
    JES_DONE_RETENTION_S has passed."""
    settings_ = jes_settings(plane, tmp_path, done_retention_s=1.0)
    options = {"retention_check_s": 0.2, "sweep_interval_s": 0.2}
    (event_id,) = plane.inject_triggered(
        task="sayhello", project="my-first-project", stage="dev", service="service1",
        data={"sayhello": {"location": "EU"}},
    )  # fmt: skip
    other = {"source": "other-integration", "triggeredid": event_id, "type": STARTED, "specversion": "1.0",
             "data": {"project": "my-first-project", "stage": "dev", "service": "service1"}}  # fmt: skip
    (event,) = [e for e in plane.open_triggered("sh.keptn.event.sayhello.triggered") if e["id"] == event_id]
    other["shkeptncontext"] = event["shkeptncontext"]
    plane.trigger_sequence(other)
    async with running(settings_, **options):
        await wait_until(lambda: plane.events(type=FINISHED, triggered_id=event_id))
        await asyncio.sleep(1.5)  # several retention checks while the event is still listed
    assert plane.open_triggered("sh.keptn.event.sayhello.triggered"), "still open: the other integration works"
    store = ledger.FileLedger(tmp_path)
    assert [c.event_id for c in await _done(store)] == [event_id]

    async with running(settings_, **options):  # a restart offered the same event again: nothing new
        await asyncio.sleep(1.0)
        assert len(plane.events(type=FINISHED, triggered_id=event_id)) == 1
        plane.trigger_sequence(other | {"type": FINISHED, "data": {**other["data"], "status": "succeeded", "result": "pass"}})
        await wait_until(lambda: not plane.open_triggered("sh.keptn.event.sayhello.triggered"))
        await wait_until(lambda: not (tmp_path / "claims").exists() or not list((tmp_path / "claims").glob("*.json")),
                         timeout_s=10, what="the claim to be forgotten after the retention")  # fmt: skip
    assert _reports(plane, {"id": event_id}) == {STARTED: 1, FINISHED: 1}


async def _done(store: ledger.FileLedger) -> list[ledger.Claim]:
    await store.start()
    try:
        return await store.done_claims()
    finally:
        await store.close()


# ---------------------------------------------------------------------------------------------
# A report whose POST outcome is unknown, the datastore lagging or down


class NoFiles:
    async def fetch(self, info: Any, task: Any) -> dict[str, bytes]:
        return {}


class FileConfig:
    def __init__(self, text: str) -> None:
        self.text = text

    async def load(self, info: Any) -> Any:
        from jes.matcher import config

        return config.load(self.text, file="job/config.yaml")


class DoneRunner:
    """Tasks already ran before the 'crash': adopting them yields their outcome."""

    name = "done"
    absent_means_never_started = False

    def __init__(self) -> None:
        self.created = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def run(self, spec: TaskSpec, *, adopt_only: bool = False, **_: Any) -> Outcome:
        if not adopt_only:
            self.created += 1
        now = events.utc_now()
        return Outcome(spec.job_name, Status.SUCCEEDED, "exit code 0", 0, (), now, now)


SIMPLE = TTL_CONFIG


@contextlib.asynccontextmanager
async def resumed_handler(plane: LocalControlPlane, settle_s: float, runner: Any = None) -> Any:
    settings_ = jes_settings(plane, Path("/nonexistent"))
    async with auth.make_http_client(settings_) as http:
        client = keptn_client.KeptnClient.from_settings(http, settings_)
        store = ledger.MemoryLedger()
        runner = runner or DoneRunner()
        metrics = __import__("jes.service.metrics", fromlist=["Metrics"]).Metrics()
        subject = handler.EventHandler(
            configs=FileConfig(SIMPLE), files=NoFiles(), runner=runner, store=store,
            reporter=reporter.KeptnReporter(client, settle_s=settle_s, backoff=_quick()),
            executor=matcher.Executor(),
            identity=events.Identity(executor="keptn-jes/-"), triggered=ControlPlaneTriggered(client, backoff=_quick()),
            metrics=metrics,
        )  # fmt: skip
        yield subject, client, store, runner, metrics


def _quick() -> Any:
    from jes.util import retry

    return retry.Backoff((0.05, 0.1, 0.2), forever=True)


async def _crash_state(
    store: ledger.MemoryLedger, event: dict[str, Any], *, started_: ledger.Delivery, finished: ledger.Delivery | None
) -> ledger.Claim:
    """The claim as a crashed jes left it; the one task recorded done."""
    claim = ledger.Claim(ref=ledger.EventRef.of(event), holder=store.holder)
    claim.reports[ledger.Report.STARTED] = started_
    if finished is not None:
        claim.reports[ledger.Report.FINISHED] = finished
    now = events.utc_now().isoformat()
    job = job_name(event["id"], 0, 0, executor="")
    claim.set_task(0, 0, ledger.TaskRecord(ledger.TaskState.DONE, job, "succeeded", "exit code 0", 0, now, now))
    await store.save(claim)
    (resumed,) = await store.resumable()
    return resumed


def _open_event(plane: LocalControlPlane) -> dict[str, Any]:
    (event_id,) = plane.inject_triggered(
        task="sayhello", project="my-first-project", stage="dev", service="service1", data={"sayhello": {}}
    )
    return next(e for e in plane.open_triggered("sh.keptn.event.sayhello.triggered") if e["id"] == event_id)


async def _post(client: keptn_client.KeptnClient, event: dict[str, Any], *kinds: str) -> None:
    info, identity = matcher.event_info(event), events.Identity(executor="keptn-jes/-")
    for kind in kinds:
        body = (
            events.started(info, identity)
            if kind == "started"
            else events.finished(info, identity, status="succeeded", result="pass", message="ok", max_bytes=65536)
        )
        await client.send_event(body)


def _reports(plane: LocalControlPlane, event: dict[str, Any]) -> Counter[str]:
    """.started and .finished jes sent for the event (status.changed is best effort)."""
    sent = plane.events(triggered_id=event["id"])
    return Counter(e["type"] for e in sent if e["source"] == "job-executor-service" and "status" not in e["type"])


@pytest.fixture
def lagging_plane() -> Any:
    with LocalControlPlane(token=TOKEN, seed_dir=SEED, datastore_lag_s=2.5) as control_plane:
        yield control_plane


def _held_open_by_another_integration(plane: LocalControlPlane, event: dict[str, Any]) -> None:
    """Another integration starts the task too, so Keptn keeps listing it after jes's .finished."""
    plane.trigger_sequence(
        {"source": "other-integration", "triggeredid": event["id"], "type": STARTED, "specversion": "1.0",
         "shkeptncontext": event["shkeptncontext"], "data": {k: event["data"][k] for k in ("project", "stage", "service")}}
    )  # fmt: skip


async def test_a_finished_posted_before_the_crash_is_found_after_the_datastores_lag(
    lagging_plane: LocalControlPlane,
) -> None:
    event = _open_event(lagging_plane)
    _held_open_by_another_integration(lagging_plane, event)
    async with resumed_handler(lagging_plane, settle_s=4.0) as (subject, client, store, runner, _):
        await _post(client, event, "started", "finished")  # accepted; the crash came before "sent"
        claim = await _crash_state(store, event, started_=ledger.Delivery.SENT, finished=ledger.Delivery.SENDING)
        assert not lagging_plane.stored_events(triggered_id=event["id"], type=FINISHED)  # the datastore lags
        result = await subject.resume(claim)
    assert result.outcome == "resumed"
    assert _reports(lagging_plane, event) == {STARTED: 1, FINISHED: 1} and runner.created == 0


async def test_a_finished_that_closed_the_event_before_the_crash_needs_no_datastore(
    plane: LocalControlPlane,
) -> None:
    """Keptn no longer lists the event (our .finished completed it): nothing is sent or asked."""
    event = _open_event(plane)
    async with resumed_handler(plane, settle_s=0.5) as (subject, client, store, _, _metrics):
        plane.datastore_down()  # down before the POST: the datastore never learns of it (core NATS)
        await _post(client, event, "started", "finished")
        await wait_until(lambda: not plane.open_triggered("sh.keptn.event.sayhello.triggered"))
        claim = await _crash_state(store, event, started_=ledger.Delivery.SENT, finished=ledger.Delivery.SENDING)
        result = await subject.resume(claim)
    assert result.outcome == "resumed"
    assert _reports(plane, event) == {STARTED: 1, FINISHED: 1}


async def test_a_finished_that_never_left_is_sent_once_after_the_datastores_lag(
    lagging_plane: LocalControlPlane,
) -> None:
    event = _open_event(lagging_plane)
    async with resumed_handler(lagging_plane, settle_s=3.0) as (subject, client, store, runner, _):
        await _post(client, event, "started")
        claim = await _crash_state(store, event, started_=ledger.Delivery.SENT, finished=ledger.Delivery.SENDING)
        began = time.monotonic()
        result = await subject.resume(claim)
        assert time.monotonic() - began >= 3.0  # "not arrived" only after the settle time
    assert result.outcome == "succeeded"
    assert _reports(lagging_plane, event) == {STARTED: 1, FINISHED: 1} and runner.created == 0


async def test_the_datastore_down_across_a_restart_after_finished_arrived(plane: LocalControlPlane) -> None:
    """The event was still listed when jes came back; the datastore cannot tell; by the time jes
    decides, Keptn has processed our .finished and no longer lists the event: done, not resent."""
    event = _open_event(plane)
    async with resumed_handler(plane, settle_s=0.5) as (subject, client, store, _, metrics):
        plane.datastore_down()
        claim = await _crash_state(store, event, started_=ledger.Delivery.SENT, finished=ledger.Delivery.SENDING)
        claim.event = event  # the poll after the restart offered it again
        await _post(client, event, "started", "finished")
        await wait_until(lambda: not plane.open_triggered("sh.keptn.event.sayhello.triggered"))
        result = await subject.resume(claim)
        assert metrics.reports_uncertain.labels("finished", "closed")._value.get() == 1
    assert result.outcome == "resumed"
    assert _reports(plane, event) == {STARTED: 1, FINISHED: 1}


async def test_the_datastore_down_across_a_restart_before_finished_left(plane: LocalControlPlane) -> None:
    """The datastore cannot tell and Keptn still lists the event: .finished is sent (a duplicate would
    be ignored by Keptn, a loss would hang the sequence)."""
    event = _open_event(plane)
    async with resumed_handler(plane, settle_s=0.5) as (subject, client, store, _, metrics):
        await _post(client, event, "started")
        plane.datastore_down()
        claim = await _crash_state(store, event, started_=ledger.Delivery.SENT, finished=ledger.Delivery.SENDING)
        result = await subject.resume(claim)
        assert metrics.reports_uncertain.labels("finished", "resent")._value.get() == 1
    assert result.outcome == "succeeded"
    assert _reports(plane, event) == {STARTED: 1, FINISHED: 1}


async def test_an_uncertain_started_waits_for_the_datastore(plane: LocalControlPlane) -> None:
    """A second .started would hang the sequence for good: jes waits until the datastore can tell."""
    event = _open_event(plane)
    async with resumed_handler(plane, settle_s=0.3) as (subject, client, store, _, metrics):
        await _post(client, event, "started")  # it did arrive, but the datastore is down
        plane.datastore_down()
        claim = await _crash_state(store, event, started_=ledger.Delivery.SENDING, finished=None)
        resuming = asyncio.create_task(subject.resume(claim))
        await wait_until(lambda: metrics.reports_uncertain.labels("started", "waited")._value.get() >= 2)
        assert not resuming.done() and _reports(plane, event) == {STARTED: 1}
        plane.datastore_up()
        result = await asyncio.wait_for(resuming, 20)
    assert result.outcome == "succeeded"
    assert _reports(plane, event) == {STARTED: 1, FINISHED: 1}


async def test_a_job_that_vanished_before_its_outcome_was_recorded_is_reported_so(plane: LocalControlPlane) -> None:
    class Vanished(DoneRunner):
        async def run(self, spec: TaskSpec, *, adopt_only: bool = False, **_: Any) -> Outcome:
            assert adopt_only, "a launched task must never be created again"
            now = events.utc_now()
            return Outcome(spec.job_name, Status.LOST, "the Job disappeared before its result was known", None, (),
                           now, now)  # fmt: skip

    event = _open_event(plane)
    async with resumed_handler(plane, settle_s=0.3, runner=Vanished()) as (subject, client, store, _, _metrics):
        await _post(client, event, "started")
        claim = ledger.Claim(ref=ledger.EventRef.of(event), holder=store.holder)
        claim.reports[ledger.Report.STARTED] = ledger.Delivery.SENT
        claim.set_task(0, 0, ledger.TaskRecord(ledger.TaskState.LAUNCHING, job_name(event["id"], 0, 0)))
        await store.save(claim)
        (claim,) = await store.resumable()
        result = await subject.resume(claim)
    assert result.outcome == "errored" and result.finished is not None
    assert "vanished before jes recorded its outcome" in result.finished["data"]["message"]
    assert _reports(plane, event) == {STARTED: 1, FINISHED: 1}



# ---------------------------------------------------------------------------------------------
# Races and changes found in review


async def test_a_failed_attempt_is_retried_even_when_the_sweep_looked_at_the_claim_meanwhile(
    plane: LocalControlPlane, kube: FakeKube, tmp_path: Path
) -> None:
    """A write fails once; while the event waits for its retry, the sweep lists the open claim. The
    retry must still take it (nothing may mark it "in progress" and then forget it)."""
    from jes.util import retry

    options = {"intake_backoff": retry.Backoff((1.0,), forever=True), "sweep_interval_s": 0.1}
    async with started(make_kube_service(plane, kube, tmp_path, "jes-0", service_options=options)) as service:
        # the claim's Lease only: the replica's heartbeat Lease, renewed every 0.3 s, must not take
        # some of the failures (then the claim write got through within its own retries)
        kube.faults.fail(503, times=8, verb="update", resource="coordination.k8s.io/leases", name="jes-claim-*")
        context = plane.trigger_sequence(trigger_body("EU"))
        await wait_until(lambda: service.metrics.event_retries._value.get() >= 1, what="a failed attempt")
        await wait_until(lambda: sequence_done(plane, context), timeout_s=20, what="the retried event")
    ledger_check(plane)


async def test_an_ambiguous_started_is_never_posted_again_while_the_datastore_cannot_tell(
    plane: LocalControlPlane,
) -> None:
    """The .started POST was processed but its answer lost, and the datastore is down: jes waits
    until the datastore can tell, and then sends nothing more."""
    event = _open_event(plane)
    async with resumed_handler(plane, settle_s=0.3) as (subject, _client, store, _, metrics):
        plane.datastore_down()
        plane.faults.add(method="POST", path="/v1/event", drop_connection=True, times=1, body_matches=r"\.started")
        claim = ledger.Claim(ref=ledger.EventRef.of(event), holder=store.holder, event=event)
        claim.reports[ledger.Report.STARTED] = ledger.Delivery.SENDING
        await store.save(claim)
        handling = asyncio.create_task(subject.resume(claim))
        await wait_until(lambda: metrics.reports_uncertain.labels("started", "waited")._value.get() >= 2)
        assert _reports(plane, event) == {STARTED: 1}
        plane.datastore_up()
        await asyncio.sleep(0.5)  # the POST was accepted while the datastore was down: it never stores it
        result = await asyncio.wait_for(handling, 20)
    # the datastore lost the accepted .started (core NATS), so after it is back jes concludes
    # "not arrived" and sends it again: the window docs/exactly-once.md lists. What must never
    # happen is a second POST *while* it cannot tell:
    assert result.outcome == "succeeded"
    assert metrics.reports_uncertain.labels("started", "waited")._value.get() >= 2


async def test_a_config_gone_or_changed_after_started_still_gets_a_finished(plane: LocalControlPlane) -> None:
    event = _open_event(plane)
    async with resumed_handler(plane, settle_s=0.3) as (subject, client, store, _, _metrics):
        subject.configs = FileConfig("apiVersion: v2\nactions: []\n")  # nothing matches any more
        await _post(client, event, "started")
        claim = ledger.Claim(ref=ledger.EventRef.of(event), holder=store.holder, event=event)
        claim.reports[ledger.Report.STARTED] = ledger.Delivery.SENT
        await store.save(claim)
        (claim,) = await store.resumable()
        result = await subject.resume(claim)
    assert result.outcome == "errored" and result.finished is not None
    assert "changed after .started was sent" in result.finished["data"]["message"]
    assert _reports(plane, event) == {STARTED: 1, FINISHED: 1}
    stored = store.get(event["id"])
    assert stored is not None and stored.done


async def test_no_config_for_an_open_claim_without_reports_completes_it(plane: LocalControlPlane) -> None:
    class Missing:
        async def load(self, info: Any) -> Any:
            raise ports.ConfigNotFound("job/config.yaml not found")

    event = _open_event(plane)
    async with resumed_handler(plane, settle_s=0.3) as (subject, _client, store, _, _metrics):
        subject.configs = Missing()
        claim = ledger.Claim(ref=ledger.EventRef.of(event), holder=store.holder, event=event)
        await store.save(claim)  # taken before a restart, nothing sent yet
        result = await subject.handle(event)
    assert result.outcome == "no_config"
    stored = store.get(event["id"])
    assert stored is not None and stored.done
    assert _reports(plane, event) == {}
