"""What a fake pod does: the script a test chooses per image or per Job name."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

_CHUNK_BYTES = 64 * 1024


def _filler_block() -> bytes:
    lines = [f"filler line {i:06d} ".encode() + b"." * 80 + b"\n" for i in range(640)]
    return b"".join(lines)


_FILLER = _filler_block()


@dataclass(frozen=True)
class Behaviour:
    """A container script. Fields for the main container, ``init_*`` for the first init container.

    Output is ``logs``, then ``log_bytes`` of generated filler (never held in memory), then
    ``log_tail``. Timings are in (fake-clock) seconds.
    """

    exit_code: int = 0
    logs: str | bytes = ""
    log_bytes: int = 0
    log_tail: str | bytes = ""
    log_rate_bytes_per_s: float = 0.0
    """A followed log is delivered at this rate (0: at once): a big burst of output lags behind
    its container, as a real kubelet's stream does over a slow link or a busy node."""
    duration_s: float = 0.0
    """How long the main container runs."""
    pending_s: float = 0.0
    """How long the pod stays Pending (ContainerCreating) after being scheduled."""
    message: str = ""
    """Termination message (``/dev/termination-log``)."""
    oom_killed: bool = False
    """Terminated with reason OOMKilled, exit code 137."""
    image_pull: str = ""
    """``"ErrImagePull"`` (then ``ImagePullBackOff``) or ``"InvalidImageName"``."""
    image_pull_message: str = ""
    unschedulable: bool = False
    """PodScheduled=False, reason Unschedulable, a FailedScheduling event; forever."""
    never_start: bool = False
    """Stays Pending in ContainerCreating forever."""
    transient: str = ""
    """A kubelet reason that heals by itself after ``transient_s``: ``"secret-cache"``
    (CreateContainerConfigError "failed to sync secret cache: timed out waiting for the
    condition"), ``"registry-429"`` or ``"registry-503"`` (ErrImagePull, then ImagePullBackOff)."""
    transient_s: float = 0.0
    sigterm_exit_s: float | None = None
    """When the pod is deleted: the container exits (143) this long after SIGTERM. None: it ignores
    SIGTERM, as a shell running as PID 1 does, and is killed (137) at the end of the grace period."""
    output: str | bytes | None = None
    """What the task writes to ``$KEPTN_OUTPUT_FILE`` (None: nothing); the ``jes-output`` sidecar
    relays it when it is stopped."""
    init_exit_code: int = 0
    init_logs: str | bytes = ""
    init_message: str = ""
    init_duration_s: float = 0.0

    @property
    def termination_reason(self) -> str:
        if self.oom_killed:
            return "OOMKilled"
        return "Completed" if self.exit_code == 0 else "Error"

    @property
    def final_exit_code(self) -> int:
        return 137 if self.oom_killed and self.exit_code == 0 else self.exit_code

    def init_part(self) -> Behaviour:
        """The script of an init container, taken from the ``init_*`` fields."""
        return Behaviour(
            exit_code=self.init_exit_code,
            logs=self.init_logs,
            message=self.init_message,
            duration_s=self.init_duration_s,
        )

    @property
    def total_log_bytes(self) -> int:
        return len(_raw(self.logs)) + self.log_bytes + len(_raw(self.log_tail))

    def log_chunks(self, chunk_bytes: int = _CHUNK_BYTES) -> Iterator[bytes]:
        """The container's whole output, generated lazily in chunks."""
        yield from _split(_raw(self.logs), chunk_bytes)
        remaining = self.log_bytes
        while remaining > 0:
            piece = _FILLER[: min(remaining, len(_FILLER))]
            remaining -= len(piece)
            yield piece
        yield from _split(_raw(self.log_tail), chunk_bytes)


def _raw(text: str | bytes) -> bytes:
    return text.encode() if isinstance(text, str) else text


def _split(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]
