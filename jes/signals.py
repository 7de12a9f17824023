"""SIGTERM and SIGINT for ``jes serve``, from the first instant of the process.

Python's default SIGTERM action kills at once. Until the service's event loop takes the signals
over, :func:`install_early` makes both end the process with exit 0 — nothing has been started or
written yet, so there is nothing to shut down. Once the loop runs, :func:`on_stop` routes them to
the staged shutdown instead (also while the service is still starting).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from types import FrameType

logger = logging.getLogger("jes")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _exit_early(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def install_early() -> None:
    for signum in STOP_SIGNALS:
        signal.signal(signum, _exit_early)


def on_stop(stop: asyncio.Event) -> None:
    """From now on SIGTERM/SIGINT set ``stop`` (in the running loop)."""
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, _stopper(stop, signum))


def _stopper(stop: asyncio.Event, signum: int) -> Callable[[], None]:
    def handle() -> None:
        logger.info("received %s: shutting down", signal.Signals(signum).name)
        stop.set()

    return handle
