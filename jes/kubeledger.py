"""The crash-safety ledger in Kubernetes: one Lease per taken event, shared by all replicas.

Claim objects live in jes's own namespace (``K8S_NAMESPACE``) as ``coordination.k8s.io/v1``
Leases named after the executor and the event (``jes-claim-<hash>``). The Lease's holder is the
replica working on the event; the :class:`~jes.ledger.Claim` record (event, reports sent, tasks
done) is kept in an annotation and every change is written with
the Lease's ``resourceVersion``, so two replicas can never both believe they own an event.

Each replica also keeps a heartbeat Lease (``jes-holder-<hash>``) renewed every
``renew_interval_s``. A claim whose holder's heartbeat is missing or older than
``holder_timeout_s`` is taken over by whichever replica sees the event next (or by a periodic
sweep): it resumes the work — adopting the Jobs by their deterministic names and checking unsent
reports against the datastore — so nothing is lost when a pod dies and nothing is done twice.

Done claims are kept for ``keep_done_s`` (a late poll may still return the event) and then
deleted by the sweep. RBAC (jes's namespace): ``coordination.k8s.io/leases``: create, get, list,
update, delete.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from jes import errors, ledger, retry
from jes.runner import kube_client
from jes.settings import Settings

logger = logging.getLogger(__name__)

RECORD_ANNOTATION = "jes.keptn.sh/claim"
CLAIM_LABEL = "jes.keptn.sh/claim"
EXECUTOR_LABEL = "jes.keptn.sh/executor"
MANAGED_BY = "app.kubernetes.io/managed-by"
Obj = dict[str, Any]


def _digest(*parts: str, length: int = 40) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:length]


def _micro_time(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: str | None) -> float:
    if not text:
        return 0.0
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


class LeaseLedger:
    def __init__(
        self,
        api: kube_client.KubeApi | Callable[[], kube_client.KubeApi],
        *,
        namespace: str,
        executor_id: str,
        holder: str,
        managed_by: str = "job-executor-service",
        renew_interval_s: float = 10.0,
        holder_timeout_s: float = 30.0,
        keep_done_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._api_source = api
        self.api: kube_client.KubeApi | None = api if isinstance(api, kube_client.KubeApi) else None
        self.namespace = namespace
        self.executor_id = executor_id
        self.holder = holder
        self.managed_by = managed_by
        self.renew_interval_s = renew_interval_s
        self.holder_timeout_s = holder_timeout_s
        self.keep_done_s = keep_done_s
        self.clock = clock
        self._executor_label = _digest(executor_id, length=40)
        self._active: set[str] = set()
        self._renewer: asyncio.Task[None] | None = None

    @classmethod
    def from_runner(cls, runner: Any, settings: Settings) -> LeaseLedger:
        """A ledger sharing the kubernetes runner's client and thread pool (available once the
        runner has started, which the service does first)."""

        def api() -> kube_client.KubeApi:
            return kube_client.KubeApi(
                runner.api_client,
                executor=runner.executor,
                backoff=retry.Backoff((0.2, 0.5, 1.0, 2.0, 4.0)),
                request_timeout_s=settings.http_timeout_s,
            )

        return cls(
            api,
            namespace=settings.k8s_namespace,
            executor_id=settings.executor_id,
            holder=settings.k8s_pod_name,
            managed_by=settings.full_deployment_name,
        )

    # -- names -----------------------------------------------------------------------------------

    def claim_name(self, event_id: str) -> str:
        return f"jes-claim-{_digest(self.executor_id, event_id)}"

    def holder_name(self, holder: str) -> str:
        return f"jes-holder-{_digest(self.executor_id, holder)}"

    def _labels(self, kind: str) -> dict[str, str]:
        return {MANAGED_BY: self.managed_by, CLAIM_LABEL: kind, EXECUTOR_LABEL: self._executor_label}

    # -- calls -------------------------------------------------------------------------------------

    def _path(self, name: str = "") -> str:
        base = f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"
        return f"{base}/{name}" if name else base

    async def _send(self, method: str, path: str, verb: str, **kwargs: Any) -> Obj:
        if self.api is None:
            raise errors.StateError("the lease ledger is used before start()")
        return await self.api.send(
            method, path, verb=verb, resource="coordination.k8s.io/leases", namespace=self.namespace, **kwargs
        )

    async def _create(self, body: Obj) -> Obj:
        return await self._send("POST", self._path(), "create", body=body)

    async def _read(self, name: str) -> Obj:
        return await self._send("GET", self._path(name), "get")

    async def _replace(self, name: str, body: Obj) -> Obj:
        return await self._send("PUT", self._path(name), "update", body=body)

    async def _delete(self, name: str) -> None:
        with contextlib.suppress(errors.KubeNotFoundError):
            await self._send("DELETE", self._path(name), "delete")

    async def _list(self, kind: str) -> list[Obj]:
        selector = f"{CLAIM_LABEL}={kind},{EXECUTOR_LABEL}={self._executor_label}"
        result = await self._send("GET", self._path(), "list", query={"labelSelector": selector})
        items: list[Obj] = result.get("items", [])
        return items

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.api is None and callable(self._api_source):
            self.api = self._api_source()
        await self._beat()
        self._renewer = asyncio.create_task(self._renew_forever(), name="jes-ledger-heartbeat")

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        # Claims released at shutdown become free for other replicas at once.
        with contextlib.suppress(errors.KubeError):
            await self._delete(self.holder_name(self.holder))

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.renew_interval_s)
            try:
                await self._beat()
            except errors.KubeError as exc:
                logger.warning("renewing jes's heartbeat lease failed: %s", exc)

    async def _beat(self) -> None:
        name = self.holder_name(self.holder)
        now = _micro_time(self.clock())
        body: Obj = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "labels": self._labels("holder")},
            "spec": {
                "holderIdentity": self.holder,
                "leaseDurationSeconds": int(self.holder_timeout_s),
                "renewTime": now,
                "acquireTime": now,
            },
        }
        try:
            await self._create(body)
        except errors.KubeConflictError:
            current = await self._read(name)
            current["spec"]["renewTime"] = now
            current["spec"]["holderIdentity"] = self.holder
            with contextlib.suppress(errors.KubeConflictError):
                await self._replace(name, current)

    async def _holder_alive(self, holder: str) -> bool:
        if holder == self.holder:
            return True
        try:
            lease = await self._read(self.holder_name(holder))
        except errors.KubeNotFoundError:
            return False
        spec = lease.get("spec", {})
        duration = float(spec.get("leaseDurationSeconds") or self.holder_timeout_s)
        return _parse_time(spec.get("renewTime")) + duration > self.clock()

    # -- claims ----------------------------------------------------------------------------------

    def _body(self, claim: ledger.Claim) -> Obj:
        now = _micro_time(self.clock())
        metadata: Obj = {
            "name": self.claim_name(claim.event_id),
            "labels": self._labels("event"),
            "annotations": {RECORD_ANNOTATION: json.dumps(claim.to_json(), separators=(",", ":"))},
        }
        if claim.version:
            metadata["resourceVersion"] = claim.version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {"holderIdentity": claim.holder, "renewTime": now, "acquireTime": now},
        }

    @staticmethod
    def _claim_of(lease: Obj) -> ledger.Claim:
        metadata = lease.get("metadata", {})
        try:
            record = json.loads(metadata.get("annotations", {})[RECORD_ANNOTATION])
            return ledger.Claim.from_json(record, version=str(metadata.get("resourceVersion", "")))
        except (KeyError, ValueError, TypeError) as exc:
            raise errors.StateError(f"claim lease {metadata.get('name')} has no readable record: {exc}") from exc

    async def claim(self, event: Mapping[str, Any]) -> ledger.Claim | None:
        event_id = str(event["id"])
        if event_id in self._active:
            return None
        fresh = ledger.Claim(event_id=event_id, event=dict(event), holder=self.holder)
        try:
            created = await self._create(self._body(fresh))
        except errors.KubeConflictError:
            return await self._take_existing(event_id)
        fresh.version = str(created["metadata"].get("resourceVersion", ""))
        self._active.add(event_id)
        return fresh

    async def _take_existing(self, event_id: str) -> ledger.Claim | None:
        try:
            lease = await self._read(self.claim_name(event_id))
        except errors.KubeNotFoundError:
            return None  # deleted meanwhile (garbage collected): the event is done
        return await self._take(lease)

    async def _take(self, lease: Obj) -> ledger.Claim | None:
        claim = self._claim_of(lease)
        if claim.done or claim.event_id in self._active:
            return None
        if claim.holder != self.holder:
            if await self._holder_alive(claim.holder):
                return None
            logger.info("taking over event %s from %s (no heartbeat)", claim.event_id, claim.holder)
            claim.holder = self.holder
            try:
                await self.save(claim)
            except errors.StateError:
                return None  # another replica took it first
        self._active.add(claim.event_id)
        return claim

    async def save(self, claim: ledger.Claim) -> None:
        name = self.claim_name(claim.event_id)
        try:
            updated = await self._replace(name, self._body(claim))
        except errors.KubeConflictError as exc:
            self._active.discard(claim.event_id)
            raise errors.StateError(
                f"claim {name} of event {claim.event_id} was changed by another replica; stopping work on it"
            ) from exc
        except errors.KubeError as exc:
            raise errors.StateError(f"cannot record progress of event {claim.event_id}: {exc}") from exc
        claim.version = str(updated["metadata"].get("resourceVersion", ""))

    async def complete(self, claim: ledger.Claim) -> None:
        claim.done, claim.done_at = True, self.clock()
        try:
            await self.save(claim)
        finally:
            self._active.discard(claim.event_id)

    async def release(self, claim: ledger.Claim) -> None:
        self._active.discard(claim.event_id)

    async def resumable(self) -> list[ledger.Claim]:
        """Open claims of this executor whose holder is this replica or dead; done ones expire."""
        claims = []
        for lease in await self._list("event"):
            try:
                record = self._claim_of(lease)
            except errors.StateError as exc:
                logger.warning("%s", exc)
                continue
            if record.done:
                if record.done_at and self.clock() - record.done_at > self.keep_done_s:
                    await self._delete(lease["metadata"]["name"])
                continue
            taken = await self._take(lease)
            if taken is not None:
                claims.append(taken)
        return claims
