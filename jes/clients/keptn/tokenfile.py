"""The Keptn API token read from a file, again whenever the file changes."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable

from jes.settings import token_from_file

logger = logging.getLogger("jes.clients.keptn.auth")

Clock = Callable[[], float]


class TokenFile:
    """The API token in a file (``KEPTN_API_TOKEN_FILE``; the chart mounts the Secret there).

    Kubernetes updates a mounted Secret in place when it changes, so the file is read again when
    its modification time changes (looked at no more than once a second): a rotated token heals
    jes without a restart. Every value it ever had is remembered, so none is ever logged.
    """

    def __init__(self, path: str, *, clock: Clock = time.monotonic, recheck_s: float = 1.0) -> None:
        self.path = path
        self._clock = clock
        self._recheck_s = recheck_s
        self._checked_at = -math.inf
        self._mtime: float | None = None
        self._value = ""
        self.seen: list[str] = []
        self.current()

    def current(self) -> str:
        now = self._clock()
        if now - self._checked_at < self._recheck_s:
            return self._value
        self._checked_at = now
        try:
            mtime = os.stat(self.path).st_mtime
            if mtime != self._mtime:
                problems: list[str] = []
                value = token_from_file(self.path, problems)
                if problems:
                    raise OSError(problems[0])
                self._value, self._mtime = value, mtime
                if value and value not in self.seen:
                    self.seen.append(value)
        except OSError as exc:
            logger.warning("KEPTN_API_TOKEN_FILE %s: %s; keeping the token read before",
                           self.path, exc.strerror or exc)  # fmt: skip
        return self._value
