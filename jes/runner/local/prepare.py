"""How a rendered task becomes a local process: its argv, environment, files, working directory and
limits, with the semantics a container would give them.

- **image**: not pulled; the task's log starts with one line saying so and what runs instead.
- **command**: ``cmd`` + ``args`` with container semantics: ``cmd`` replaces the image's
  entrypoint; without ``cmd`` the ``args`` alone are the command (there is no entrypoint to put
  in front); with neither the task errors. ``$(VAR)`` references are expanded from the task's
  environment as the kubelet does (:func:`expand`). The argv is executed directly, never through a
  shell, and the program is looked up in the task's ``PATH``.
- **environment**: ``PATH``, ``HOME`` and ``LANG`` of jes (nothing else of jes's environment, so
  never its API token), ``JES_FILES_DIR``, then the task's variables built as the kubelet builds
  them: every ``EnvSecret`` contributes one variable per file ``<secrets dir>/<secret>/<key>``
  (content verbatim: ``printf`` rather than ``echo`` when writing one), then the literal entries in
  order, each value with ``$(VAR)`` expanded against the variables defined before it; for a name
  defined twice the later one wins. A task with API-proxy access then gets ``KEPTN_API_PROXY_URL``
  and ``KEPTN_API_PROXY_TOKEN`` (literal values, after everything else: nothing overrides them; the
  token reaches the shim on its stdin, never a file). ``$(VAR)`` in cmd and args sees only the
  task's variables.
- **files**: materialised in a fresh directory per task (``JES_FILES_DIR``), which stands in for
  the ``/keptn`` volume: a leading ``/keptn`` in cmd, args and workingDir is replaced by that
  directory, after ``$(VAR)`` expansion. Only whole leading paths are mapped (``-f /keptn/a.py``
  works, ``--file=/keptn/a.py`` does not), and environment values are not rewritten: a task that
  must also run locally can read ``JES_FILES_DIR``.
- **volumes** (``tasks[].volumes``): each is a directory of this machine, mapped like ``/keptn``:
  a leading ``mountPath`` in cmd, args and workingDir becomes that directory (the longest
  matching mount wins), and ``JES_VOLUME_<NAME>_DIR`` (the name upper-cased, ``-`` as ``_``) names
  it. An ``emptyDir`` is ``volumes/<name>`` in the task's own state directory (created empty,
  removed with it; ``sizeLimit`` is not enforced); a ``persistentVolumeClaim`` is
  ``<state dir>/volumes/<claimName>``, created on first use and kept, shared by every task and
  event naming the claim. ``readOnly`` cannot be enforced without mount namespaces: the directory
  stays writable (a Kubernetes task gets EROFS).
- **workingDir**: as given; a ``/keptn`` one is created inside the files directory (one under a
  volume's mountPath inside that volume's directory), a relative one is taken from the files
  directory, an empty one means the files directory. Other directories must exist.
- **limits**: the task's ``maxPollDuration`` (Status.TIMED_OUT) and the Job's
  ``activeDeadlineSeconds`` (Status.DEADLINE_EXCEEDED) stop the task's whole process group:
  SIGTERM, then SIGKILL after ``kill_grace_s`` (the shim enforces them). When the task's main
  process ends, what is left of its group is killed, as a container's processes end with it
  (processes that start a session of their own escape this, as they would escape any supervisor
  without cgroups).
- **retries**: a task with ``retries`` is run again by the shim, at once, after an exit code the
  rule allows (:meth:`~jes.models.RenderedTask.may_retry`); the limits count from its first start.

A task that cannot be prepared is :class:`~jes.runner.local.outcome.Refused`; the errors a kubelet
would report (a missing secret, a working directory that does not exist) as CANNOT_START with the
kubelet's reason.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from jes.models import (
    API_PROXY_TOKEN_ENV,
    API_PROXY_URL_ENV,
    OUTPUT_FILE_ENV,
    EnvSecret,
    EnvValue,
    RenderedTask,
    Status,
    TaskFiles,
    TaskSpec,
)
from jes.runner.local.outcome import Refused, cannot_start

KEPTN_DIR = "/keptn"
BASE_ENV = ("PATH", "HOME", "LANG")

_SECRET_KEY = re.compile(r"^[-._A-Za-z0-9]+$")
_NOTE_COMMAND_CHARS = 300


@dataclass(frozen=True)
class Launch:
    """What the shim needs to start one task."""

    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: Path
    files: dict[PurePosixPath, Path]
    """Where each file goes under the files folder → where it is spooled now."""
    limits: tuple[tuple[str, int], ...]
    note: str
    volume_dirs: tuple[Path, ...] = ()
    """The task's volumes' directories, created (if missing) before it starts."""
    retries: int = 0
    """Further attempts after a failure (``tasks[].retries``); the shim runs them."""
    retry_on_exit_codes: tuple[int, ...] = ()


def expand(text: str, variables: Mapping[str, str]) -> str:
    """Expand ``$(VAR)`` in ``text`` the way the kubelet expands container commands and env.

    ``$$`` is an escaped ``$`` (so ``$$(VAR)`` gives a literal ``$(VAR)``); a reference to an
    unknown variable, an unclosed ``$(`` and any other ``$`` stay as they are.
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$" or i + 1 == len(text):
            out.append(char)
            i += 1
            continue
        following = text[i + 1]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "(" and (close := text.find(")", i + 2)) != -1:
            name = text[i + 2 : close]
            out.append(variables.get(name, f"$({name})"))
            i = close + 1
        else:
            out.append(char + following)
            i += 2
    return "".join(out)


def prepare(
    spec: TaskSpec,
    files_dir: Path,
    *,
    secrets_dir: Path | None,
    deadline_s: int,
    volume_dirs: Mapping[str, Path] | None = None,
    output_file: Path | None = None,
) -> Launch:
    """The launch of ``spec`` with its files in ``files_dir``; ``deadline_s``: activeDeadlineSeconds;
    ``volume_dirs``: the directory of each of the task's volumes, by mountPath; ``output_file``: the
    task's ``$KEPTN_OUTPUT_FILE`` (None: task outputs are off)."""
    task = spec.task
    command = [*(task.cmd or ()), *(task.args or ())]
    if not command:
        raise Refused(
            Status.ERROR,
            f"task {task.name!r} has neither cmd nor args: the local runner needs a cmd, "
            f"since there is no image entrypoint to run (image {task.image!r} is not pulled)",
        )
    files = _file_paths(spec.files)
    variables = _task_variables(task, secrets_dir)
    if spec.api_proxy is not None:
        variables |= {API_PROXY_URL_ENV: spec.api_proxy.url, API_PROXY_TOKEN_ENV: spec.api_proxy.token}
    if output_file is not None:
        variables[OUTPUT_FILE_ENV] = str(output_file)  # jes's, as on Kubernetes: it replaces the task's own
    mounts = _mounts(files_dir, volume_dirs or {})
    argv = tuple(_map_path(expand(part, variables), mounts) for part in command)
    env = {**base_env(), "JES_FILES_DIR": str(files_dir), **volume_env(task, volume_dirs or {}), **variables}
    _check_no_nul(argv, env)
    return Launch(
        argv=argv,
        env=env,
        cwd=_working_dir(task.working_dir, files_dir, mounts),
        files=files,
        limits=_limits(spec, deadline_s),
        note=_note(task, command),
        volume_dirs=tuple((volume_dirs or {}).values()),
        retries=task.retries,
        retry_on_exit_codes=task.retry_on_exit_codes,
    )


def volume_variable(name: str) -> str:
    """``JES_VOLUME_<NAME>_DIR``: where a volume is on this machine (``shared-data`` → ``SHARED_DATA``)."""
    return f"JES_VOLUME_{name.upper().replace('-', '_')}_DIR"


def volume_env(task: RenderedTask, volume_dirs: Mapping[str, Path]) -> dict[str, str]:
    dirs = {v.name: volume_dirs[v.mount_path] for v in task.volumes if v.mount_path in volume_dirs}
    return {volume_variable(name): str(folder) for name, folder in dirs.items()}


def _mounts(files_dir: Path, volume_dirs: Mapping[str, Path]) -> tuple[tuple[str, Path], ...]:
    """Container paths and their directories here, the longest path first (nested mounts)."""
    mounts = [(KEPTN_DIR, files_dir), *volume_dirs.items()]
    return tuple(sorted(mounts, key=lambda mount: len(mount[0]), reverse=True))


def _map_path(value: str, mounts: Iterable[tuple[str, Path]]) -> str:
    """A leading mount path replaced by its directory, once (a mapped path is never mapped again)."""
    for mount, folder in mounts:
        if value == mount or value.startswith(mount.rstrip("/") + "/"):
            return str(folder) + value[len(mount) :]
    return value


def base_env() -> dict[str, str]:
    """What every task (and the shim) gets of jes's environment."""
    env = {name: os.environ[name] for name in BASE_ENV if name in os.environ}
    env.setdefault("PATH", os.defpath)
    return env


def _task_variables(task: RenderedTask, secrets_dir: Path | None) -> dict[str, str]:
    """The task's variables as the kubelet builds them: secrets first, then literal entries."""
    variables: dict[str, str] = {}
    for entry in task.env:
        if isinstance(entry, EnvSecret):
            variables.update(_secret(entry.secret, secrets_dir))
    for entry in task.env:
        if isinstance(entry, EnvValue):
            variables[entry.name] = expand(entry.manifest_value, variables)
    return variables


def _secret(name: str, secrets_dir: Path | None) -> dict[str, str]:
    """The keys of a secret: one file each in ``<secrets_dir>/<name>/``."""
    if secrets_dir is None:
        raise cannot_start(
            f'CreateContainerConfigError: secret "{name}" not found: the local runner reads '
            "secrets from files DIR/<secret>/<key>; set JES_LOCAL_SECRETS_DIR=DIR"
        )
    folder = secrets_dir / name
    if "/" in name or name.startswith(".") or not folder.is_dir():
        raise cannot_start(f'CreateContainerConfigError: secret "{name}" not found (looked in {folder})')
    values: dict[str, str] = {}
    try:
        for path in sorted(folder.iterdir()):
            # Mounted Kubernetes secrets also hold ..data links and timestamped folders.
            if path.name.startswith("..") or path.is_dir():
                continue
            if not _SECRET_KEY.match(path.name):
                raise cannot_start(
                    f'CreateContainerConfigError: secret "{name}" has an invalid key {path.name!r} '
                    f"(file {path}); keys consist of letters, digits, '-', '_' and '.'"
                )
            values[path.name] = os.fsdecode(path.read_bytes())
    except OSError as exc:
        raise cannot_start(f'CreateContainerConfigError: cannot read secret "{name}": {exc}') from exc
    return values


def _working_dir(working_dir: str, files_dir: Path, mounts: tuple[tuple[str, Path], ...]) -> Path:
    if not working_dir:
        return files_dir
    mapped = _map_path(working_dir, mounts)
    path = Path(os.path.normpath(mapped if os.path.isabs(mapped) else files_dir / mapped))
    if any(path.is_relative_to(folder) for _, folder in mounts) or path.is_dir():
        return path
    raise cannot_start(
        f"StartError: working directory {working_dir!r} does not exist on this machine "
        "(the local runner creates only /keptn directories)"
    )


def _file_paths(files: TaskFiles) -> dict[PurePosixPath, Path]:
    paths: dict[PurePosixPath, Path] = {}
    for name in files.sizes:
        path = PurePosixPath(name.lstrip("/"))
        if name.startswith(KEPTN_DIR + "/"):
            path = PurePosixPath(name[len(KEPTN_DIR) + 1 :])
        if not path.parts or any(part in ("..", ".") for part in path.parts):
            raise Refused(Status.ERROR, f"file {name!r} does not name a file under {KEPTN_DIR}")
        paths[path] = files.path(name)
    return paths


def _limits(spec: TaskSpec, deadline_s: int) -> tuple[tuple[str, int], ...]:
    limits = [("maxPollDuration", spec.task.max_poll_duration_s)]
    if deadline_s > 0:
        limits.append(("activeDeadlineSeconds", deadline_s))
    return tuple(limits)


def _note(task: RenderedTask, command: Iterable[str]) -> str:
    shown = shlex.join(command)
    if len(shown) > _NOTE_COMMAND_CHARS:
        shown = shown[: _NOTE_COMMAND_CHARS - 3] + "..."
    image = task.image or "(none)"
    return f"local runner: image {image} is not pulled; running `{shown}` on this machine\n"


def _check_no_nul(argv: Iterable[str], env: Mapping[str, str]) -> None:
    for value in (*argv, *env.keys(), *env.values()):
        if "\0" in value:
            raise cannot_start("StartError: a command argument or environment variable contains a NUL byte")
    for name in env:
        if not name or "=" in name:
            raise cannot_start(f"StartError: {name!r} cannot be an environment variable name")
