"""NATS mode (no KEPTN_API_ENDPOINT: jes beside Keptn), against a real nats-server with JetStream
and the local control plane speaking NATS as Keptn 1.x does. Keptn's services are reached at their
in-cluster names through HTTP_PROXY, which leads to the local control plane."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from fakes.fake_kube import FakeKube
from jes.devtools.controlplane.server import LocalControlPlane
from jes.service.core import Service
from tests.natsserver import NatsServer, through_proxy
from tests.service.support import (
    DATASTORE_LAG_S,
    SEED,
    TOKEN,
    jes_settings,
    jobs_created,
    ledger_check,
    make_kube_service,
    running,
    sequence_done,
    started,
    task_events,
    trigger_body,
    wait_until,
)


def nats_overrides(nats: NatsServer, **extra: Any) -> dict[str, Any]:
    return {
        "keptn_api_endpoint": "",
        "keptn_api_token": "",
        "pubsub_url": nats.url,
        "pubsub_group": "jes",
        "nats_reconcile_s": 60.0,  # NATS must bring the events; the reconciliation is tested on its own
    } | extra


async def test_hello_world_in_nats_mode(nats_plane: LocalControlPlane, nats: NatsServer, tmp_path: Path) -> None:
    current = jes_settings(nats_plane, tmp_path / "state", **nats_overrides(nats))
    async with running(current) as service:
        await wait_until(lambda: service.intake.subscriber is not None and service.intake.subscriber.ready,
                         what="the NATS subscription")  # fmt: skip
        context = nats_plane.trigger_sequence(trigger_body())
        await wait_until(lambda: sequence_done(nats_plane, context), what="the sequence to finish")
        subscriber = service.intake.subscriber
        assert subscriber is not None and subscriber.received >= 1
        assert service.intake.nats is not None and service.intake.nats.jetstream_subjects is True
        # registered at the in-cluster shipyard-controller, with the distributor's location
        [integration] = nats_plane.integrations()
        assert integration["metadata"]["location"] == "control-plane"
    events = task_events(nats_plane, context)
    finished = [e for e in events if e["type"].endswith(".finished")]
    assert [e["data"]["result"] for e in finished] == ["pass"]
    assert "Hello" in finished[0]["data"]["message"] or finished[0]["data"]["message"]
    ledger_check(nats_plane)


async def test_events_published_while_jes_was_away_are_found_by_the_reconciliation(
    nats_plane: LocalControlPlane, nats: NatsServer, tmp_path: Path
) -> None:
    """Core NATS keeps nothing for an absent subscriber: the triggered-event API is the truth."""
    context = nats_plane.trigger_sequence(trigger_body())  # (the next one of the stage would wait for it)
    current = jes_settings(nats_plane, tmp_path / "state", **nats_overrides(nats))
    async with running(current) as service:
        await wait_until(lambda: sequence_done(nats_plane, context), what="the sequence")
        assert service.intake.subscriber is not None and service.intake.subscriber.received == 0
    ledger_check(nats_plane)


async def test_two_replicas_in_one_queue_group_handle_200_events_exactly_once(
    nats_plane: LocalControlPlane, nats: NatsServer, tmp_path: Path, kube: FakeKube
) -> None:
    kube.behave(image="alpine", logs="hello\n", duration_s=0.05)
    overrides = nats_overrides(nats, max_concurrent_events=64)
    replicas = [make_kube_service(nats_plane, kube, tmp_path, name, **overrides) for name in ("jes-a", "jes-b")]
    async with started(replicas[0]), started(replicas[1]):
        await wait_until(lambda: all(r.intake.subscriber and r.intake.subscriber.ready for r in replicas),
                         what="both subscriptions")  # fmt: skip
        contexts = [nats_plane.trigger_sequence(trigger_body(run=str(i))) for i in range(200)]
        await wait_until(lambda: all(sequence_done(nats_plane, c) for c in contexts), timeout_s=120,
                         what="200 sequences")  # fmt: skip
        received = [r.intake.subscriber.received for r in replicas if r.intake.subscriber]
    assert sum(received) == 200, received  # each message to one member of the group
    assert min(received) > 0, received  # and both members got a share
    counts = jobs_created(kube)
    assert len(counts) == 200 and set(counts.values()) == {1}
    ledger_check(nats_plane)


async def test_nats_down_at_start_then_up_loses_nothing(
    nats_plane: LocalControlPlane, nats: NatsServer, tmp_path: Path
) -> None:
    """jes waits for NATS with /ready failing and the reason; once it is back, everything runs."""
    nats.stop()  # (the control plane's bridge reconnects by itself)
    current = jes_settings(nats_plane, tmp_path / "state", **nats_overrides(nats))
    async with running(current) as service:
        await asyncio.sleep(0.5)
        assert any("cannot reach NATS" in p for p in service.problems()), service.problems()
        nats.start()
        await wait_until(lambda: service.intake.subscriber is not None and service.intake.subscriber.ready,
                         timeout_s=20, what="the subscription after NATS came up")  # fmt: skip
        await wait_until(lambda: not service.problems(), timeout_s=20, what="ready")
        # Keptn's stream exists before any integration publishes (the shipyard-controller makes it)
        await wait_until(lambda: nats_plane.nats is not None and nats_plane.nats.jetstream, timeout_s=20,
                         what="the control plane's stream")  # fmt: skip
        context = nats_plane.trigger_sequence(trigger_body())
        await wait_until(lambda: sequence_done(nats_plane, context), timeout_s=20, what="the sequence")
    ledger_check(nats_plane)


async def test_a_malformed_message_is_logged_with_its_subject_and_skipped(
    nats_plane: LocalControlPlane, nats: NatsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import nats as nats_py

    current = jes_settings(nats_plane, tmp_path / "state", **nats_overrides(nats))
    async with running(current) as service:
        await wait_until(lambda: service.intake.subscriber is not None and service.intake.subscriber.ready,
                         what="the NATS subscription")  # fmt: skip
        client = await nats_py.connect(nats.url)
        await client.publish("sh.keptn.event.sayhello.triggered", b"{not json")
        await client.publish("sh.keptn.event.sayhello.triggered", b"[1, 2]")
        await client.flush()
        await client.close()
        await wait_until(lambda: service.intake.subscriber is not None and service.intake.subscriber.skipped == 2,
                         what="two skipped messages")  # fmt: skip
        context = nats_plane.trigger_sequence(trigger_body())
        await wait_until(lambda: sequence_done(nats_plane, context), what="a good event after the bad ones")
    skipped = [r.getMessage() for r in caplog.records if "malformed message" in r.getMessage()]
    assert len(skipped) == 2 and all("sh.keptn.event.sayhello.triggered" in m for m in skipped)


async def test_without_jetstream_reports_are_checked_in_the_datastore(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A NATS without JetStream confirms a publish only as far as the server: each report is then
    looked up in the datastore before it counts as arrived (and sent again if it did not)."""
    from tests.natsserver import nats_server

    with nats_server(tmp_path / "store", jetstream=False) as plain:
        with LocalControlPlane(token=TOKEN, seed_dir=SEED, datastore_lag_s=DATASTORE_LAG_S, nats_url=plain.url) as plane:
            through_proxy(monkeypatch, plane.base_url)
            current = jes_settings(plane, tmp_path / "state", **nats_overrides(plain))
            async with running(current) as service:
                await wait_until(lambda: bool(service.intake.subscriber and service.intake.subscriber.ready),
                                 what="the NATS subscription")  # fmt: skip
                context = plane.trigger_sequence(trigger_body())
                await wait_until(lambda: sequence_done(plane, context), what="the sequence")
                assert service.intake.nats is not None and service.intake.nats.jetstream_subjects is False
            ledger_check(plane)


async def test_nats_lost_mid_run_loses_nothing(nats_plane: LocalControlPlane, nats: NatsServer, tmp_path: Path) -> None:
    """An event published while NATS is away reaches jes when the publisher's client flushes its
    reconnect buffer, or else through the reconciliation; the reports wait until NATS (where they
    leave) is back; either way exactly once."""
    current = jes_settings(nats_plane, tmp_path / "state", **nats_overrides(nats, nats_reconcile_s=0.5))
    async with running(current) as service:
        await wait_until(lambda: not service.problems(), what="ready")
        nats.stop()
        await wait_until(lambda: any("NATS" in p for p in service.problems()), what="/ready to name NATS")
        context = nats_plane.trigger_sequence(trigger_body())  # its .triggered is published into the void
        nats.start()
        await wait_until(lambda: sequence_done(nats_plane, context), timeout_s=30, what="the sequence")
    ledger_check(nats_plane)


def test_control_plane_nats_unreachable_is_one_clear_line() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "jes.cli", "control-plane", "--port", "0", "--nats", "nats://127.0.0.1:1"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 1
    assert "cannot reach NATS at nats://127.0.0.1:1" in done.stderr and "Traceback" not in done.stderr


def lose_the_first_started_acknowledgement(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The first .started is published (the stream stores it) but its acknowledgement is lost;
    the list gets its id."""
    from jes.clients.keptn.httperrors import EventMaybeDeliveredError
    from jes.clients.nats import NatsConnection

    original = NatsConnection.publish_event
    lost: list[str] = []

    async def ack_lost_once(self: NatsConnection, event: Any, **kwargs: Any) -> None:
        await original(self, event, **kwargs)
        if str(event["type"]).endswith(".started") and not lost:
            lost.append(str(event["id"]))
            raise EventMaybeDeliveredError("NATS: no acknowledgement (lost in the test)")

    monkeypatch.setattr(NatsConnection, "publish_event", ack_lost_once)
    return lost


async def test_a_lost_acknowledgement_is_resent_with_the_same_id_and_the_stream_keeps_one(
    nats_plane: LocalControlPlane, nats: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The .started reached the stream but its acknowledgement was lost, and the datastore (fed
    apart, as Keptn's) was down when it passed: jes finds nothing there and sends it again — with
    the same id, so the stream drops the repeat and the shipyard-controller counts one .started
    (a second one would hang the sequence for good)."""
    lost = lose_the_first_started_acknowledgement(monkeypatch)
    current = jes_settings(nats_plane, tmp_path / "state", **nats_overrides(nats))
    async with running(current) as service:
        await wait_until(lambda: not service.problems(), what="ready")
        await wait_until(lambda: nats_plane.nats is not None and nats_plane.nats.jetstream, what="the stream")
        nats_plane.datastore_down()
        context = nats_plane.trigger_sequence(trigger_body())
        await wait_until(lambda: bool(lost), what="the .started whose acknowledgement is lost")
        nats_plane.datastore_up()  # back before jes concludes: it finds nothing, so it sends again
        await wait_until(lambda: sequence_done(nats_plane, context), timeout_s=20, what="the sequence")
    started = [e for e in task_events(nats_plane, context) if e["type"].endswith(".started")]
    assert lost and [e["id"] for e in started] == lost  # the resend, under the same id
    ledger_check(nats_plane)


async def test_a_report_rebuilt_after_a_crash_has_the_same_id_and_the_stream_keeps_one(
    nats_plane: LocalControlPlane, nats: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """jes dies while it cannot tell whether its .started arrived (acknowledgement lost, datastore
    down); the next process finds nothing in the datastore and sends the .started again, rebuilt
    from the claim — under the same id, so the stream drops it and the sequence completes (with a
    new id the shipyard-controller would count two .started and wait for a second .finished)."""
    lost = lose_the_first_started_acknowledgement(monkeypatch)
    current = jes_settings(nats_plane, tmp_path / "state", **nats_overrides(nats))
    first = Service(current, health_host="127.0.0.1")
    await first.start()
    await wait_until(lambda: not first.problems(), what="ready")
    await wait_until(lambda: nats_plane.nats is not None and nats_plane.nats.jetstream, what="the stream")
    nats_plane.datastore_down()
    context = nats_plane.trigger_sequence(trigger_body())
    await wait_until(lambda: bool(lost), what="the .started whose acknowledgement is lost")
    await first.abandon()  # dies while it cannot tell
    await first.store.close()  # (the kernel drops a dead process's lock on the state directory)
    nats_plane.datastore_up()
    async with running(current):
        await wait_until(lambda: sequence_done(nats_plane, context), timeout_s=20, what="the sequence")
    started = [e for e in task_events(nats_plane, context) if e["type"].endswith(".started")]
    assert [e["id"] for e in started] == lost
    ledger_check(nats_plane)
