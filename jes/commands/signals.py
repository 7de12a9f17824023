"""SIGTERM and SIGINT for ``jes serve``, from the first instant of the process.

Python's default SIGTERM action kills at once. :func:`install_early` (called before the slow
imports) only records a stop signal — raising from a signal handler could land inside the import
machinery, which swallows it. Once the event loop runs, :func:`on_stop` routes the signals to the
staged shutdown, and a signal recorded earlier stops the service at once (also while it starts).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from types import FrameType

logger = logging.getLogger("jes")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_received: list[int] = []


def _record(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)


def install_early() -> None:
    for signum in STOP_SIGNALS:
        signal.signal(signum, _record)


def on_stop(stop: asyncio.Event) -> None:
    """From now on SIGTERM/SIGINT set ``stop`` (in the running loop); one received before, too."""
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, _stopper(stop, signum))
    if _received:
        _stopper(stop, _received[0])()


def _stopper(stop: asyncio.Event, signum: int) -> Callable[[], None]:
    def handle() -> None:
        logger.info("received %s: shutting down", signal.Signals(signum).name)
        stop.set()

    return handle
