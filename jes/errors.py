"""The one error tree of jes.

Foreign exceptions (httpx, the kubernetes client, yaml, pydantic, OS errors) are translated into
these where they enter jes, raised ``from`` the original. Every error is either *temporary*
(worth retrying with the backoff of :mod:`jes.util.retry`) or *permanent* (report it and move on)::

    JesError
    ├── SettingsError            bad environment variable or flag (permanent, at start)
    ├── ConfigError              job/config.yaml is invalid; carries ``problems`` (permanent)
    ├── EventError               an incoming event is malformed (permanent)
    ├── RenderError              a task cannot be rendered for this event, e.g. a JSONPath in
    │   │                        ``env`` finds nothing (permanent)
    │   └── PolicyError          image not in the allowlist, privileged container (permanent)
    ├── KeptnError               a control-plane call failed; ``url``, ``status``, ``server_message``
    │   ├── KeptnTemporaryError  connection error, timeout, 5xx, 429 (``retry_after_s``)
    │   └── KeptnPermanentError  any other 4xx
    │       ├── KeptnAuthError       401 / 403
    │       └── KeptnNotFoundError   404
    ├── NatsError                NATS unreachable, or a publish certainly did not leave (temporary)
    ├── KubeError                a Kubernetes API call failed
    │   ├── KubeTemporaryError   connection error, timeout, 5xx, 429
    │   └── KubePermanentError   any other 4xx
    │       ├── KubeConfigError      no usable cluster configuration (not in a cluster, no
    │       │                        kubeconfig): at start
    │       ├── KubeConflictError    409 (the object exists: adopt it)
    │       ├── KubeNotFoundError    404
    │       └── KubePermissionError  403; names verb, resource and namespace
    ├── RunnerError              a task could not be run at all (permanent)
    └── StateError               the crash-safety ledger cannot be read or written
        └── ClaimLost            another replica holds the claim now: stop working on the event

``Temporary`` and ``Permanent`` are marker bases, so callers can classify without knowing the
domain: ``except errors.Temporary``.
"""

from __future__ import annotations

from dataclasses import dataclass


class Temporary(Exception):
    """Marker: retrying later may succeed."""

    retry_after_s: float | None = None


class Permanent(Exception):
    """Marker: retrying will not help; report the error."""


class JesError(Exception):
    """Base of every error jes raises on purpose."""


class SettingsError(JesError, Permanent):
    """One or more settings are invalid; ``problems`` lists each as ``NAME: message``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid settings:\n" + "\n".join(f"  {p}" for p in self.problems))


@dataclass(frozen=True)
class Problem:
    """One finding in a config file: where it is, which field, what is wrong."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}:{self.column}: {where}{self.message}"


class ConfigError(JesError, Permanent):
    """A job/config.yaml cannot be used; ``problems`` says where and why."""

    def __init__(self, problems: list[Problem], warnings: list[Problem] | None = None) -> None:
        self.problems = list(problems)
        self.warnings = list(warnings or ())
        """Found in the same pass; they do not make the file invalid."""
        super().__init__("\n".join(str(p) for p in self.problems))


class EventError(JesError, Permanent):
    """An event is not a usable Keptn CloudEvent."""


class RenderError(JesError, Permanent):
    """A task cannot be turned into something runnable for this event."""


class PolicyError(RenderError):
    """A task breaks the executor's policy (image allowlist, privileged containers)."""


class KeptnError(JesError):
    """A call to the Keptn control plane failed.

    ``server_message`` is what the server said (its ``message`` field, or the start of the body);
    the API token is never part of any of these attributes.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        url: str = "",
        status: int | None = None,
        server_message: str = "",
    ) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.server_message = server_message
        super().__init__(message)


class KeptnTemporaryError(KeptnError, Temporary):
    """Connection error, timeout, 5xx or 429 from the control plane."""

    def __init__(self, message: str, *, retry_after_s: float | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after_s = retry_after_s


class KeptnPermanentError(KeptnError, Permanent):
    """A 4xx answer that retrying quickly will not fix."""


class KeptnAuthError(KeptnPermanentError):
    """401 or 403: the token (or OAuth client) is wrong or lacks a permission."""


class KeptnNotFoundError(KeptnPermanentError):
    """404: the project, stage, service, resource or integration does not exist."""


class NatsError(JesError, Temporary):
    """NATS cannot be reached, or a publish certainly did not leave; retried with backoff."""


class KubeError(JesError):
    """A Kubernetes API call failed."""

    def __init__(self, message: str, *, status: int | None = None, reason: str = "") -> None:
        self.status = status
        self.reason = reason
        super().__init__(message)


class KubeTemporaryError(KubeError, Temporary):
    """Connection error, timeout, 5xx or 429 from the Kubernetes API."""


class KubePermanentError(KubeError, Permanent):
    """A 4xx answer from the Kubernetes API."""


class KubeConfigError(KubePermanentError):
    """No usable cluster configuration: jes is not running in a cluster and has no kubeconfig."""


class KubeConflictError(KubePermanentError):
    """409: the object already exists."""


class KubeNotFoundError(KubePermanentError):
    """404: the object does not exist."""


class KubePermissionError(KubePermanentError):
    """403: jes's service account lacks a permission; the message names it."""

    def __init__(self, *, verb: str, resource: str, namespace: str, server_message: str = "") -> None:
        self.verb = verb
        self.resource = resource
        self.namespace = namespace
        message = (
            f"permission denied: jes may not {verb} {resource} in namespace {namespace!r}; "
            f"grant '{verb}' on '{resource}' to jes's service account in its Role"
        )
        if server_message:
            message += f" (server said: {server_message})"
        super().__init__(message, status=403, reason="Forbidden")


class RunnerError(JesError, Permanent):
    """A task could not be run at all (not a task failure: those are outcomes)."""


class StateError(JesError):
    """The crash-safety ledger cannot be read or written."""


class ClaimLost(StateError, Permanent):
    """The claim was changed by another replica (it took the event over): this process must stop
    working on the event at once and send nothing more for it."""
