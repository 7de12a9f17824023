"""Claims as JSON files under ``<state_dir>/claims`` (the local runner; one process per folder).

Writes are atomic (temporary file, fsync, rename, fsync of the folder), so a ``kill -9`` at any
moment leaves either the old or the new record. A lock file keeps a second process away from the
folder, so no other writer can exist and every write is trivially fenced. Concurrency queues
(:mod:`jes.ledger.slots`) are files under ``<state_dir>/queues``, changed by compare-and-swap on a
revision stored in the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Collection
from pathlib import Path
from typing import IO

from jes import errors
from jes.ledger.claim import Claim, on_record
from jes.ledger.slots import Queue
from jes.util import fsutil


def claim_key(event_id: str) -> str:
    return hashlib.sha256(event_id.encode()).hexdigest()[:40]


class FileLedger:
    def __init__(self, state_dir: str | Path, *, holder: str = "local") -> None:
        self.root = Path(state_dir)
        self.dir = self.root / "claims"
        self.queue_dir = self.root / "queues"
        self.holder = holder
        self._lock_file: IO[str] | None = None
        self._queue_lock = threading.Lock()
        """Makes each compare-and-swap of a queue file atomic (the folder lock keeps other processes out)."""

    async def maintain(self) -> None:
        """Nothing to keep alive (one process): waits until cancelled."""
        await asyncio.Event().wait()

    async def start(self) -> None:
        await asyncio.to_thread(self._start)

    def _start(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.queue_dir.mkdir(exist_ok=True)
            lock = (self.root / "jes.lock").open("a")
        except OSError as exc:
            raise errors.StateError(f"cannot use JES_STATE_DIR={self.root}: {exc.strerror}") from exc
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            lock.close()
            raise errors.StateError(
                f"another jes process uses JES_STATE_DIR={self.root}; give each executor its own state directory"
            ) from exc
        self._lock_file = lock
        for leftover in [*self.dir.glob(".*.tmp"), *self.queue_dir.glob(".*.tmp")]:  # a write interrupted by kill -9
            with contextlib.suppress(OSError):
                leftover.unlink()

    async def close(self, *, abandon: bool = False) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _path(self, event_id: str) -> Path:
        return self.dir / f"{claim_key(event_id)}.json"

    async def claim(self, claim: Claim) -> Claim | None:
        existing = await asyncio.to_thread(self._read, self._path(claim.event_id))
        if existing is None:
            await self.save(claim)
        return on_record(existing, claim)

    async def read(self, event_id: str) -> Claim | None:
        return await asyncio.to_thread(self._read, self._path(event_id))

    async def save(self, claim: Claim) -> None:
        await asyncio.to_thread(self._write, self._path(claim.event_id), claim)
        claim.saved_at = time.monotonic()

    async def release(self, claim: Claim, *, handover: bool = False) -> None:
        return None  # one process: nothing to hand over

    async def resumable(self, *, busy: Collection[str] = ()) -> list[Claim]:
        return [c for c in await asyncio.to_thread(self._read_all) if not c.done and c.event_id not in busy]

    async def done_claims(self) -> list[Claim]:
        return [c for c in await asyncio.to_thread(self._read_all) if c.done]

    async def forget(self, claim: Claim) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(self._path(claim.event_id).unlink)

    # -- files -----------------------------------------------------------------------------------

    def _read(self, path: Path) -> Claim | None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise errors.StateError(f"cannot read claim {path}: {exc.strerror}") from exc
        try:
            return Claim.loads(text)
        except errors.StateError as exc:
            raise errors.StateError(f"claim {path}: {exc}") from exc

    def _read_all(self) -> list[Claim]:
        claims = []
        for path in sorted(self.dir.glob("*.json")):
            claim = self._read(path)
            if claim is not None:
                claims.append(claim)
        return claims

    def _write(self, path: Path, claim: Claim) -> None:
        try:
            fsutil.write_json_atomic(path, claim.to_json())
        except OSError as exc:
            raise errors.StateError(f"cannot write claim {path}: {exc.strerror}") from exc

    # -- concurrency queues (:mod:`jes.ledger.slots`): one file each, with a revision never used before -----

    def _queue_path(self, name: str) -> Path:
        return self.queue_dir / f"{claim_key(name)}.json"

    async def read_queue(self, name: str) -> Queue | None:
        return await asyncio.to_thread(self._read_queue, name)

    async def write_queue(self, queue: Queue) -> bool:
        return await asyncio.to_thread(self._swap_queue, queue, delete=False)

    async def delete_queue(self, queue: Queue) -> bool:
        return await asyncio.to_thread(self._swap_queue, queue, delete=True)

    def _read_queue(self, name: str) -> Queue | None:
        path = self._queue_path(name)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise errors.StateError(f"cannot read concurrency queue {path}: {exc.strerror}") from exc
        except ValueError as exc:
            raise errors.StateError(f"concurrency queue {path}: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("record"), str):
            raise errors.StateError(f"concurrency queue {path}: not a queue record")
        return Queue.loads(name, data["record"], version=str(data.get("revision", "")))

    def _swap_queue(self, queue: Queue, *, delete: bool) -> bool:
        path = self._queue_path(queue.name)
        with self._queue_lock:
            current = self._read_queue(queue.name)
            if (current.version if current is not None else "") != queue.version:
                return False
            try:
                if delete:
                    path.unlink(missing_ok=True)
                    return True
                revision = uuid.uuid4().hex  # never reused, also after a delete (no ABA)
                fsutil.write_json_atomic(path, {"revision": revision, "record": queue.dumps()})
            except OSError as exc:
                raise errors.StateError(f"cannot write concurrency queue {path}: {exc.strerror}") from exc
            queue.version = revision
            return True
