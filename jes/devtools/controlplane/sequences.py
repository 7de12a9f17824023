"""The shipyard-controller: sequences, open ``.triggered`` events and the count rule.

What it does with an event (reference/keptn-api.md §5):

* ``sh.keptn.event.<stage>.<sequence>.triggered`` starts a sequence of the project's shipyard —
  or, when the project, stage or sequence is unknown, answers at once with an errored
  ``sh.keptn.event.<stage>.<sequence>.finished``. Only one sequence runs per project, stage and
  service; later ones wait in line.
* Each task is opened as ``sh.keptn.event.<task>.triggered`` (new id, same context, the sequence's
  ``gitcommitid``, the merged data of §3.1, the time now plus ``triggeredAfter``) and stays
  pollable until ``#finished == #started > 0`` (``.started`` and ``.finished`` are matched by
  project, context and ``triggeredid``). Results and statuses are aggregated; a failed or errored
  task ends the sequence, otherwise the next task opens, and after the last one the sequence's
  ``.finished`` is sent and follow-up sequences (``triggeredOn``) are triggered.
* A task that gets neither ``.started`` nor ``.finished`` within ``task_started_wait_s`` times
  the sequence out; a ``.finished`` without ``.started`` prevents that and hangs the sequence,
  exactly like Keptn. Other event kinds (``status.changed``, ``invalidated``) are only stored.

The open events live in :mod:`openevents`; the run records and the pure rules (aggregation, data
merging, ``triggeredOn`` selection, the state view) in :mod:`runs`.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from jes.devtools.controlplane import eventtypes, keptntime, projects, resources, shipyard
from jes.devtools.controlplane.openevents import OpenEvents
from jes.devtools.controlplane.runs import SequenceRun, TaskRun, aggregate, deep_merge, selects, state_view, summary
from jes.devtools.doubles import clock

SOURCE = "shipyard-controller"
#: ``shkeptnspecversion`` of the events the controller emits (the Keptn chart's default value).
SPEC_VERSION = "latest"

#: Records an event the controller sends (in the datastore) at the given time.
Emit = Callable[[dict[str, Any], datetime], None]

_RUNNING = ("triggered", "waiting", "started")


class ShipyardController:
    """Sequence and task state; not thread-safe (the state's lock guards it)."""

    def __init__(
        self,
        *,
        registry: projects.ProjectRegistry,
        store: resources.ResourceStore,
        clock_: clock.Clock,
        task_started_wait_s: float,
        emit: Emit,
    ) -> None:
        self._registry = registry
        self._store = store
        self._clock = clock_
        self._wait = timedelta(seconds=task_started_wait_s)
        self._emit = emit
        self.open = OpenEvents()
        self._tasks: dict[str, TaskRun] = {}
        self._runs_by_context: dict[str, list[SequenceRun]] = defaultdict(list)
        self._active: dict[tuple[str, str, str], SequenceRun] = {}
        self._waiting: dict[tuple[str, str, str], deque[SequenceRun]] = defaultdict(deque)
        self._paused: set[tuple[str, str, str]] = set()
        """(project, context, stage or "") paused by the sequence control API (Keptn's PauseContext)."""
        self._deadlines: list[tuple[datetime, int, str]] = []
        self._deadline_seq = itertools.count()

    # -- incoming events ---------------------------------------------------------------------

    def handle(self, event: dict[str, Any]) -> None:
        """React to an event the api-service accepted (already stored)."""
        parsed = eventtypes.parse(str(event.get("type", "")))
        if isinstance(parsed, eventtypes.SequenceType) and parsed.kind == "triggered":
            self._on_sequence_triggered(event, parsed)
        elif isinstance(parsed, eventtypes.TaskType) and parsed.kind in ("started", "finished"):
            self._on_response(event, parsed)

    def _on_sequence_triggered(self, event: dict[str, Any], parsed: eventtypes.SequenceType) -> None:
        data = event.get("data") or {}
        scope = [data.get(k) for k in ("project", "stage", "service")]
        if not all(isinstance(v, str) and v for v in scope):
            return  # "invalid event scope": Keptn drops the event
        project_name, stage_name, service = (str(v) for v in scope)
        found = self._lookup(project_name, stage_name, parsed)
        if isinstance(found, str):
            self._send_unstartable(event, parsed, project_name, service, found)
            return
        now = self._clock.now()
        gitcommitid = str(event.get("gitcommitid") or self._store.head(project_name, parsed.stage).id)
        run = SequenceRun(
            trigger_id=str(event["id"]),
            context=str(event["shkeptncontext"]),
            project=project_name,
            stage=parsed.stage,
            service=service,
            name=parsed.sequence,
            definition=found,
            gitcommitid=gitcommitid,
            data=copy.deepcopy(data),
            created=now,
        )
        self.open.add({**event, "gitcommitid": gitcommitid}, now, project_name)
        self._runs_by_context[run.context].append(run)
        run.latest = summary(event)
        run.paused = self._is_paused(run)
        if run.key in self._active or run.paused:  # a paused sequence is not dispatched (sequencedispatcher.go)
            run.state = "waiting" if run.key in self._active else run.state
            self._waiting[run.key].append(run)
        else:
            self._start(run)

    def _lookup(
        self, project_name: str, stage_name: str, parsed: eventtypes.SequenceType
    ) -> shipyard.ShipyardSequence | str:
        """The sequence's definition, or why it cannot start."""
        project = self._registry.get(project_name)
        if project is None:
            return f"project {project_name} not found"
        if stage_name != parsed.stage:
            return f"the stage {stage_name!r} in data does not match the stage {parsed.stage!r} of the event type"
        stage = project.shipyard.stage(parsed.stage)
        if stage is None:
            return f"stage {parsed.stage} not found in the shipyard of project {project_name}"
        sequence = stage.sequence(parsed.sequence)
        if sequence is None:
            return f"sequence {parsed.sequence} not found in stage {parsed.stage}"
        return sequence

    def _send_unstartable(
        self, event: dict[str, Any], parsed: eventtypes.SequenceType, project: str, service: str, reason: str
    ) -> None:
        data = {
            "project": project,
            "stage": parsed.stage,
            "service": service,
            "status": "errored",
            "result": "fail",
            "message": f"Unable to start sequence {parsed.sequence}: {reason}",
        }
        finished = self._event(
            eventtypes.sequence_type(parsed.stage, parsed.sequence, "finished"),
            context=str(event["shkeptncontext"]),
            data=data,
            at=self._clock.now(),
            triggeredid=str(event["id"]),
            gitcommitid=str(event.get("gitcommitid") or ""),
        )
        self._emit(finished, self._clock.now())

    def _on_response(self, event: dict[str, Any], parsed: eventtypes.TaskType) -> None:
        data = event.get("data") or {}
        if not all(isinstance(data.get(k), str) and data.get(k) for k in ("project", "stage", "service")):
            return  # "invalid event scope"
        task = self._tasks.get(str(event.get("triggeredid") or ""))
        if task is None or task.task != parsed.task:
            return
        if task.open.project != data["project"] or task.context != event.get("shkeptncontext"):
            return
        if parsed.kind == "started":
            task.started += 1
        else:
            task.finished.append(data)
        if task.sequence is not None:
            task.sequence.latest = summary(event)
        if task.started > 0 and task.started == len(task.finished):
            self._complete(task)

    # -- sequences and tasks -----------------------------------------------------------------

    def _start(self, run: SequenceRun) -> None:
        run.state = "started"
        self._active[run.key] = run
        self._advance(run)

    def _advance(self, run: SequenceRun) -> None:
        if run.next_task >= len(run.definition.tasks):
            self._finish(run, "succeeded", run.worst_result, message=None)
            return
        task_def = run.definition.tasks[run.next_task]
        run.next_task += 1
        data = copy.deepcopy(run.data)
        data.update(project=run.project, stage=run.stage, service=run.service)
        if "message" in data:
            data["message"] = ""
        if task_def.properties:
            current = data.get(task_def.name)
            data[task_def.name] = deep_merge(current if isinstance(current, dict) else {}, task_def.properties)
        at = self._clock.now() + task_def.delay
        event = self._event(
            eventtypes.task_type(task_def.name, "triggered"), context=run.context, data=data, at=at,
            gitcommitid=run.gitcommitid,
        )  # fmt: skip
        run.current = self._open_task(event, at, task_def.name, run.project, run.context, run)
        run.latest = summary(event)

    def _open_task(
        self, event: dict[str, Any], at: datetime, task: str, project: str, context: str, run: SequenceRun | None
    ) -> TaskRun:
        # Keptn's triggerTask stores the task's .triggered in the triggered-event collection first
        # (pollable at once), then hands it to the event dispatcher, which holds it back while the
        # sequence is paused (eventdispatcher.go tryToSendEvent: ErrSequencePaused) and sends it
        # (NATS, hence the datastore) after a resume.
        if run is not None and run.paused:
            run.held.append((event, at))
        else:
            self._emit(event, at)
        entry = self.open.add(event, at, project)
        task_run = TaskRun(open=entry, task=task, context=context, sequence=run)
        self._tasks[entry.id] = task_run
        heapq.heappush(self._deadlines, (at + self._wait, next(self._deadline_seq), entry.id))
        return task_run

    def _close_task(self, task: TaskRun) -> None:
        self.open.remove(task.open.id)
        self._tasks.pop(task.open.id, None)

    def _complete(self, task: TaskRun) -> None:
        self._close_task(task)
        run = task.sequence
        if run is None:
            return
        run.current = None
        status, result = aggregate(task.finished)
        merged: dict[str, Any] = {}
        for data in task.finished:
            merged = deep_merge(merged, data)
        run.data = deep_merge(run.data, merged)
        run.data.update(status=status, result=result)
        if result == "warning":
            run.worst_result = "warning"
        if result == "fail" or status != "succeeded":
            self._finish(run, status, result, message=merged.get("message"))
        else:
            self._advance(run)

    def _finish(self, run: SequenceRun, status: str, result: str, *, message: Any, state: str = "finished") -> None:
        was_waiting = run in self._waiting.get(run.key, ())  # (also a paused one that never started)
        run.state, run.status, run.result = state, status, result
        if run.current is not None:
            self._close_task(run.current)
            run.current = None
        data: dict[str, Any] = {"project": run.project, "stage": run.stage, "service": run.service}
        if isinstance(run.data.get("labels"), dict):
            data["labels"] = copy.deepcopy(run.data["labels"])
        data.update(status=status, result=result)
        if message:
            data["message"] = message
        now = self._clock.now()
        finished = self._event(
            eventtypes.sequence_type(run.stage, run.name, "finished"), context=run.context, data=data, at=now,
            triggeredid=run.trigger_id, gitcommitid=run.gitcommitid,
        )  # fmt: skip
        self._emit(finished, now)
        run.latest = summary(finished)
        self.open.remove(run.trigger_id)
        if was_waiting:
            self._waiting[run.key].remove(run)
            if not self._waiting[run.key]:
                del self._waiting[run.key]
        elif self._active.get(run.key) is run:
            del self._active[run.key]
            self._start_next(run.key)
        if state == "finished":
            self._follow_ups(run)

    def _start_next(self, key: tuple[str, str, str]) -> None:
        queue = self._waiting.get(key)
        if queue and not queue[0].paused:  # a paused sequence blocks those queued after it
            self._start(queue.popleft())
        if queue is not None and not queue:
            del self._waiting[key]

    def _follow_ups(self, run: SequenceRun) -> None:
        project = self._registry.get(run.project)
        if project is None:
            return
        event_name = f"{run.stage}.{run.name}.finished"
        for stage in project.shipyard.spec.stages:
            for sequence in stage.sequences:
                if any(selects(on, event_name, run) for on in sequence.triggeredOn):
                    data = copy.deepcopy(run.data)
                    data["stage"] = stage.name
                    now = self._clock.now()
                    event = self._event(
                        eventtypes.sequence_type(stage.name, sequence.name, "triggered"), context=run.context,
                        data=data, at=now,
                    )  # fmt: skip
                    self._emit(event, now)
                    self.handle(event)

    # -- time --------------------------------------------------------------------------------

    def tick(self) -> None:
        """Time out tasks that got no ``.started``/``.finished`` in time."""
        now = self._clock.now()
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, event_id = heapq.heappop(self._deadlines)
            task = self._tasks.get(event_id)
            if task is None or task.responded:
                continue
            self._close_task(task)
            if task.sequence is not None:
                message = (
                    f"sequence timed out while waiting for task {task.open.type} to receive a correlating "
                    ".started or .finished event"
                )
                self._finish(task.sequence, "errored", "fail", message=message, state="timedOut")

    # -- hooks -------------------------------------------------------------------------------

    def inject(
        self, *, task: str, project: str, stage: str, service: str, data: dict[str, Any], count: int
    ) -> list[str]:
        """Open ``count`` task ``.triggered`` events outside any sequence; their ids."""
        now = self._clock.now()
        self._registry.ensure(project, stage, service, now)
        commit = self._store.head(project, stage).id
        ids = []
        for _ in range(count):
            payload = {**copy.deepcopy(data), "project": project, "stage": stage, "service": service}
            context = str(uuid.uuid4())
            event = self._event(
                eventtypes.task_type(task, "triggered"), context=context, data=payload, at=now, gitcommitid=commit
            )
            ids.append(self._open_task(event, now, task, project, context, None).open.id)
        return ids

    def _matching(self, project: str, context: str, stage: str) -> list[SequenceRun]:
        return [
            r for r in self._runs_by_context.get(context, [])
            if r.project == project and (not stage or r.stage == stage) and r.state in _RUNNING
        ]  # fmt: skip

    def _is_paused(self, run: SequenceRun) -> bool:
        return bool({(run.project, run.context, ""), (run.project, run.context, run.stage)} & self._paused)

    def abort(self, project: str, context: str, *, stage: str = "") -> bool:
        """Abort a context's running and waiting sequences (in ``stage``, or all); ``False`` if none.

        As Keptn's ``cancelSequence`` (shipyard-controller/internal/controller/shipyardcontroller.go):
        the sequence leaves the queue, the open ``.triggered`` event of its current task is deleted
        (so ``GET /event/triggered/{type}?eventID=`` no longer finds it), and
        ``forceTaskSequenceCompletion`` sends the sequence's ``.finished`` with status ``aborted``
        and result ``pass``; no follow-up sequence is triggered. A ``.started``/``.finished`` that
        arrives later for the deleted task is stored and ignored (``handleTaskEvent`` finds no
        matching ``.triggered`` event: ErrSequenceNotFound, only logged).
        """
        runs = self._matching(project, context, stage)
        for run in runs:
            run.paused, run.held = False, []
            self._finish(run, "aborted", "pass", message=None, state="aborted")
        return bool(runs)

    def pause(self, project: str, context: str, *, stage: str = "") -> bool:
        """Pause a context (in ``stage``, or all), as Keptn's ``pauseSequence``: the running task goes
        on, the next task's ``.triggered`` is stored but not sent, a queued sequence is not started,
        and sequences triggered later in the context start paused (``PauseContext``). The state
        view shows ``paused``. Tasks held back still time out like any unanswered task."""
        self._paused.add((project, context, stage))
        runs = self._matching(project, context, stage)
        for run in runs:
            run.paused = True
        return bool(runs)

    def resume(self, project: str, context: str, *, stage: str = "") -> bool:
        """Undo :meth:`pause`: held task events are sent now, a queued sequence may start."""
        self._paused.discard((project, context, stage))
        if not stage:
            self._paused = {p for p in self._paused if p[:2] != (project, context)}
        runs = [r for r in self._matching(project, context, stage) if r.paused and not self._is_paused(r)]
        for run in runs:
            run.paused = False
            held, run.held = run.held, []
            for event, at in held:
                self._emit(event, max(at, self._clock.now()))
            if run.state != "started" and run.key not in self._active:
                self._start_next(run.key)
        return bool(runs)

    def drop_project(self, project: str) -> None:
        """Forget a deleted project's open events and sequences (nothing is sent)."""
        for task in [t for t in self._tasks.values() if t.open.project == project]:
            self._close_task(task)
        for key in [k for k in self._active if k[0] == project]:
            self.open.remove(self._active.pop(key).trigger_id)
        for key in [k for k in self._waiting if k[0] == project]:
            for run in self._waiting.pop(key):
                self.open.remove(run.trigger_id)
        for context, runs in list(self._runs_by_context.items()):
            kept = [r for r in runs if r.project != project]
            if kept:
                self._runs_by_context[context] = kept
            else:
                del self._runs_by_context[context]

    def has_context(self, project: str, context: str) -> bool:
        return any(r.project == project for r in self._runs_by_context.get(context, []))

    def sequence_states(self, project: str | None = None, context: str | None = None) -> list[dict[str, Any]]:
        """One state per context (oldest first), like ``GET /sequence/{project}``."""
        contexts = [context] if context is not None else list(self._runs_by_context)
        states = []
        for ctx in contexts:
            runs = [r for r in self._runs_by_context.get(ctx, []) if project is None or r.project == project]
            if runs:
                states.append(state_view(runs))
        return states

    # -- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _event(
        event_type: str,
        *,
        context: str,
        data: dict[str, Any],
        at: datetime,
        triggeredid: str | None = None,
        gitcommitid: str | None = None,
    ) -> dict[str, Any]:
        event: dict[str, Any] = {
            "data": data,
            "id": str(uuid.uuid4()),
            "shkeptncontext": context,
            "shkeptnspecversion": SPEC_VERSION,
            "source": SOURCE,
            "specversion": "1.0",
            "time": keptntime.keptn_time(at),
            "type": event_type,
        }
        if triggeredid:
            event["triggeredid"] = triggeredid
        if gitcommitid:
            event["gitcommitid"] = gitcommitid
        return event
