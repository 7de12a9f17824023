"""Shared watches: one over jes's Jobs and one over their pods per namespace, feeding per-Job trackers.

Each watch is a list followed by a watch from the list's ``resourceVersion``, in its own thread (the
client is synchronous; two threads per namespace, never one per Job). Lines are parsed as plain JSON
and handed to the event loop, where :class:`Trackers` route them by Job name (the ``job-name`` label
for pods) to the :class:`Tracker` of every ``run()`` waiting on that Job; events of Jobs nobody waits
for are dropped, so memory stays proportional to the Jobs in flight. A stream that ends is resumed
from the last ``resourceVersion`` seen (bookmarks included); ``410 Gone`` starts over with a fresh
list, whose contents replace what trackers knew, so a completion that happened while the watch was
away is still seen.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import urllib3

from jes import errors
from jes.clients import kube as kube_client
from jes.clients import kubeerrors as kube_errors
from jes.runner.kubernetes.slim import JOB_NAME_LABELS, job_name_of_pod, slim
from jes.util import flag, retry

__all__ = ["JOB_NAME_LABELS", "Tracker", "Trackers", "WatchKey", "is_newer", "job_name_of_pod", "slim"]

Obj = dict[str, Any]
logger = logging.getLogger(__name__)


def _rv(obj: Obj | None) -> int | None:
    try:
        return int(((obj or {}).get("metadata") or {}).get("resourceVersion", ""))
    except ValueError:
        return None


def is_newer(candidate: Obj, current: Obj | None) -> bool:
    """Whether ``candidate`` (from a one-off read) should replace ``current`` (maybe from the watch)."""
    if current is None:
        return True
    new, old = _rv(candidate), _rv(current)
    return new is not None and old is not None and new > old


def _after(obj: Obj, listed_at: int | None) -> bool:
    """Whether ``obj`` is newer than a list taken at ``listed_at``."""
    rv = _rv(obj)
    return rv is not None and listed_at is not None and rv > listed_at


@dataclass(eq=False, slots=True)
class Tracker:
    """What one ``run()`` knows about its Job and the Job's pods; ``changed`` wakes it up."""

    name: str
    job: Obj | None = None
    pods: dict[str, Obj] = field(default_factory=dict)
    deleted: bool = False
    relisted_without_job: bool = False
    """A re-list (after 410) did not contain the Job: confirm with a GET before calling it lost."""
    error: BaseException | None = None
    changed: flag.Flag = field(default_factory=flag.Flag)

    def offer_job(self, job: Obj) -> None:
        """A Job read outside the watch (create/GET answer): kept only if newer."""
        if is_newer(job, self.job):
            self.job = slim(job, "jobs")
            self.changed.set()

    def offer_pods(self, pods: list[Obj]) -> None:
        for pod in pods:
            name = pod["metadata"]["name"]
            if is_newer(pod, self.pods.get(name)):
                self.pods[name] = slim(pod, "pods")
        self.changed.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.changed.set()


@dataclass(frozen=True)
class WatchKey:
    namespace: str
    job_selector: str
    pod_selector: str


class Trackers:
    """The trackers of one :class:`WatchKey` and the two watch threads that feed them."""

    def __init__(
        self,
        key: WatchKey,
        api: kube_client.KubeApi,
        loop: asyncio.AbstractEventLoop,
        *,
        watch_timeout_s: float,
        backoff: retry.Backoff,
    ) -> None:
        self.key = key
        self.loop = loop
        self.by_name: dict[str, tuple[Tracker, ...]] = {}  # (a tuple of one, mostly: smaller than a list)
        self.synced: set[str] = set()
        self.error: BaseException | None = None
        self.failures = 0
        self.max_failures = max(1, len(backoff.delays_s))
        self.state_changed = asyncio.Event()
        self._outbox: list[tuple[Callable[..., None], tuple[Any, ...]]] = []
        self._outbox_lock = threading.Lock()
        self._delivery_pending = False
        self.watches = [
            _WatchThread(self, api, "jobs", key.job_selector, watch_timeout_s=watch_timeout_s, backoff=backoff),
            _WatchThread(self, api, "pods", key.pod_selector, watch_timeout_s=watch_timeout_s, backoff=backoff),
        ]

    def start(self) -> None:
        for watch in self.watches:
            watch.start()

    def stop(self) -> list[threading.Thread]:
        for watch in self.watches:
            watch.stop()
        error = errors.RunnerError("the kubernetes runner was closed while waiting for the Job")
        for trackers in self.by_name.values():
            for tracker in trackers:
                tracker.fail(error)
        return [w.thread for w in self.watches if w.thread is not None]

    def track(self, name: str) -> Tracker:
        tracker = Tracker(name)
        self.by_name[name] = (*self.by_name.get(name, ()), tracker)
        return tracker

    def untrack(self, tracker: Tracker) -> None:
        trackers = self.by_name.get(tracker.name, ())
        if tracker in trackers:
            others = tuple(t for t in trackers if t is not tracker)
            if others:
                self.by_name[tracker.name] = others
            else:
                del self.by_name[tracker.name]

    async def wait_synced(self) -> None:
        """Until both watches have listed once; raises when they keep failing."""
        while len(self.synced) < len(self.watches):
            if self.error is not None and (
                isinstance(self.error, errors.Permanent) or self.failures >= self.max_failures
            ):
                raise self.error
            self.state_changed.clear()
            await self.state_changed.wait()

    # --- called on the loop by the watch threads ------------------------------------------------

    def post(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop, in order. Calls posted while a delivery is pending join it,
        so a burst of watch events wakes the loop once, not once per event."""
        with self._outbox_lock:
            self._outbox.append((fn, args))
            if self._delivery_pending:
                return
            self._delivery_pending = True
        try:
            self.loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    def _deliver(self) -> None:
        with self._outbox_lock:
            calls, self._outbox = self._outbox, []
            self._delivery_pending = False
        for fn, args in calls:
            fn(*args)

    def on_list(self, kind: str, items: list[Obj], list_rv: str) -> None:
        """A fresh list replaces what trackers knew (except what they learnt after it)."""
        self.synced.add(kind)
        self.error = None
        self.failures = 0
        self.state_changed.set()
        listed_at = _rv({"metadata": {"resourceVersion": list_rv}})
        if kind == "jobs":
            present = {item["metadata"]["name"]: item for item in items}
            for name, trackers in self.by_name.items():
                for tracker in trackers:
                    self._relisted_job(tracker, present.get(name), listed_at)
            return
        by_job: dict[str, dict[str, Obj]] = {}
        for pod in items:
            by_job.setdefault(job_name_of_pod(pod), {})[pod["metadata"]["name"]] = pod
        for name, trackers in self.by_name.items():
            for tracker in trackers:
                pods = dict(by_job.get(name, {}))
                for pod_name, pod in tracker.pods.items():
                    if _after(pod, listed_at) and is_newer(pod, pods.get(pod_name)):
                        pods[pod_name] = pod
                tracker.pods = pods
                tracker.changed.set()

    @staticmethod
    def _relisted_job(tracker: Tracker, listed: Obj | None, listed_at: int | None) -> None:
        if tracker.job is not None and _after(tracker.job, listed_at):
            return  # the tracker already knows something newer than the list
        if listed is not None:
            tracker.job = listed
            tracker.relisted_without_job = False
        elif tracker.job is not None:
            tracker.relisted_without_job = True
        tracker.changed.set()

    def on_events(self, kind: str, events: list[tuple[str, Obj]]) -> None:
        for event_type, obj in events:
            name = obj["metadata"]["name"] if kind == "jobs" else job_name_of_pod(obj)
            for tracker in self.by_name.get(name, ()):
                if kind == "jobs":
                    tracker.job = obj
                    tracker.deleted = event_type == "DELETED"
                    tracker.relisted_without_job = False
                elif event_type == "DELETED":
                    tracker.pods.pop(obj["metadata"]["name"], None)
                else:
                    tracker.pods[obj["metadata"]["name"]] = obj
                tracker.changed.set()

    def on_error(self, kind: str, error: BaseException) -> None:
        self.error = error
        self.failures += 1
        self.state_changed.set()
        if isinstance(error, errors.Permanent):
            for trackers in self.by_name.values():
                for tracker in trackers:
                    tracker.fail(error)


class _Expired(Exception):
    """The watch's resourceVersion is too old (410): list again."""


class _WatchThread:
    """List + watch of one kind, forever, until stopped."""

    def __init__(
        self,
        owner: Trackers,
        api: kube_client.KubeApi,
        kind: str,
        selector: str,
        *,
        watch_timeout_s: float,
        backoff: retry.Backoff,
    ) -> None:
        self.owner = owner
        self.api = api
        self.kind = kind
        self.selector = selector
        self.namespace = owner.key.namespace
        self.watch_timeout_s = watch_timeout_s
        self.backoff = retry.Backoff(backoff.delays_s or (1.0,), forever=True)
        self.thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._response: urllib3.BaseHTTPResponse | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        name = f"jes-watch-{self.kind}-{self.namespace}"
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            response = self._response
        if response is not None:
            try:
                response.shutdown()
            except Exception:  # already released or closed: the thread is not blocked on it
                pass

    def _run(self) -> None:
        resource_version: str | None = None
        delays = iter(self.backoff)
        while not self._stopping.is_set():
            try:
                if resource_version is None:
                    resource_version = self._list()
                resource_version = self._watch(resource_version)
                delays = iter(self.backoff)
            except _Expired:
                logger.info("watch of %s in %s expired; listing again", self.kind, self.namespace)
                resource_version = None
            except errors.KubeError as exc:
                if self._stopping.is_set():
                    break
                level = logging.ERROR if isinstance(exc, errors.Permanent) else logging.WARNING
                logger.log(level, "watch of %s in %s failed: %s", self.kind, self.namespace, exc)
                self.owner.post(self.owner.on_error, self.kind, exc)
                self._stopping.wait(next(delays))
            except Exception as exc:  # a bug must not end the watch silently
                logger.exception("watch of %s in %s failed unexpectedly", self.kind, self.namespace)
                self.owner.post(self.owner.on_error, self.kind, errors.RunnerError(str(exc)))
                self._stopping.wait(next(delays))

    def _list(self) -> str:
        result = self.api.list_raw(self.kind, self.namespace, self.selector)
        list_rv = str((result.get("metadata") or {}).get("resourceVersion", ""))
        items = [slim(item, self.kind) for item in result.get("items") or []]
        self.owner.post(self.owner.on_list, self.kind, items, list_rv)
        return list_rv

    def _watch(self, resource_version: str) -> str:
        try:
            response = self.api.open_watch(
                self.kind, self.namespace, self.selector, resource_version, self.watch_timeout_s
            )
        except errors.KubeError as exc:
            if exc.status == 410:
                raise _Expired() from exc
            raise
        with self._lock:
            self._response = response
        try:
            if self._stopping.is_set():
                return resource_version
            for batch, last_rv in self._batches(response):
                resource_version = last_rv or resource_version
                if batch:
                    self.owner.post(self.owner.on_events, self.kind, batch)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if self._stopping.is_set():
                return resource_version
            raise kube_errors.translate(exc, verb="watch", resource=self.kind, namespace=self.namespace) from exc
        finally:
            with self._lock:
                self._response = None
            response.close()
            response.release_conn()
        return resource_version

    def _batches(self, response: urllib3.BaseHTTPResponse) -> Iterator[tuple[list[tuple[str, Obj]], str]]:
        """Parsed events per received chunk, with the last resourceVersion in it."""
        pending = b""
        for chunk in response.stream(kube_client.CHUNK_BYTES, decode_content=False):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            batch: list[tuple[str, Obj]] = []
            last_rv = ""
            for line in lines:
                if not line.strip():
                    continue
                event = json.loads(line)
                event_type, obj = event.get("type"), event.get("object") or {}
                if event_type == "ERROR":
                    self._raise_status(obj)
                last_rv = str((obj.get("metadata") or {}).get("resourceVersion", "")) or last_rv
                if event_type in ("ADDED", "MODIFIED", "DELETED"):
                    batch.append((event_type, slim(obj, self.kind)))
            yield batch, last_rv

    def _raise_status(self, status: Obj) -> None:
        code = int(status.get("code") or 0)
        if code == 410:
            raise _Expired()
        reason, text = status.get("reason"), status.get("message")
        message = f"watch of {self.kind} in namespace {self.namespace!r}: {code} {reason}: {text}"
        if code == 403:
            resource = "batch/jobs" if self.kind == "jobs" else "pods"
            raise errors.KubePermissionError(
                verb="watch", resource=resource, namespace=self.namespace, server_message=str(status.get("message"))
            )
        if code >= 500 or code == 429:
            raise errors.KubeTemporaryError(message, status=code, reason=str(status.get("reason") or ""))
        raise errors.KubePermanentError(message, status=code, reason=str(status.get("reason") or ""))
