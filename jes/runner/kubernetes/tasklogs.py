"""The logs of one run's containers: followed while they run, completed once the Job is over.

While the runner waits, every container seen running (or already ended) is followed with the
runner's :class:`~jes.runner.kubernetes.logs.LogFollower`. When the Job is over, each container
whose log matters (:func:`~jes.runner.kubernetes.status.log_targets`) gets its log: as followed,
when the stream ended with the container; read once when it was not followed (too many streams);
read once and joined to what was followed, with a line saying so, when the stream broke off. The
containers of a pod that is gone (evicted, deleted) keep what was followed, with a line saying
that the rest is missing.

A log read once is streamed in 64 KiB chunks into a :class:`~jes.runner.logs.BoundedBuffer`
(head and tail kept, the rest counted) and forwarded to ``on_log``, so a task printing 200 MB costs
no more memory than one printing 200 KB.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from jes import errors
from jes.models import ContainerLog, LogText
from jes.runner.base import LogSink
from jes.runner.kubernetes import logs as kube_logs
from jes.runner.kubernetes import status as kube_status
from jes.runner.kubernetes.task import ApiLookup, Obj, call_safely
from jes.runner.logs import BoundedBuffer

#: After its container ended, a followed log that delivers nothing for this long has broken off: it
#: is read once instead. While it keeps delivering (a burst of output at the end lags behind the
#: container) it is waited for, at most :data:`FOLLOW_END_MAX_S` in all.
FOLLOW_END_WAIT_S = 5.0
FOLLOW_END_MAX_S = 300.0

FollowerLookup = Callable[[], kube_logs.LogFollower | None]
"""The runner's log follower, looked up at every use (None once the runner is closed)."""


class TaskLogs:
    """The container logs of one run of one task; see the module docstring."""

    def __init__(
        self,
        api: ApiLookup,
        follower: FollowerLookup,
        namespace: str,
        on_log: LogSink | None,
        *,
        head_bytes: int,
        tail_bytes: int,
        final_reads: asyncio.Semaphore,
    ) -> None:
        self._api = api
        self._follower = follower
        self.namespace = namespace
        self._on_log = on_log
        self._head_bytes = head_bytes
        self._tail_bytes = tail_bytes
        self.final_reads = final_reads
        """Final (non-follow) log reads, the output relay's too (:mod:`.finishing`), hold a thread
        between chunks on the client's path: at most this many at once."""
        self.followed: dict[tuple[str, str], kube_logs.Followed | None] = {}
        """(pod, container) → its followed log; None: not followed (too many streams)."""

    def follow_started(self, pods: Mapping[str, Obj]) -> None:
        """Start following every container seen running (or already ended) for the first time."""
        follower = self._follower()
        if follower is None:
            return
        on_log = self._on_log
        for pod_name, pod in pods.items():
            for container in kube_status.started_containers(pod):
                if (pod_name, container) in self.followed:
                    continue
                sink = None if on_log is None else (lambda chunk, c=container: call_safely(on_log, c, chunk))
                self.followed[(pod_name, container)] = follower.follow(self.namespace, pod_name, container, sink)

    async def stop_following(self) -> None:
        streams = [f.task for f in self.followed.values() if f is not None and f.task is not None]
        running = [stream for stream in streams if not stream.done()]
        for stream in running:
            stream.cancel()
        if running:  # (else no loop round for nothing: this is on the way to an event's .finished)
            await asyncio.gather(*running, return_exceptions=True)
        for stream in streams:
            if not stream.cancelled():
                stream.exception()  # (retrieved, as the gather would)

    async def collect(self, targets: list[kube_status.LogTarget], pod_names: set[str]) -> list[ContainerLog]:
        """The logs of ``targets``, then what was followed of the pods not in ``pod_names``."""
        found: list[ContainerLog] = []
        for target in targets:
            found.append(await self._container_log(target, self.followed.get((target.pod, target.container))))
        return found + self._of_gone_pods(pod_names)

    async def _container_log(self, target: kube_status.LogTarget, followed: kube_logs.Followed | None) -> ContainerLog:
        """A container's log: as followed while it ran; read once now when it was not followed, or
        when the stream broke off (then joined to what was followed, with a line saying so)."""
        if followed is not None and followed.task is not None and target.terminated is None:
            followed.task.cancel()  # still running (a task being stopped): what was seen so far
            await asyncio.gather(followed.task, return_exceptions=True)
            return _container_log(target, followed.buffer.result())
        if followed is not None and followed.task is not None:
            await _until_ended_or_idle(followed, followed.task)
        if followed is not None and followed.complete:
            return _container_log(target, followed.buffer.result())
        async with self.final_reads:
            read = await self._read_log(target, self._on_log if followed is None else None)
        if followed is None or not followed.buffer.total_bytes:
            return read
        return _container_log(target, _joined(followed, read.text))

    async def _read_log(self, target: kube_status.LogTarget, on_log: LogSink | None) -> ContainerLog:
        """The container's current log file, read once."""
        api = self._api()
        buffer = BoundedBuffer(head_bytes=self._head_bytes, tail_bytes=self._tail_bytes)
        try:
            response = await api.open_log_retrying(self.namespace, target.pod, target.container)
            complete = False
            try:
                while chunk := await api.read_chunk(response, self.namespace):
                    buffer.write(chunk)
                    if on_log is not None:
                        call_safely(on_log, target.container, chunk)
                complete = True
            finally:
                await api.close_log(response, complete=complete)
        except errors.KubeError as exc:
            buffer.write(f"{chr(10) if buffer.total_bytes else ''}Unable to query logs of container: {exc}".encode())
        return _container_log(target, buffer.result())

    def _of_gone_pods(self, pod_names: set[str]) -> list[ContainerLog]:
        """What was seen of containers whose pod is gone (evicted, deleted), with a line saying so."""
        found = []
        for (pod, container), stream in self.followed.items():
            if pod in pod_names or stream is None or not stream.buffer.total_bytes:
                continue
            note = f"\n[jes: pod {pod} is gone (evicted or deleted); its output after this is missing]\n"
            stream.buffer.write(note.encode())
            found.append(ContainerLog(container=container, pod=pod, text=stream.buffer.result(), reason="PodGone"))
        return found


def _joined(followed: kube_logs.Followed, read: LogText) -> LogText:
    """What was followed of a log whose stream broke off, then the log as read once at the end."""
    joined = followed.buffer
    note = f"\n[jes: following this log broke off ({followed.error or 'the stream ended early'}); what follows is "
    joined.write((note + "the container's current log file, which may repeat or miss some output]\n").encode())
    joined.write(read.head)
    joined.write(read.tail)
    return joined.result()


def _container_log(target: kube_status.LogTarget, text: LogText) -> ContainerLog:
    terminated = target.terminated or {}
    code = terminated.get("exitCode")
    return ContainerLog(
        container=target.container,
        pod=target.pod,
        text=text,
        exit_code=int(code) if code is not None else None,
        reason=str(terminated.get("reason") or ""),
        message=str(terminated.get("message") or ""),
        init=target.init,
    )


async def _until_ended_or_idle(followed: kube_logs.Followed, stream: asyncio.Task[None]) -> None:
    """Wait for a followed log whose container ended: until its stream ends, delivers nothing for
    :data:`FOLLOW_END_WAIT_S`, or :data:`FOLLOW_END_MAX_S` passed. (No loop round when it ended
    already, the usual case: this is on the way to the event's ``.finished``.)"""
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + FOLLOW_END_MAX_S
    seen = -1
    while not stream.done() and followed.buffer.total_bytes != seen and loop.time() < give_up_at:
        seen = followed.buffer.total_bytes
        wait_s = min(FOLLOW_END_WAIT_S, max(0.0, give_up_at - loop.time()))
        await asyncio.wait([stream], timeout=wait_s)  # (the stream goes on when the wait times out)
