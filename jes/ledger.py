"""The crash-safety ledger: which triggered events this executor took, and how far it got.

One :class:`Claim` per taken event records the event itself, which reports the control plane
accepted (``sent``) and each finished task (``done``, with a summary). A claim read back after a
restart is *resumed*: every report it does not mark as sent may have been POSTed just before the
crash, so it is looked up in the control plane's datastore before it is sent; tasks are adopted
by their deterministic Job names, and a task marked done is never started again. Nothing is done
twice, and each step costs one write at most.

Implementations: :class:`MemoryLedger` (``jes run``, tests), :class:`FileLedger` (the local
runner; ``JES_STATE_DIR``, one process) and :class:`jes.kubeledger.LeaseLedger` (the kubernetes
runner; one Lease per event, so several replicas share the work safely).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from jes import errors, fsutil

SENT = "sent"
DONE = "done"


@dataclass
class Claim:
    """What this executor took on for one triggered event. Mutable; saved after every step."""

    event_id: str
    event: dict[str, Any]
    holder: str
    reports: dict[str, str] = field(default_factory=dict)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    done: bool = False
    taken_at: float = field(default_factory=time.time)
    done_at: float | None = None
    version: str = ""
    """Opaque concurrency token of the store (a Lease's resourceVersion); not persisted."""
    resumed: bool = False
    """Read back from the store (after a restart or from a dead replica); not persisted."""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("version")
        data.pop("resumed")
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, version: str = "") -> Claim:
        transient = ("version", "resumed")
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data and k not in transient}
        return cls(**known, version=version, resumed=True)

    def report_state(self, key: str) -> str | None:
        return self.reports.get(key)

    def task(self, action_index: int, task_index: int) -> dict[str, Any]:
        return self.tasks.setdefault(f"{action_index}/{task_index}", {})


class Ledger(Protocol):
    async def start(self) -> None: ...

    async def claim(self, event: Mapping[str, Any]) -> Claim | None:
        """Take the event, or None when it is already done or another holder is working on it.

        A claim this executor holds from before a restart is returned for resumption."""
        ...

    async def save(self, claim: Claim) -> None: ...

    async def complete(self, claim: Claim) -> None:
        """Mark the event done; the record is kept for a while so a late poll cannot retake it."""
        ...

    async def release(self, claim: Claim) -> None:
        """Stop working on a claim in this process without completing it (shutdown)."""
        ...

    async def resumable(self) -> list[Claim]:
        """Open claims this executor should finish (taken before a restart)."""
        ...

    async def close(self) -> None: ...


def claim_key(event_id: str) -> str:
    return hashlib.sha256(event_id.encode()).hexdigest()[:40]


class MemoryLedger:
    """A ledger that forgets everything when the process ends."""

    def __init__(self, holder: str = "memory") -> None:
        self.holder = holder
        self.claims: dict[str, Claim] = {}
        self._active: set[str] = set()

    async def start(self) -> None:
        return None

    async def claim(self, event: Mapping[str, Any]) -> Claim | None:
        event_id = str(event["id"])
        existing = self.claims.get(event_id)
        if existing is not None and (existing.done or event_id in self._active):
            return None
        if existing is not None:
            existing.resumed = True
        claim = existing or Claim(event_id=event_id, event=dict(event), holder=self.holder)
        self.claims[event_id] = claim
        self._active.add(event_id)
        return claim

    async def save(self, claim: Claim) -> None:
        self.claims[claim.event_id] = claim

    async def complete(self, claim: Claim) -> None:
        claim.done, claim.done_at = True, time.time()
        self._active.discard(claim.event_id)

    async def release(self, claim: Claim) -> None:
        self._active.discard(claim.event_id)

    async def resumable(self) -> list[Claim]:
        claims = [c for c in self.claims.values() if not c.done and c.event_id not in self._active]
        for claim in claims:
            claim.resumed = True
            self._active.add(claim.event_id)
        return claims

    async def close(self) -> None:
        return None


class FileLedger:
    """Claims as JSON files under ``<state_dir>/claims``; one process per state directory.

    Writes are atomic (temporary file, fsync, rename, fsync of the folder), so a ``kill -9`` at
    any moment leaves either the old or the new record.
    """

    def __init__(self, state_dir: str | Path, *, holder: str = "local", keep_done_s: float = 3600.0) -> None:
        self.root = Path(state_dir)
        self.dir = self.root / "claims"
        self.holder = holder
        self.keep_done_s = keep_done_s
        self._active: set[str] = set()
        self._lock_file: IO[str] | None = None

    async def start(self) -> None:
        await asyncio.to_thread(self._start)

    def _start(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
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
        self._collect_garbage()

    async def close(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _path(self, event_id: str) -> Path:
        return self.dir / f"{claim_key(event_id)}.json"

    async def claim(self, event: Mapping[str, Any]) -> Claim | None:
        event_id = str(event["id"])
        if event_id in self._active:
            return None
        existing = await asyncio.to_thread(self._read, self._path(event_id))
        if existing is not None and existing.done:
            return None
        claim = existing or Claim(event_id=event_id, event=dict(event), holder=self.holder)
        if existing is None:
            await self.save(claim)
        self._active.add(event_id)
        return claim

    async def save(self, claim: Claim) -> None:
        await asyncio.to_thread(self._write, self._path(claim.event_id), claim.to_json())

    async def complete(self, claim: Claim) -> None:
        claim.done, claim.done_at = True, time.time()
        await self.save(claim)
        self._active.discard(claim.event_id)

    async def release(self, claim: Claim) -> None:
        self._active.discard(claim.event_id)

    async def resumable(self) -> list[Claim]:
        claims = await asyncio.to_thread(self._read_all)
        claims = [c for c in claims if not c.done and c.event_id not in self._active]
        self._active.update(c.event_id for c in claims)
        return claims

    # -- files -----------------------------------------------------------------------------------

    def _read(self, path: Path) -> Claim | None:
        try:
            return Claim.from_json(json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            raise errors.StateError(f"cannot read claim {path}: {exc}") from exc

    def _read_all(self) -> list[Claim]:
        claims = []
        for path in sorted(self.dir.glob("*.json")):
            claim = self._read(path)
            if claim is not None:
                claims.append(claim)
        return claims

    def _write(self, path: Path, data: dict[str, Any]) -> None:
        try:
            fsutil.write_json_atomic(path, data)
        except OSError as exc:
            raise errors.StateError(f"cannot write claim {path}: {exc.strerror}") from exc

    def _collect_garbage(self) -> None:
        now = time.time()
        for path in self.dir.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                path.unlink()
        for path in self.dir.glob("*.json"):
            with contextlib.suppress(errors.StateError, OSError):
                claim = self._read(path)
                if claim is not None and claim.done and claim.done_at and now - claim.done_at > self.keep_done_s:
                    path.unlink()
