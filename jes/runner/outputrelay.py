"""The output relay: the ``jes-output`` sidecar of a task pod, and how jes reads what it printed.

A task writes a JSON object to ``$KEPTN_OUTPUT_FILE`` (``/keptn-output/output.json``, an emptyDir
shared with the sidecar). The sidecar runs ``python -m jes.runner.outputrelay PATH
MAX_BYTES`` from the jes image: it waits for SIGTERM — the kubelet terminates a native sidecar
only after every regular container of the pod ended (KEP-753, Kubernetes 1.29+) — then prints the
file to its stdout and exits 0. jes reads that container's log (``pods/log?container=jes-output``)
once the pod ended and decodes it with :func:`decode`.

What it prints, one of (each line on its own; ``<base64>`` is the file in lines of 76 characters):

* ``==jes-output v1 begin==``, the ``<base64>`` lines, ``==jes-output v1 end length=N sha256=H==``;
* ``==jes-output v1 none==`` — no file, or an empty one;
* ``==jes-output v1 error <why>==`` — not a regular file (a symlink, a FIFO), unreadable, or more
  than MAX_BYTES (nothing of it is printed then).

The length and digest trailer makes a log cut short (a rotated or truncated container log, a
broken line) a detected error rather than a silently different output.

This module runs in every task pod: it imports nothing but the standard library (and nothing of
jes: the packages above it hold only docstrings), so the sidecar starts in a few milliseconds.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import signal
import stat
import sys
from dataclasses import dataclass

MARK = "==jes-output v1"
LINE_CHARS = 76


class OutputFileError(Exception):
    """The output file cannot be read: not a regular file, unreadable, too big."""


@dataclass(frozen=True)
class Relayed:
    """What the relay's log says: ``data`` (None when there is no output) or a ``problem``."""

    data: bytes | None = None
    problem: str = ""


def read_output_file(path: str, max_bytes: int) -> bytes:
    """The file's bytes (empty when it does not exist). A symlink, FIFO or directory is refused
    (a task must not make jes or its relay read something else), as is a file over ``max_bytes``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return b""
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OutputFileError("is a symbolic link; write a regular file") from exc
        raise OutputFileError(f"cannot be opened: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OutputFileError("is not a regular file")
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(fd, min(65536, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:
            raise OutputFileError(f"is larger than {max_bytes} bytes (JES_MAX_OUTPUT_BYTES)")
        return b"".join(chunks)
    except OSError as exc:
        raise OutputFileError(f"cannot be read: {exc.strerror}") from exc
    finally:
        os.close(fd)


def encode(path: str, max_bytes: int) -> bytes:
    """The relay's whole output for the file at ``path``."""
    try:
        data = read_output_file(path, max_bytes)
    except OutputFileError as exc:
        return report_error(str(exc))
    return report(data)


def report_error(why: str) -> bytes:
    return f"{MARK} error {' '.join(why.split())}==\n".encode()


def report(data: bytes) -> bytes:
    """The relay's output for a file holding ``data`` (read whole, within the limit)."""
    if not data:
        return f"{MARK} none==\n".encode()
    text = base64.b64encode(data).decode()
    lines = [text[i : i + LINE_CHARS] for i in range(0, len(text), LINE_CHARS)]
    trailer = f"{MARK} end length={len(data)} sha256={hashlib.sha256(data).hexdigest()}=="
    return "\n".join([f"{MARK} begin==", *lines, trailer, ""]).encode()


def decode(log: bytes) -> Relayed:
    """The output in a relay's log (the last report in it counts: a restarted sidecar)."""
    lines = [line.strip() for line in log.decode("utf-8", errors="replace").splitlines()]
    starts = [i for i, line in enumerate(lines) if line.startswith(MARK + " ") and " end " not in line]
    if not starts:
        return Relayed(problem="the output relay printed no result (it did not run to its end)")
    first = lines[starts[-1]]
    verb = first[len(MARK) + 1 :].removesuffix("==")
    if verb == "none":
        return Relayed()
    if verb.startswith("error "):
        return Relayed(problem=verb.removeprefix("error "))
    if verb != "begin":
        return Relayed(problem=f"the output relay printed an unknown result: {first[:200]!r}")
    return _decode_body(lines[starts[-1] + 1 :])


def _decode_body(lines: list[str]) -> Relayed:
    incomplete = Relayed(problem="the output relay's log is incomplete (no end marker): the output was not read whole")
    end = next((i for i, line in enumerate(lines) if line.startswith(f"{MARK} end ")), None)
    if end is None:
        return incomplete
    fields = dict(part.split("=", 1) for part in lines[end].removesuffix("==").split()[3:] if "=" in part)
    try:
        data = base64.b64decode("".join(lines[:end]), validate=True)
        length = int(fields.get("length", "-1"))
    except ValueError:
        return Relayed(problem="the output relay's log is damaged (not base64): the output was not read whole")
    if len(data) != length or hashlib.sha256(data).hexdigest() != fields.get("sha256"):
        return Relayed(
            problem="the output relay's log is damaged (length or sha256 differ): the output was not read whole"
        )
    return Relayed(data=data)


def _wait_for_sigterm() -> None:
    """Block until SIGTERM (or SIGINT). The signals are blocked first and then waited for, so one
    that arrives at any moment is not lost; a handler is installed too, since a process that is
    PID 1 would otherwise never see a signal left at its default action."""
    wanted = {signal.SIGTERM, signal.SIGINT}
    for number in wanted:
        signal.signal(number, lambda *_: None)
    signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
    signal.sigwait(wanted)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or not args[1].isdigit():
        sys.stderr.write("usage: python -m jes.runner.outputrelay PATH MAX_BYTES\n")
        return 2
    _wait_for_sigterm()
    sys.stdout.buffer.write(encode(args[0], int(args[1])))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
