"""What goes wrong while finding work: the kind of each failure (for metrics), the server's
Retry-After, and problems logged once per change rather than on every attempt.

Nothing here stops the poller: it only classifies and tells. Messages never carry the token (the
client has scrubbed it from the errors already).
"""

from __future__ import annotations

import enum
import logging

from jes import errors


class ErrorKind(enum.StrEnum):
    """Why a poll failed (the ``kind`` given to ``on_poll_error``)."""

    AUTH = "auth"
    """401/403: wrong token or OAuth client, or a missing permission."""
    NOT_FOUND = "not_found"
    TEMPORARY = "temporary"
    """Connection error, timeout, 5xx, 429, or an answer that is not the promised JSON."""
    PERMANENT = "permanent"
    """Another 4xx."""
    CALLBACK = "callback"
    """``on_event`` raised; the event is offered again on the next poll."""


def error_kind(exc: errors.KeptnError) -> ErrorKind:
    if isinstance(exc, errors.KeptnAuthError):
        return ErrorKind.AUTH
    if isinstance(exc, errors.KeptnNotFoundError):
        return ErrorKind.NOT_FOUND
    if isinstance(exc, errors.Temporary):
        return ErrorKind.TEMPORARY
    return ErrorKind.PERMANENT


def retry_after_s(exc: errors.KeptnError) -> float:
    """The server's Retry-After (0 when it gave none)."""
    if isinstance(exc, errors.KeptnTemporaryError) and exc.retry_after_s is not None:
        return exc.retry_after_s
    return 0.0


class ProblemLog:
    """Logs a problem when it starts or changes and once more when it is over; a problem that
    merely goes on is logged at debug level, so an outage does not flood the log.

    ``logger`` is the caller's, so that the records name the component that had the problem.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._problems: dict[str, str] = {}
        self._unknown_projects: set[str] = set()

    def problem(self, scope: str, exc: errors.KeptnError, *, retry_every_s: float) -> None:
        """``scope`` (e.g. "heartbeat", "polling <type>") failed with ``exc``."""
        message = str(exc)
        if self._problems.get(scope) == message:
            self._logger.debug("%s still failing: %s", scope, message)
            return
        self._problems[scope] = message
        if isinstance(exc, errors.KeptnAuthError):
            self._logger.error(
                "%s: the control plane refused the credentials: %s; retrying every %.0fs",
                scope,
                message,
                retry_every_s,
            )
        elif isinstance(exc, errors.Permanent):
            self._logger.error("%s failed: %s", scope, message)
        else:
            self._logger.warning("%s failed: %s", scope, message)

    def recovery(self, scope: str) -> None:
        """``scope`` worked: say so if it had failed."""
        if self._problems.pop(scope, None) is not None:
            self._logger.info("%s works again", scope)

    def unknown_project(self, project: str, exc: errors.KeptnError) -> None:
        """The control plane does not know ``project`` (a filter names it)."""
        if project not in self._unknown_projects:
            self._unknown_projects.add(project)
            self._logger.warning("project %r is unknown to the control plane; no events for it (%s)", project, exc)

    def project_known(self, project: str) -> None:
        """A poll filtered by ``project`` worked: a later 404 for it is news again."""
        self._unknown_projects.discard(project)
