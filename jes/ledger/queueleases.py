"""Concurrency queues (:mod:`jes.ledger.slots`) as Leases, beside the claims of
:class:`jes.ledger.leases.LeaseLedger`: one Lease per queue (``jes-queue-<hash>``, labelled
``queue``), the record in an annotation, every write conditional on the ``resourceVersion`` read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from jes import errors
from jes.ledger.slots import Queue

QUEUE_ANNOTATION = "jes.keptn.sh/queue"
#: Kubernetes refuses an object whose annotations add up to more than 256 KiB; stay well below.
MAX_RECORD_BYTES = 200 * 1024
Obj = dict[str, Any]
Send = Callable[..., Awaitable[Obj]]


class QueueLeases:
    def __init__(
        self, send: Send, path: Callable[[str], str], labels: dict[str, str], lease_name: Callable[[str], str]
    ) -> None:
        self._send = send
        self._path = path
        self._labels = labels
        self._lease_name = lease_name

    async def read(self, name: str) -> Queue | None:
        try:
            lease = await self._send("GET", self._path(self._lease_name(name)), "get")
        except errors.KubeNotFoundError:
            return None
        except errors.KubeError as exc:
            raise errors.StateError(f"cannot read the concurrency queue {name!r}: {exc}") from exc
        metadata = lease.get("metadata", {})
        text = (metadata.get("annotations") or {}).get(QUEUE_ANNOTATION)
        if not isinstance(text, str):
            raise errors.StateError(f"concurrency queue lease {metadata.get('name')} has no record")
        return Queue.loads(name, text, version=str(metadata.get("resourceVersion", "")))

    async def write(self, queue: Queue) -> bool:
        """Create (version "") or update the queue's Lease; a 409 (or 404: deleted meanwhile) means
        another writer was first. A retried write whose first attempt was applied also answers 409:
        the caller reads again and finds its change there."""
        record = queue.dumps()
        if len(record.encode()) > MAX_RECORD_BYTES:
            raise errors.StateError(
                f"the concurrency queue {queue.name!r} has {len(queue.entries)} events, more than a Lease can hold"
            )
        metadata: Obj = {
            "name": self._lease_name(queue.name),
            "labels": dict(self._labels),
            "annotations": {QUEUE_ANNOTATION: record},
        }
        if queue.version:
            metadata["resourceVersion"] = queue.version
        body: Obj = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": {}}
        try:
            if queue.version:
                written = await self._send("PUT", self._path(metadata["name"]), "update", body=body)
            else:
                written = await self._send("POST", self._path(""), "create", body=body)
        except (errors.KubeConflictError, errors.KubeNotFoundError):
            return False
        except errors.KubeError as exc:
            raise errors.StateError(f"cannot write the concurrency queue {queue.name!r}: {exc}") from exc
        queue.version = str(written["metadata"].get("resourceVersion", ""))
        return True

    async def delete(self, queue: Queue) -> bool:
        """Delete the Lease if it is still at ``queue.version`` (a precondition); False: changed."""
        options = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"resourceVersion": queue.version}}
        try:
            await self._send("DELETE", self._path(self._lease_name(queue.name)), "delete", body=options)
        except errors.KubeConflictError:
            return False
        except errors.KubeError as exc:
            if isinstance(exc, errors.KubeNotFoundError):
                return True
            raise errors.StateError(f"cannot delete the concurrency queue {queue.name!r}: {exc}") from exc
        return True
