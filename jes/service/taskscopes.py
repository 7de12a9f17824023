"""Task tokens every replica can check: the claim holds the token's SHA-256 while the task runs.

The chart's Service spreads a task's requests over all replicas, and a replica may restart or take
an event over while its task runs; an in-memory token store would refuse such a task. So a token
names its event and task (``jes1.<event id, base64url>.<action>.<task>.<secret>``), the claim's task
record holds the secret's digest from the moment the task is recorded ``launching`` (before its Job
or process exists), and a replica checks a token against the claim on record — the token ends when
the task is recorded done. Claims read for tokens are cached for ``cache_s`` (so a token may
outlive its task on another replica by that long); the replica that ran the task refuses at once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

from jes import errors, ledger
from jes.ledger import Claim, TaskState
from jes.models import EventRef
from jes.proxy.scopes import ScopeStore, TaskScope
from jes.reporter import events

PREFIX = "jes1"
#: How long a claim read to check a token is reused.
CACHE_S = 1.0
_CACHED_CLAIMS = 4096


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


def _unb64(text: str) -> str:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("utf-8")


class LedgerScopes(ScopeStore):
    """Mints tokens for task records and resolves them through the ledger."""

    def __init__(
        self, store: ledger.Ledger, *, cache_s: float = CACHE_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self._store = store
        self._cache_s = cache_s
        self._clock = clock
        self._claims: OrderedDict[str, tuple[float, Claim | None]] = OrderedDict()
        self._ended: set[str] = set()

    def mint_for(self, ref: EventRef, action_index: int, task_index: int) -> tuple[str, str]:
        """A new token for a task of the event and the digest its task record must hold."""
        secret = secrets.token_urlsafe(32)
        token = f"{PREFIX}.{_b64(ref.id)}.{action_index}.{task_index}.{secret}"
        return token, digest(secret)

    def ended(self, job_name: str) -> None:
        """The task of this Job ended here: its token is refused at once on this replica."""
        self._ended.add(job_name)
        if len(self._ended) > _CACHED_CLAIMS:
            self._ended.pop()

    async def resolve(self, token: str) -> TaskScope | None:
        parsed = _parse(token)
        if parsed is None:
            return None
        event_id, action_index, task_index, secret = parsed
        claim = await self._claim(event_id)
        record = claim.task(action_index, task_index) if claim is not None else None
        if claim is None or record is None or record.state is TaskState.DONE or record.job in self._ended:
            return None
        if not record.token_digest or not secrets.compare_digest(record.token_digest, digest(secret)):
            return None
        ref = claim.ref
        return TaskScope(
            keptn_context=ref.keptn_context, triggered_id=ref.id, project=ref.project, stage=ref.stage,
            service=ref.service, task_name=events.task_name_of(ref.type), job_name=record.job,
        )  # fmt: skip

    async def _claim(self, event_id: str) -> Claim | None:
        now = self._clock()
        cached = self._claims.get(event_id)
        if cached is not None and now - cached[0] < self._cache_s:
            return cached[1]
        try:
            claim = await self._store.read(event_id)
        except errors.StateError:
            return None  # cannot tell: refuse (the task may retry)
        self._claims[event_id] = (now, claim)
        self._claims.move_to_end(event_id)
        while len(self._claims) > _CACHED_CLAIMS:
            self._claims.popitem(last=False)
        return claim


def _parse(token: str) -> tuple[str, int, int, str] | None:
    parts = token.split(".")
    if len(parts) != 5 or parts[0] != PREFIX or not parts[2].isdigit() or not parts[3].isdigit():
        return None
    try:
        event_id = _unb64(parts[1])
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return event_id, int(parts[2]), int(parts[3]), parts[4]
