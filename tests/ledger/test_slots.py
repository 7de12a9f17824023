"""Concurrency queues in each ledger (memory, files, Leases on the fake Kubernetes API): arrival
order, slots handed on, compare-and-swap between two writers, and entries whose claim is done."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fakes.fake_kube import FakeKube
from jes import errors
from jes.clients import kube as kube_client
from jes.ledger import Claim, EventRef, FileLedger, MemoryLedger
from jes.ledger.leases import LeaseLedger
from jes.ledger.slots import Entry, Queue, QueueStore, Slots, admit, standing
from tests.conftest import k8s_valid
from tests.service.support import FAST

QUEUE = "my-project\0load-test\0dev"


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube() as fake:
        yield fake


@pytest.fixture(params=["memory", "files", "leases"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[QueueStore]:
    """Each ledger; its ``second`` attribute is another handle on the same records (a replica)."""
    if request.param == "memory":
        memory = MemoryLedger()
        yield memory
    elif request.param == "files":
        files = FileLedger(tmp_path)
        await files.start()
        yield files
        await files.close()
    else:
        fake = request.getfixturevalue("kube")
        pool = ThreadPoolExecutor(4)
        with fake.api_client() as client:
            api = kube_client.KubeApi(client, executor=pool, backoff=FAST, request_timeout_s=5)
            yield LeaseLedger(api, namespace="jes", executor_id="jes/-", holder="jes-0")
            await api.aclose()
        pool.shutdown()


async def open_claim(store: QueueStore, event_id: str) -> Claim:
    claim = Claim(ref=EventRef(id=event_id, type="sh.keptn.event.test.triggered"), holder="jes-0")
    await store.claim(claim)  # type: ignore[attr-defined]
    return claim


async def test_events_run_in_arrival_order_and_slots_pass_on(store: QueueStore) -> None:
    slots = Slots(store)
    first = await slots.enter(QUEUE, "a", 1)
    second = await slots.enter(QUEUE, "b", 1)
    third = await slots.enter(QUEUE, "c", 1)
    assert (first.holding, first.position) == (True, 0)
    assert (second.holding, second.position, second.checks) == (False, 1, ("a",))
    assert (third.holding, third.position, third.checks) == (False, 2, ("b",))
    assert (await slots.enter(QUEUE, "c", 1)).position == 2  # entering again keeps the place
    await slots.leave(QUEUE, "a", 1)
    assert (await slots.enter(QUEUE, "b", 1)).holding  # let in by the one that left
    assert (await slots.enter(QUEUE, "c", 1)).position == 1
    await slots.leave(QUEUE, "b", 1)
    await slots.leave(QUEUE, "c", 1)
    assert await store.read_queue(QUEUE) is None  # an empty queue leaves no record


async def test_a_limit_of_two_lets_two_hold(store: QueueStore) -> None:
    slots = Slots(store)
    holding = [(await slots.enter(QUEUE, e, 2)).holding for e in ("a", "b", "c")]
    assert holding == [True, True, False]
    await slots.leave(QUEUE, "b", 2)
    queue = await store.read_queue(QUEUE)
    assert queue is not None
    assert [(e.event_id, e.holding) for e in queue.entries] == [("a", True), ("c", True)]


async def test_two_writers_of_one_version_one_wins(store: QueueStore) -> None:
    """Compare-and-swap: both read the same version; the second write is refused and the
    record holds the first writer's change; entering concurrently loses nobody."""
    slots = Slots(store)
    await slots.enter(QUEUE, "a", 1)
    mine, theirs = await store.read_queue(QUEUE), await store.read_queue(QUEUE)
    assert mine is not None and theirs is not None
    mine.entries.append(Entry("b"))
    theirs.entries.append(Entry("c"))
    assert await store.write_queue(mine)
    assert not await store.write_queue(theirs)
    stored = await store.read_queue(QUEUE)
    assert stored is not None and [e.event_id for e in stored.entries] == ["a", "b"]
    assert not await store.delete_queue(theirs)  # a stale version cannot delete either
    await asyncio.gather(*(Slots(store).enter(QUEUE, f"e{i}", 1) for i in range(6)))
    stored = await store.read_queue(QUEUE)
    assert stored is not None and {e.event_id for e in stored.entries} == {"a", "b"} | {f"e{i}" for i in range(6)}
    assert sum(e.holding for e in stored.entries) == 1


async def test_a_new_queue_after_a_deleted_one_refuses_the_old_version(store: QueueStore) -> None:
    """No ABA: a writer that read the queue before it was emptied and created anew loses."""
    slots = Slots(store)
    await slots.enter(QUEUE, "a", 1)
    old = await store.read_queue(QUEUE)
    await slots.leave(QUEUE, "a", 1)
    await slots.enter(QUEUE, "b", 1)
    assert old is not None
    old.entries.append(Entry("x"))
    assert not await store.write_queue(old)


async def test_a_holder_whose_claim_is_done_or_gone_is_dropped(store: QueueStore) -> None:
    """A holder that ended without leaving (its claim done, or forgotten) is found stale by the
    first waiter; a holder whose claim is still open (its replica died: the claim will be taken
    over and resumed) keeps its slot."""
    slots = Slots(store)
    done = await open_claim(store, "done")
    await open_claim(store, "running")
    await open_claim(store, "waiter")
    done.mark_done()
    await store.save(done)  # type: ignore[attr-defined]
    for holder in ("done", "running", "forgotten"):  # "forgotten" has no claim at all
        assert (await slots.enter(QUEUE, holder, 3)).holding
    waiter = await slots.enter(QUEUE, "waiter", 3)
    behind = await slots.enter(QUEUE, "behind", 3)
    assert (waiter.position, behind.checks) == (1, ("waiter",))
    stale = await slots.stale(waiter.checks)
    assert sorted(stale) == ["done", "forgotten"]  # the first waiter checks the holders
    assert await slots.stale(behind.checks) == []  # the others the waiter ahead: it is open
    after = await slots.enter(QUEUE, "waiter", 3, gone=stale)
    assert after.holding  # "running" still holds; the ended ones freed their slots
    assert (await slots.enter(QUEUE, "behind", 3)).holding


async def test_entering_again_as_holder_keeps_the_slot_after_a_takeover(store: QueueStore) -> None:
    """Entries belong to events, not replicas: the replica that resumes the event finds it holding."""
    await Slots(store).enter(QUEUE, "a", 1)
    await Slots(store).enter(QUEUE, "b", 1)
    resumed = await Slots(store).enter(QUEUE, "a", 1)  # e.g. another replica, after a takeover
    assert resumed.holding
    assert not (await Slots(store).enter(QUEUE, "b", 1)).holding


async def test_the_two_replicas_of_a_lease_ledger_share_the_queue(kube: FakeKube) -> None:
    pool = ThreadPoolExecutor(4)
    with kube.api_client() as client:
        api = kube_client.KubeApi(client, executor=pool, backoff=FAST, request_timeout_s=5)
        first = LeaseLedger(api, namespace="jes", executor_id="jes/-", holder="jes-0")
        one = Slots(first)
        two = Slots(LeaseLedger(api, namespace="jes", executor_id="jes/-", holder="jes-1"))
        other = Slots(LeaseLedger(api, namespace="jes", executor_id="other/-", holder="jes-0"))
        assert (await one.enter(QUEUE, "a", 1)).holding
        assert (await two.enter(QUEUE, "b", 1)).position == 1
        assert (await other.enter(QUEUE, "c", 1)).holding  # another executor: its own queues
        await one.leave(QUEUE, "a", 1)
        assert (await two.enter(QUEUE, "b", 1)).holding
        queues = [q for q in kube.objects("leases", "jes") if q["metadata"]["name"].startswith("jes-queue-")]
        assert len(queues) == 2  # one per executor
        (lease,) = [q for q in queues if q["metadata"]["name"] == first.queue_name(QUEUE)]
        assert lease["metadata"]["labels"]["jes.keptn.sh/claim"] == "queue"
        k8s_valid({k: v for k, v in lease.items() if k != "status"})
        await api.aclose()
    pool.shutdown()


def test_admission_and_standing_rules() -> None:
    queue = Queue("q", [Entry("a", True), Entry("b"), Entry("c"), Entry("d")])
    admit(queue, 2)
    assert [e.holding for e in queue.entries] == [True, True, False, False]
    assert standing(queue, "d").position == 2
    assert standing(queue, "c").checks == ("a", "b")
    with pytest.raises(errors.StateError):
        standing(queue, "zz")


def test_a_record_of_another_version_is_refused() -> None:
    with pytest.raises(errors.StateError, match="unreadable"):
        Queue.loads("q", '{"v": 99, "queue": "q", "entries": []}')
    assert Queue.loads("q", Queue("q", [Entry("a", True)]).dumps()).entries == [Entry("a", True)]


async def test_a_queue_named_by_a_long_key_value_stays_small(store: QueueStore) -> None:
    """The key's value comes from the event (unbounded); the record shows only its head."""
    name = "p\0a\0" + "v" * 300_000
    slots = Slots(store)
    assert (await slots.enter(name, "a", 1)).holding
    assert (await slots.enter(name, "b", 1)).position == 1
    queue = await store.read_queue(name)
    assert queue is not None and queue.name == name and len(queue.dumps()) < 1000
    await slots.leave(name, "a", 1)
    assert (await slots.enter(name, "b", 1)).holding
