"""The ledger in Kubernetes: one Lease per taken event, shared by every replica of an executor.

Claims live in jes's own namespace (``K8S_NAMESPACE``) as ``coordination.k8s.io/v1`` Leases
named after the executor and the event (``jes-claim-<hash>``), labelled ``open`` or ``done``. The
:class:`~jes.ledger.claim.Claim` record (a few hundred bytes: never the event) is an annotation;
every write carries the ``resourceVersion`` that was read, so a replica that lost a claim finds
out by a 409 on its next write (:class:`jes.errors.ClaimLost`) — before it reports anything.

Each replica renews a heartbeat Lease (``jes-holder-<hash>``) every ``renew_interval_s``. Another
replica takes a claim over only when neither the holder's heartbeat nor the claim itself changed
for ``lease_duration_s`` *as observed on its own monotonic clock* (:mod:`jes.ledger.liveness`): a
frozen or partitioned holder is replaced, clock skew between nodes plays no part. A claim released
at shutdown has no holder and is free at once.

Concurrency queues (``actions[].concurrency``, :mod:`jes.ledger.slots`) are Leases too
(``jes-queue-<hash>``, labelled ``queue``), written with the same ``resourceVersion`` condition.

RBAC (jes's namespace): ``coordination.k8s.io/leases``: create, get, list, update, delete.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kubernetes.client

from jes import errors
from jes.clients import kube as kube_client
from jes.clients import kubelist
from jes.ledger.claim import Claim
from jes.ledger.leasenames import RECORD_ANNOTATION, claim_of, digest, micro_time
from jes.ledger.liveness import Liveness
from jes.ledger.queueleases import QueueLeases
from jes.ledger.slots import Queue
from jes.settings import Settings
from jes.util import gates, retry

logger = logging.getLogger(__name__)

CLAIM_LABEL = "jes.keptn.sh/claim"
STATE_LABEL = "jes.keptn.sh/state"
EXECUTOR_LABEL = "jes.keptn.sh/executor"
MANAGED_BY = "app.kubernetes.io/managed-by"
#: Kubernetes refuses an object whose annotations add up to more than 256 KiB; stay well below.
MAX_RECORD_BYTES = 200 * 1024
Obj = dict[str, Any]
#: Claims created at once: a quarter of the ledger's connections (``kube.DEFAULT_POOL_SIZE``), the rest
#: stay free for the writes of events already running and the heartbeat.
CREATES_AT_ONCE = 8


class LeaseLedger:
    def __init__(
        self,
        api: kube_client.KubeApi,
        *,
        namespace: str,
        executor_id: str,
        holder: str,
        managed_by: str = "job-executor-service",
        renew_interval_s: float = 5.0,
        lease_duration_s: float = 15.0,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        owned_pool: ThreadPoolExecutor | None = None,
    ) -> None:
        self._owned_pool = owned_pool
        self.api = api
        self.namespace = namespace
        self.executor_id = executor_id
        self.holder = holder
        self.managed_by = managed_by
        self.renew_interval_s = renew_interval_s
        self.lease_duration_s = lease_duration_s
        self._wall_clock = wall_clock
        self._monotonic = monotonic
        self._liveness = Liveness(lease_duration_s, clock=monotonic)
        self._stale: Liveness | None = None
        self._executor_label = digest(executor_id, length=40)
        self._queues = QueueLeases(self._send, self._path, self._labels("queue"), self.queue_name)
        # New claims use at most half of the ledger's threads: under a burst the writes of events
        # already running (and the heartbeat) are not queued behind hundreds of creations
        self._creating = asyncio.Semaphore(CREATES_AT_ONCE)

    @classmethod
    def from_settings(
        cls, api_client: kubernetes.client.ApiClient, settings: Settings, **overrides: Any
    ) -> LeaseLedger:
        """A ledger on the process's Kubernetes client, with connections (and threads, where the
        client's own path is used) of its own: a runner busy reading logs must not delay the
        heartbeat until other replicas take this one's events over."""
        pool = ThreadPoolExecutor(4, thread_name_prefix="jes-ledger")
        api = kube_client.KubeApi(
            api_client,
            executor=pool,
            backoff=overrides.pop("backoff", retry.Backoff((0.2, 0.5, 1.0, 2.0, 4.0))),
            request_timeout_s=settings.http_timeout_s,
        )
        options: dict[str, Any] = {
            "owned_pool": pool,
            "namespace": settings.k8s_namespace,
            "executor_id": settings.executor_id,
            "holder": settings.k8s_pod_name,
            "managed_by": settings.full_deployment_name,
            "renew_interval_s": settings.lease_renew_s,
            "lease_duration_s": settings.lease_duration_s,
        }
        return cls(api, **(options | overrides))

    @property
    def fence_s(self) -> float:
        """How long a successful write proves that this replica holds a claim: no other replica
        can take it over sooner than ``lease_duration_s`` after it, so a third of that is safe."""
        return self.lease_duration_s / 3

    # -- names -----------------------------------------------------------------------------------

    def claim_name(self, event_id: str) -> str:
        return f"jes-claim-{digest(self.executor_id, event_id)}"

    def queue_name(self, queue: str) -> str:
        return f"jes-queue-{digest(self.executor_id, queue)}"

    def holder_name(self, holder: str) -> str:
        return f"jes-holder-{digest(self.executor_id, holder)}"

    def _labels(self, kind: str, state: str | None = None) -> dict[str, str]:
        labels = {MANAGED_BY: self.managed_by, CLAIM_LABEL: kind, EXECUTOR_LABEL: self._executor_label}
        if state is not None:
            labels[STATE_LABEL] = state
        return labels

    # -- calls -------------------------------------------------------------------------------------

    def _path(self, name: str = "") -> str:
        base = f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"
        return f"{base}/{name}" if name else base

    async def _send(self, method: str, path: str, verb: str, **kwargs: Any) -> Obj:
        return await self.api.send(
            method, path, verb=verb, resource="coordination.k8s.io/leases", namespace=self.namespace, **kwargs
        )

    async def _list(self, selector: str) -> list[Obj]:
        return [lease async for page in self._pages(selector) for lease in page]

    def _pages(self, selector: str) -> AsyncIterator[list[Obj]]:
        """The matching Leases a page at a time: a sweep over ten thousand claims holds one page."""
        return kubelist.pages(
            lambda query: self._send("GET", self._path(), "list", query=query), {"labelSelector": selector}
        )

    async def _delete(self, name: str) -> None:
        with contextlib.suppress(errors.KubeNotFoundError):
            await self._send("DELETE", self._path(name), "delete")

    # -- lifecycle and heartbeat ------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._urgent_beat()
        except errors.KubeError as exc:  # maintain() keeps trying; claims need no heartbeat to be made
            if not isinstance(exc, errors.Temporary):
                raise errors.StateError(f"cannot write jes's heartbeat Lease: {exc}") from exc
            logger.warning("writing jes's heartbeat lease failed (retried every %.0fs): %s", self.renew_interval_s, exc)

    async def maintain(self) -> None:
        """Forever: renew this replica's heartbeat (the service runs it supervised)."""
        while True:
            await asyncio.sleep(self.renew_interval_s)
            try:
                await self._urgent_beat()
            except errors.KubeError as exc:
                logger.warning("renewing jes's heartbeat lease failed: %s", exc)

    async def close(self, *, abandon: bool = False) -> None:
        if not abandon:
            with contextlib.suppress(errors.KubeError):
                await self._delete(self.holder_name(self.holder))
        if self._owned_pool is not None:  # (its api too: from_settings made both)
            await self.api.aclose()
            self._owned_pool.shutdown(wait=False, cancel_futures=True)

    async def _urgent_beat(self) -> None:
        """The heartbeat before every other request waiting for a connection: under a burst of
        finishing events (which go first) it must still be renewed well within its lease, or other
        replicas would take this one's claims over for nothing."""
        with gates.urgent(gates.URGENT):
            await self._beat()

    async def _beat(self) -> None:
        name = self.holder_name(self.holder)
        now = micro_time(self._wall_clock())
        spec = {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": max(1, round(self.lease_duration_s)),
            "renewTime": now,  # for people reading the Lease; never compared with a clock
        }
        body: Obj = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "labels": self._labels("holder")},
            "spec": {**spec, "acquireTime": now},
        }
        try:
            await self._send("POST", self._path(), "create", body=body)
        except errors.KubeConflictError:
            current = await self._send("GET", self._path(name), "get")
            current["spec"] = {**current.get("spec", {}), **spec}
            with contextlib.suppress(errors.KubeConflictError):  # a concurrent beat of ours: fine
                await self._send("PUT", self._path(name), "update", body=current)

    async def _heartbeats(self) -> dict[str, str]:
        """holder → resourceVersion of its heartbeat Lease."""
        beats = {}
        for lease in await self._list(f"{CLAIM_LABEL}=holder,{EXECUTOR_LABEL}={self._executor_label}"):
            holder = str((lease.get("spec") or {}).get("holderIdentity") or "")
            beats[holder] = str(lease["metadata"].get("resourceVersion", ""))
        return beats

    # -- claims ----------------------------------------------------------------------------------

    def _body(self, claim: Claim) -> Obj:
        record = claim.dumps()
        if len(record.encode()) > MAX_RECORD_BYTES:
            raise errors.StateError(
                f"the claim record of event {claim.event_id} has {len(record.encode())} bytes, more than the "
                f"{MAX_RECORD_BYTES} a Lease annotation may safely hold (too many tasks in one action?)"
            )
        metadata: Obj = {
            "name": self.claim_name(claim.event_id),
            "labels": self._labels("event", "done" if claim.done else "open"),
            "annotations": {RECORD_ANNOTATION: record},
        }
        if claim.version:
            metadata["resourceVersion"] = claim.version
        spec: Obj = {"renewTime": micro_time(self._wall_clock())}
        if claim.holder:
            spec["holderIdentity"] = claim.holder
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}

    async def claim(self, claim: Claim) -> Claim | None:
        event_id = claim.event_id
        try:
            async with self._creating:
                sent_at = self._monotonic()
                created = await self._send("POST", self._path(), "create", body=self._body(claim))
        except errors.KubeConflictError:
            return await self._take_existing(claim)
        except errors.KubeError as exc:
            raise errors.StateError(f"cannot record the claim of event {event_id}: {exc}") from exc
        claim.version = str(created["metadata"].get("resourceVersion", ""))
        claim.saved_at = sent_at
        return claim

    async def read(self, event_id: str) -> Claim | None:
        """The claim on record (any holder's), without taking it."""
        try:
            lease = await self._send("GET", self._path(self.claim_name(event_id)), "get")
        except errors.KubeNotFoundError:
            return None
        except errors.KubeError as exc:
            raise errors.StateError(f"cannot read the claim of event {event_id}: {exc}") from exc
        return claim_of(lease)

    async def _take_existing(self, fresh: Claim) -> Claim | None:
        try:
            lease = await self._send("GET", self._path(self.claim_name(fresh.event_id)), "get")
        except errors.KubeNotFoundError:
            return None  # forgotten meanwhile: it was done
        except errors.KubeError as exc:
            raise errors.StateError(f"cannot read the claim of event {fresh.event_id}: {exc}") from exc
        taken = await self._take(claim_of(lease), await self._heartbeats())
        if taken is not None:
            taken.event = fresh.event
        return taken

    def _holder_alive(self, claim: Claim, heartbeats: dict[str, str]) -> bool:
        if claim.holder == self.holder:
            return True
        if not claim.holder:
            return False  # released at shutdown
        # both observations are recorded, so each keeps its own timer
        beat = self._liveness.alive(f"holder/{claim.holder}", heartbeats.get(claim.holder, ""))
        progress = self._liveness.alive(f"claim/{claim.event_id}", claim.version)
        return beat or progress

    async def _take(self, claim: Claim, heartbeats: dict[str, str]) -> Claim | None:
        if claim.done:
            return None
        if claim.holder != self.holder:
            if self._holder_alive(claim, heartbeats):
                return None
            logger.info(
                "taking over event %s from %s (no progress seen for %.0fs)",
                claim.event_id,
                claim.holder or "a stopped replica",
                self.lease_duration_s,
            )
            claim.holder = self.holder
            try:
                await self.save(claim)
            except errors.StateError:
                return None  # another replica was quicker, or the holder moved on after all
            self._liveness.forget(f"claim/{claim.event_id}")
        return claim

    async def save(self, claim: Claim) -> None:
        """A conditional write. ``saved_at`` is when the request was *sent*: the write proves the
        claim was ours no later than that."""
        name = self.claim_name(claim.event_id)
        body = self._body(claim)
        sent_at = self._monotonic()
        try:
            updated: Obj | None = await self._send("PUT", self._path(name), "update", body=body)
        except errors.KubeConflictError as exc:
            updated = await self._own_write_applied(name, body)
            if updated is None:
                raise errors.ClaimLost(
                    f"the claim of event {claim.event_id} was changed by another replica; this one stops working on it"
                ) from exc
        except errors.KubeNotFoundError as exc:
            raise errors.ClaimLost(f"the claim of event {claim.event_id} was deleted; stopping work on it") from exc
        except errors.KubeError as exc:
            raise errors.StateError(f"cannot record progress of event {claim.event_id}: {exc}") from exc
        assert updated is not None
        claim.version = str(updated["metadata"].get("resourceVersion", ""))
        claim.saved_at = sent_at

    async def _own_write_applied(self, name: str, body: Obj) -> Obj | None:
        """After a 409: the Lease, if it holds exactly what this replica wrote — a retried request
        whose first attempt was applied although its answer was lost — else None."""
        try:
            current = await self._send("GET", self._path(name), "get")
        except errors.KubeError:
            return None
        mine = body["metadata"]["annotations"][RECORD_ANNOTATION]
        theirs = (current.get("metadata", {}).get("annotations") or {}).get(RECORD_ANNOTATION)
        return current if theirs == mine else None

    async def release(self, claim: Claim, *, handover: bool = False) -> None:
        """With ``handover`` the claim is marked free for any replica at once (a clean shutdown)."""
        if handover and not claim.done and claim.holder == self.holder:
            claim.holder = ""
            with contextlib.suppress(errors.StateError):
                await self.save(claim)

    async def resumable(self, *, busy: Collection[str] = ()) -> list[Claim]:
        selector = f"{CLAIM_LABEL}=event,{EXECUTOR_LABEL}={self._executor_label},{STATE_LABEL}=open"
        working = {self.claim_name(event_id): event_id for event_id in busy}
        heartbeats: dict[str, str] | None = None  # (read once a claim of another replica is seen)
        claims: dict[str, Claim] = {}
        events, holders = set(), set()
        try:  # (a list that fails part-way gives the claims already taken: they are held now)
            async for page in self._pages(selector):
                for lease in page:
                    holders.add(self._holder_of(lease))
                    event_id = working.get(lease["metadata"].get("name", ""))
                    if event_id is not None and self._holder_of(lease) == self.holder:
                        events.add(event_id)  # at work here: its record need not be read (a thousand in a burst)
                        continue
                    try:
                        claim = claim_of(lease)
                    except errors.StateError as exc:
                        logger.warning("%s", exc)
                        continue
                    events.add(claim.event_id)
                    if heartbeats is None and self._needs_heartbeats(lease):
                        heartbeats = await self._heartbeats()
                    if claim.event_id not in claims and (taken := await self._take(claim, heartbeats or {})):
                        claims[claim.event_id] = taken
        except errors.KubeError as exc:
            logger.warning("listing the open claims failed after %d were taken: %s", len(claims), exc)
            return list(claims.values())  # (no timer forgotten on a partial view)
        # forget only what is no longer there; a holder without a heartbeat keeps its timer
        holders |= set(heartbeats or {})
        self._liveness.keep_only({f"holder/{h}" for h in holders} | {f"claim/{e}" for e in events})
        return list(claims.values())

    @staticmethod
    def _holder_of(lease: Obj) -> str:
        return str((lease.get("spec") or {}).get("holderIdentity") or "")

    def _needs_heartbeats(self, lease: Obj) -> bool:
        holder = self._holder_of(lease)
        return bool(holder) and holder != self.holder

    async def forget_stale_heartbeats(self, *, unchanged_for_s: float) -> int:
        """Delete heartbeat Leases of other replicas seen unchanged for ``unchanged_for_s`` (pods
        that died without a clean shutdown); how many. Judged on this process's own clock."""
        forgotten = 0
        for lease in await self._list(f"{CLAIM_LABEL}=holder,{EXECUTOR_LABEL}={self._executor_label}"):
            holder = self._holder_of(lease)
            if holder == self.holder:
                continue
            if self._stale is None or self._stale.duration_s != unchanged_for_s:
                self._stale = Liveness(unchanged_for_s, clock=self._monotonic)
            version = str(lease["metadata"].get("resourceVersion", ""))
            if self._stale.alive(f"holder/{holder}", version):
                continue
            await self._delete(lease["metadata"]["name"])
            self._stale.forget(f"holder/{holder}")
            forgotten += 1
        return forgotten

    async def done_claims(self) -> list[Claim]:
        selector = f"{CLAIM_LABEL}=event,{EXECUTOR_LABEL}={self._executor_label},{STATE_LABEL}=done"
        claims = []
        for lease in await self._list(selector):
            try:
                claims.append(claim_of(lease))
            except errors.StateError as exc:
                logger.warning("%s", exc)
        return claims

    async def forget(self, claim: Claim) -> None:
        try:
            await self._send(
                "DELETE",
                self._path(self.claim_name(claim.event_id)),
                "delete",
                body={"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"resourceVersion": claim.version}},
            )
        except (errors.KubeNotFoundError, errors.KubeConflictError):
            pass  # gone already, or changed since it was read: the next sweep looks again

    # -- concurrency queues (:mod:`jes.ledger.slots`, :mod:`jes.ledger.queueleases`) ------------

    async def read_queue(self, name: str) -> Queue | None:
        return await self._queues.read(name)

    async def write_queue(self, queue: Queue) -> bool:
        return await self._queues.write(queue)

    async def delete_queue(self, queue: Queue) -> bool:
        return await self._queues.delete(queue)
