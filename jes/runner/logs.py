"""Bounded capture of task output: keep the head and the tail, count the rest.

A task may write hundreds of megabytes; jes keeps at most ``head_bytes + tail_bytes`` of it per
container, which is all a report can carry anyway (the event budget cuts it further).
"""

from __future__ import annotations

from collections import deque

from jes.models import LogText


class BoundedBuffer:
    """Accumulates chunks; memory stays under ``head_bytes + tail_bytes`` plus one chunk."""

    def __init__(self, *, head_bytes: int = 64 * 1024, tail_bytes: int = 64 * 1024) -> None:
        self.head_bytes = head_bytes
        self.tail_bytes = tail_bytes
        self._head = bytearray()
        self._tail: deque[bytes] = deque()
        self._tail_len = 0
        self._dropped = 0

    def write(self, chunk: bytes) -> None:
        if not chunk:
            return
        room = self.head_bytes - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
            if not chunk:
                return
        self._tail.append(bytes(chunk))
        self._tail_len += len(chunk)
        while self._tail_len > self.tail_bytes and self._tail:
            excess = self._tail_len - self.tail_bytes
            first = self._tail[0]
            if len(first) <= excess:
                self._tail.popleft()
                self._tail_len -= len(first)
                self._dropped += len(first)
            else:
                self._tail[0] = first[excess:]
                self._tail_len -= excess
                self._dropped += excess

    @property
    def total_bytes(self) -> int:
        return len(self._head) + self._tail_len + self._dropped

    def result(self) -> LogText:
        return LogText(head=bytes(self._head), tail=b"".join(self._tail), omitted_bytes=self._dropped)
