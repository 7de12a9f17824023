"""A limit on work at once whose waiters go in by priority, then in their order of arrival.

The priority of a request deep in a client (a Kubernetes call, a connection slot) can come from
the work it is done for: an :class:`Urgency` in the context (:func:`within`; the tasks created in
it share it) lets its requests in at its level once it is urgent — also those already waiting
then. An event's finishing path (its last log reads, the progress events before its ``.finished``)
is :data:`FINISHING`; the ``.finished`` itself and the claim write before it are :data:`URGENT`.
Under a burst an event near its end goes before the events behind it (shortest remaining work
first: the complete -> ``.finished`` latency), and those before the creation of new Jobs and claims.

A request already sent waits in the server's queue, where nothing overtakes it; so a gate may also
hold back routine requests (:data:`NORMAL`, :data:`LOW`) with a :class:`RoutineLimit`: only as many
of them are out at once as the server answers without a queue building up; the others wait at the
gate, where urgent ones pass them. Urgent requests may use every place.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import heapq
import itertools
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator

URGENT = 0
"""An event's last step: its ``.finished`` (and the claim write before it)."""
FINISHING = 1
"""The work of an event whose tasks are over: what its ``.finished`` waits for."""
NORMAL = 2
LOW = 3


class Urgency:
    """How urgent some work is (None: not urgent); it may become so while its requests wait."""

    __slots__ = ("_waiting", "level")

    def __init__(self, level: int | None = None) -> None:
        self.level = level
        self._waiting: dict[asyncio.Future[bool], tuple[PriorityGate, int, int]] | None = None
        """Its requests waiting at a gate: their turn → (the gate, their priority, their arrival)
        (made when one waits: none kept per event otherwise)."""

    def make_urgent(self, level: int = FINISHING) -> None:
        """From now on at ``level`` (or higher): its requests waiting at a gate move up its queue."""
        if self.level is not None and self.level <= level:
            return
        self.level = level
        waiting = self._waiting or {}
        for turn, (gate, priority, arrival) in list(waiting.items()):
            if level < priority:
                waiting[turn] = (gate, level, arrival)
                gate._promote(turn, arrival, level)


_urgency: contextvars.ContextVar[Urgency | None] = contextvars.ContextVar("jes_urgency", default=None)


@contextlib.contextmanager
def within(urgency: Urgency) -> Iterator[Urgency]:
    """Run a block (and the tasks it creates) as part of the work ``urgency`` stands for."""
    token = _urgency.set(urgency)
    try:
        yield urgency
    finally:
        _urgency.reset(token)


def begin() -> Urgency:
    """Run the rest of the current task (and the tasks it creates) as part of new work, not urgent
    yet (no block: the next :func:`begin` replaces it; nothing kept per waiting event)."""
    urgency = Urgency()
    _urgency.set(urgency)
    return urgency


def end() -> None:
    """The current task is no longer part of the work :func:`begin` started."""
    _urgency.set(None)


def urgent(level: int = FINISHING) -> contextlib.AbstractContextManager[Urgency]:
    """Run a block (and the tasks it creates) at ``level``."""
    return within(Urgency(level))


def level_now() -> int | None:
    """The level of the work running now (None: not urgent)."""
    urgency = _urgency.get()
    return urgency.level if urgency is not None else None


class RoutineLimit:
    """How many routine requests may be out at once, learnt from round trips.

    Each kind of request (creating a Job takes longer than writing a Lease, an admission webhook
    longer still) has a base round trip and a smoothed one (about the last ten). The base is the
    least tenth percentile of its windows of ``window`` answers closed in the last ``horizon_s``
    (and of its last :data:`WINDOWS` at least) — a quieter window lowers it at once, a long
    overload raises it only once the quieter windows are that old; in its first window it is the
    least answer so far. While the smoothed round trip is over ``tolerance`` times the base,
    requests wait in the server's queue and the limit shrinks by one per answer; otherwise it grows
    by one, within ``floor`` .. ``ceiling`` (where it starts). A ratio, not an estimate of the
    queue's length as TCP Vegas makes: an API server's round trips vary on their own (etcd writes);
    on loopback a busy server answers 10-20 times slower than its base."""

    __slots__ = ("_kinds", "_monotonic", "ceiling", "floor", "horizon_s", "tolerance", "value", "window")

    def __init__(
        self,
        ceiling: int,
        *,
        tolerance: float = 3.0,
        floor: int = 2,
        window: int = 200,
        horizon_s: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.floor = max(1, floor)
        self.ceiling = max(self.floor, ceiling)
        self.tolerance = tolerance
        self.window, self.horizon_s = window, horizon_s
        self._monotonic = monotonic
        self.value = self.ceiling
        self._kinds: dict[str, _RoundTrips] = {}

    def observe(self, round_trip_s: float, kind: str) -> None:
        """One request's round trip (sent -> answer's head): the limit moves by one at most."""
        trips = self._kinds.get(kind)
        if trips is None:
            trips = self._kinds[kind] = _RoundTrips(round_trip_s)
        trips.add(max(round_trip_s, 1e-6), self)
        if trips.smoothed_s > self.tolerance * trips.base_s():
            self.value = max(self.floor, self.value - 1)
        else:
            self.value = min(self.ceiling, self.value + 1)


WINDOWS = 8
"""Windows of answers a base is the least of, however old."""
SMOOTHING = 0.2
"""Weight of a new round trip in the smoothed one (about the last ten count)."""


class _RoundTrips:
    """The round trips of one kind of request (see :class:`RoutineLimit`)."""

    __slots__ = ("_least_s", "_samples", "bases", "smoothed_s")

    def __init__(self, first_s: float) -> None:
        self.bases: collections.deque[tuple[float, float]] = collections.deque()
        """(when the window closed, its tenth percentile), oldest first"""
        self._samples: list[float] = []
        self._least_s = math.inf
        self.smoothed_s = first_s

    def add(self, round_trip_s: float, limit: RoutineLimit) -> None:
        self.smoothed_s += (round_trip_s - self.smoothed_s) * SMOOTHING
        if not self.bases:
            self._least_s = min(self._least_s, round_trip_s)
        self._samples.append(round_trip_s)
        if len(self._samples) >= limit.window:
            self._samples.sort()
            now = limit._monotonic()
            self.bases.append((now, self._samples[len(self._samples) // 10]))
            while len(self.bases) > WINDOWS and self.bases[0][0] < now - limit.horizon_s:
                self.bases.popleft()
            self._samples = []

    def base_s(self) -> float:
        return min(base for _, base in self.bases) if self.bases else self._least_s


class PriorityGate:
    """At most ``size`` holders at once. When one leaves, the waiter with the lowest ``priority``
    goes in (among equals, the one that came first); urgent work (:class:`Urgency`) goes in at
    its level if that is higher. Under a burst of new events this lets an event's last report
    through before the ``.started`` of the hundreds queued behind it. With a ``routine`` limit, at
    most ``routine.value`` of the holders are routine (below :data:`FINISHING`)."""

    def __init__(self, size: int, routine: RoutineLimit | None = None) -> None:
        self.size = size
        self.routine = routine
        self._free = size
        self._routine_held = 0
        self._waiting: list[tuple[int, int, asyncio.Future[bool]]] = []
        """(priority, arrival, turn); a promoted waiter's first entry stays, skipped once let in."""
        self._arrivals = itertools.count()

    def locked(self) -> bool:
        """Whether a request might wait (no place, waiters, or the routine limit reached)."""
        return self._free == 0 or bool(self._waiting) or self._routine_held >= self._routine_max()

    @contextlib.asynccontextmanager
    async def hold(self, priority: int = NORMAL) -> AsyncIterator[None]:
        routine = await self.acquire(priority)
        try:
            yield
        finally:
            self.release(routine)

    async def acquire(self, priority: int = NORMAL) -> bool:
        """Wait for a place (by ``priority``, then arrival); whether it is a routine one: give it
        to :meth:`release` once done."""
        urgency = _urgency.get()
        if urgency is not None and urgency.level is not None:
            priority = min(priority, urgency.level)
        if self._free > 0 and not self._waiting and (priority < NORMAL or self._routine_held < self._routine_max()):
            return self._let_in(priority)
        turn: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        arrival = next(self._arrivals)
        heapq.heappush(self._waiting, (priority, arrival, turn))
        if urgency is not None and priority > URGENT:
            if urgency._waiting is None:
                urgency._waiting = {}
            urgency._waiting[turn] = (self, priority, arrival)
        self._admit()  # (an urgent request passes routine ones held back by the limit)
        try:
            return await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # it was let in as it was cancelled: pass it on
                self.release(turn.result())
            raise
        finally:
            if urgency is not None and urgency._waiting is not None:
                urgency._waiting.pop(turn, None)
                if not urgency._waiting:
                    urgency._waiting = None

    def release(self, routine: bool = False) -> None:
        """Give a place back; ``routine``: what :meth:`acquire` said of it."""
        self._free += 1
        if routine:
            self._routine_held -= 1
        self._admit()

    def observe(self, round_trip_s: float, kind: str) -> None:
        """A request of ``kind`` that holds a place took ``round_trip_s`` (for the routine limit)."""
        if self.routine is not None:
            self.routine.observe(round_trip_s, kind)
            self._admit()  # (it may have grown)

    def _routine_max(self) -> int:
        return self.size if self.routine is None else self.routine.value

    def _let_in(self, priority: int) -> bool:
        self._free -= 1
        routine = priority >= NORMAL and self.routine is not None  # (counted only under a limit)
        if routine:
            self._routine_held += 1
        return routine

    def _admit(self) -> None:
        """Let waiters in while there are places, best first; a routine one only under the limit
        (every waiter behind it is routine too)."""
        waiting = self._waiting
        while self._free > 0 and waiting:
            priority, _, turn = waiting[0]
            if turn.done():  # (a cancelled waiter's turn is done, as is a promoted one's)
                heapq.heappop(waiting)
            elif priority >= NORMAL and self._routine_held >= self._routine_max():
                return
            else:
                heapq.heappop(waiting)
                turn.set_result(self._let_in(priority))

    def _promote(self, turn: asyncio.Future[bool], arrival: int, priority: int) -> None:
        """A waiter's work became urgent: it waits again at ``priority`` (its old entry is skipped)."""
        if not turn.done():
            heapq.heappush(self._waiting, (priority, arrival, turn))
            self._admit()
