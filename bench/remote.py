"""The fakes in their own processes: a local control plane and a fake Kubernetes API, called by pipe.

Each fake runs its HTTP server (uvicorn) in a background thread of a child process started with
``spawn``; the child's main thread answers calls from the benchmark: ``remote.call("method",
*args)`` runs ``getattr(fake, "method")(*args)`` there and returns the (pickled) result, and
``remote.get("attr")`` reads an attribute. Keeping the fakes out of the benchmark process and out
of jes's process means their CPU time is neither counted as jes's nor competing for one GIL with
jes or with each other — on a 2-core machine the OS schedules them instead.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import multiprocessing.connection
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fakes.fake_kube import FakeKube
from jes.devtools.controlplane.server import LocalControlPlane

CALL_TIMEOUT_S = 120.0


def _build(kind: str, options: dict[str, Any]) -> Any:
    if kind == "plane":
        return LocalControlPlane(**options)
    if kind == "kube":
        return FakeKube(**options)
    raise ValueError(f"unknown fake {kind!r}")


def _serve(conn: multiprocessing.connection.Connection, kind: str, options: dict[str, Any]) -> None:
    """The child: start the fake, then answer calls until told to stop (or the parent is gone)."""
    fake = _build(kind, options)
    fake.start()
    gc.freeze()  # as jes serve does: full collections skip what the imports made (the fakes' CPU)
    conn.send(("ok", None))
    try:
        while True:
            try:
                request = conn.recv()
            except EOFError:
                return
            if request is None:
                return
            op, name, args, kwargs = request
            try:
                attr = getattr(fake, name)
                result = attr(*args, **kwargs) if op == "call" else attr
                conn.send(("ok", result))
            except Exception as exc:  # the benchmark sees it as RemoteError
                conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    finally:
        fake.stop()


class RemoteError(RuntimeError):
    """A call raised in the fake's process."""


class Remote:
    """A fake in a child process; see the module docstring."""

    def __init__(self, kind: str, **options: Any) -> None:
        self.kind = kind
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, kind, options), name=f"bench-{kind}", daemon=True)
        self._process.start()
        child.close()
        self._receive()

    @property
    def pid(self) -> int:
        return int(self._process.pid or 0)

    def _receive(self) -> Any:
        if not self._conn.poll(CALL_TIMEOUT_S):
            raise RemoteError(f"the {self.kind} fake did not answer within {CALL_TIMEOUT_S:g}s")
        status, value = self._conn.recv()
        if status != "ok":
            raise RemoteError(value)
        return value

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self._conn.send(("call", name, args, kwargs))
        return self._receive()

    def get(self, name: str) -> Any:
        self._conn.send(("get", name, (), {}))
        return self._receive()

    def close(self) -> None:
        with contextlib.suppress(OSError, BrokenPipeError):
            self._conn.send(None)
        self._process.join(timeout=15)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=5)
        self._conn.close()

    def wait_for(self, predicate: Any, *, timeout_s: float, interval_s: float = 0.1, what: str = "condition") -> Any:
        """Poll ``predicate(self)`` until truthy; TimeoutError names ``what``."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = predicate(self)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout_s:g}s waiting for {what}")
            time.sleep(interval_s)


#: The control plane runs as Keptn 0.16-1.4.5 do: the page-2 bug on, the datastore fed this late.
PAGINATION_BUG = True
DATASTORE_LAG_S = 1.0


@contextlib.contextmanager
def fakes(
    seed_dir: Path,
    *,
    token: str,
    kube_options: dict[str, Any] | None = None,
    plane_options: dict[str, Any] | None = None,
) -> Iterator[tuple[Remote, Remote]]:
    """A fresh (control plane, fake Kubernetes API) pair, each in its own process."""
    plane = Remote(
        "plane",
        token=token,
        seed_dir=str(seed_dir),
        pagination_bug=PAGINATION_BUG,
        datastore_lag_s=DATASTORE_LAG_S,
        **(plane_options or {}),
    )
    try:
        kube = Remote("kube", **(kube_options or {}))
        try:
            yield plane, kube
        finally:
            kube.close()
    finally:
        plane.close()
