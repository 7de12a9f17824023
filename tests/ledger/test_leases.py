"""The Lease ledger against the fake Kubernetes API: takeover judged on the reader's own clock,
conditional writes, and a write whose answer was lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from fakes.fake_kube import FakeKube
from jes import errors
from jes.clients import kube as kube_client
from jes.clients import kubelist
from jes.ledger import Claim, Delivery, EventRef, Report
from jes.ledger.leasenames import claim_of
from jes.ledger.leases import LeaseLedger
from tests.service.support import FAST


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube() as fake:
        yield fake


@pytest.fixture
async def api(kube: FakeKube) -> AsyncIterator[kube_client.KubeApi]:
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(4)
    with kube.api_client() as client:
        api = kube_client.KubeApi(client, executor=pool, backoff=FAST, request_timeout_s=5)
        yield api
        await api.aclose()
    pool.shutdown()


def ledger(api: kube_client.KubeApi, holder: str, clock: Clock, **options: Any) -> LeaseLedger:
    return LeaseLedger(
        api, namespace="jes", executor_id="jes/-", holder=holder, lease_duration_s=15, monotonic=clock, **options
    )


def fresh(holder: str, event_id: str = "e-1") -> Claim:
    claim = Claim(ref=EventRef(id=event_id, type="sh.keptn.event.test.triggered"), holder=holder)
    claim.reports[Report.STARTED] = Delivery.SENDING
    return claim


async def test_a_holder_that_vanished_without_a_heartbeat_is_taken_over_after_the_lease(
    api: kube_client.KubeApi,
) -> None:
    """Its heartbeat Lease is gone (deleted at its shutdown) and its claim was not handed over:
    the claim is taken once it has been seen unchanged for the lease duration — not never."""
    clock = Clock()
    dead, alive = ledger(api, "dead", clock), ledger(api, "alive", clock)
    await dead.start()
    assert await dead.claim(fresh("dead")) is not None
    await dead.close()  # deletes its heartbeat Lease, leaves the claim
    await alive.start()
    assert await alive.resumable() == []  # first sighting: alive for a lease duration
    clock.now += 10
    assert await alive.resumable() == []
    clock.now += 6
    (taken,) = await alive.resumable()
    assert taken.holder == "alive" and taken.resumed


async def test_a_live_holder_is_never_taken_over_however_old_its_timestamps(api: kube_client.KubeApi) -> None:
    clock = Clock()
    holder = ledger(api, "holder", clock, wall_clock=lambda: 0.0)  # renewTime in 1970
    other = ledger(api, "other", clock)
    await holder.start()
    claim = await holder.claim(fresh("holder"))
    assert claim is not None
    for _ in range(5):
        clock.now += 10
        await holder.start()  # a heartbeat: the Lease changes
        assert await other.resumable() == []
    await holder.save(claim)  # progress on the claim itself also counts
    clock.now += 14
    assert await other.resumable() == []


async def test_a_write_whose_answer_was_lost_is_not_a_lost_claim(kube: FakeKube, api: kube_client.KubeApi) -> None:
    """The PUT was applied, its answer lost, the retry answered 409: the record is ours."""
    store = ledger(api, "jes-0", Clock())
    await store.start()
    claim = await store.claim(fresh("jes-0"))
    assert claim is not None
    kube.faults.fail(503, times=1, verb="update", resource="coordination.k8s.io/leases", commit=True)
    claim.reports[Report.STARTED] = Delivery.SENT
    await store.save(claim)
    stored = kube.get("leases", "jes", store.claim_name("e-1"))
    assert stored is not None and claim_of(stored).delivery(Report.STARTED) is Delivery.SENT


async def test_a_write_after_another_replica_took_the_claim_is_refused(api: kube_client.KubeApi) -> None:
    clock = Clock()
    first, second = ledger(api, "first", clock), ledger(api, "second", clock)
    await first.start()
    mine = await first.claim(fresh("first"))
    assert mine is not None
    await first.release(mine, handover=True)  # a clean shutdown: free at once
    mine.holder = "first"
    (theirs,) = await second.resumable()
    assert theirs.holder == "second"
    with pytest.raises(errors.ClaimLost):
        await first.save(mine)


async def test_new_claims_leave_threads_for_the_writes_of_running_events(kube: FakeKube, api: kube_client.KubeApi) -> None:
    """A burst of new events creates claims at most two at a time (of the 4 threads), so a running
    event's write is not queued behind all of them (the complete -> .finished latency)."""
    import asyncio
    import time

    clock = Clock()
    store = ledger(api, "me", clock)
    running = await store.claim(fresh("me", "running"))
    assert running is not None
    kube.faults.latency(0.2, verb="create", resource="coordination.k8s.io/leases")
    creating = [asyncio.create_task(store.claim(fresh("me", f"new-{k}"))) for k in range(8)]
    await asyncio.sleep(0.05)
    began = time.monotonic()
    running.reports[Report.STARTED] = Delivery.SENT
    await store.save(running)  # not behind 8 creations of 0.2 s on 4 threads (>= 0.4 s)
    assert time.monotonic() - began < 0.3
    assert all(c is not None for c in await asyncio.gather(*creating))


async def test_the_heartbeat_goes_before_every_other_waiting_request(
    api: kube_client.KubeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a burst of finishing events (whose claim writes are urgent) the heartbeat must still be
    renewed within its lease, or other replicas take this one's claims over for nothing."""
    from jes.util import gates

    levels: list[int | None] = []
    holder = ledger(api, "a", Clock())

    async def beat() -> None:
        levels.append(gates.level_now())

    monkeypatch.setattr(holder, "_beat", beat)
    monkeypatch.setattr(holder, "renew_interval_s", 0.0)
    await holder.start()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await holder.maintain()
    assert len(levels) >= 2 and set(levels) == {gates.URGENT} and gates.level_now() is None


async def _dead_replicas_claims(api: kube_client.KubeApi, clock: Clock, count: int) -> LeaseLedger:
    """``count`` claims of a replica that stopped without handing them over; the replica that sweeps."""
    dead, alive = ledger(api, "dead", clock), ledger(api, "alive", clock)
    await dead.start()
    for k in range(count):
        assert await dead.claim(fresh("dead", f"e-{k}")) is not None
    await dead.close()
    await alive.start()
    assert await alive.resumable() == []  # (first sighting)
    clock.now += 16
    return alive


async def test_a_sweep_reads_the_claims_a_page_at_a_time(
    kube: FakeKube, api: kube_client.KubeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten thousand open claims are never one answer (nor all in memory at once): ``limit``/``continue``."""
    monkeypatch.setattr(kubelist, "PAGE", 2)
    alive = await _dead_replicas_claims(api, Clock(), 5)
    lists = kube.request_count("list")
    taken = await alive.resumable()
    assert sorted(c.event_id for c in taken) == [f"e-{k}" for k in range(5)]
    assert all(c.holder == "alive" for c in taken)
    assert kube.request_count("list") - lists == 3 + 1  # three pages of claims, one of heartbeats


async def test_a_sweep_whose_continue_token_expired_lists_again_and_takes_each_claim_once(
    kube: FakeKube, api: kube_client.KubeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """etcd compacted the revision of the list's first page: 410 Expired, as kube-apiserver answers;
    the list starts again (its first page repeats) and every claim is taken once."""
    monkeypatch.setattr(kubelist, "PAGE", 2)
    alive = await _dead_replicas_claims(api, Clock(), 5)
    send, compacted = alive._send, []

    async def compacting(method: str, path: str, verb: str, **options: Any) -> Any:
        answer = await send(method, path, verb, **options)
        if verb == "list" and "continue" not in options["query"] and not compacted:
            compacted.append(await alive.start())  # a write after the first page ...
            kube.expire_watches("leases", close=False)  # ... and etcd compacts past its revision
        return answer

    monkeypatch.setattr(alive, "_send", compacting)
    lists, updates = kube.request_count("list"), kube.request_count("update")
    taken = await alive.resumable()
    assert sorted(c.event_id for c in taken) == [f"e-{k}" for k in range(5)]
    # the first page, the heartbeats, 410 for the second, the first page again and the other two
    assert kube.request_count("list") - lists == 6
    assert kube.request_count("update") - updates == 5 + 1  # each claim taken once (and one heartbeat)


async def test_a_continue_token_that_keeps_expiring_gives_the_claims_taken_so_far(
    kube: FakeKube, api: kube_client.KubeApi, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The first page's claims were taken (written: this replica holds them) before the list failed:
    they are worked on, not left held by a replica that does nothing with them."""
    monkeypatch.setattr(kubelist, "PAGE", 2)
    alive = await _dead_replicas_claims(api, Clock(), 5)
    send = alive._send

    async def always_compacting(method: str, path: str, verb: str, **options: Any) -> Any:
        answer = await send(method, path, verb, **options)
        if verb == "list" and "continue" not in options["query"]:
            await alive.start()
            kube.expire_watches("leases", close=False)
        return answer

    monkeypatch.setattr(alive, "_send", always_compacting)
    taken = await alive.resumable()
    first_page = sorted((f"e-{k}" for k in range(5)), key=alive.claim_name)[:2]  # (in the server's key order)
    assert sorted(c.event_id for c in taken) == sorted(first_page) and all(c.holder == "alive" for c in taken)
    assert "listing the open claims failed after 2 were taken" in caplog.text and "410 Expired" in caplog.text


async def test_the_routine_limit_learns_from_writes_but_not_from_lists(api: kube_client.KubeApi) -> None:
    """A list takes as long as it is long (a sweep's page of 500 claims against a heartbeat list of
    one): its round trip says nothing about the API server's queue."""
    clock = Clock()
    store = ledger(api, "me", clock)
    await store.start()
    assert await store.claim(fresh("me")) is not None
    await store.resumable()  # (a list of the open claims)
    direct = api._direct_http()
    assert direct is not None and direct.transport._slots.routine is not None
    kinds = set(direct.transport._slots.routine._kinds)
    assert "create coordination.k8s.io/leases" in kinds
    assert not any(kind.startswith("list") for kind in kinds), kinds
