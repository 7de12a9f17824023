"""Loading a seed directory into the local control plane (``jes control-plane --seed DIR``).

Layout (DESIGN.md)::

    DIR/<project>/shipyard.yaml                        the project's shipyard
    DIR/<project>/resources/<uri>                      project-level resources
    DIR/<project>/<stage>/resources/<uri>              stage-level resources
    DIR/<project>/<stage>/<service>/resources/<uri>    service-level resources; the folder
                                                       <project>/<stage>/<service>/ creates the service

Each level's files become one commit. Every problem is reported at once as a
:class:`errors.SettingsError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

from jes import errors
from jes.devtools.controlplane import models, projects, state

RESOURCES_DIR = "resources"


def load(cp_state: state.ControlPlaneState, seed_dir: str | Path) -> list[str]:
    """Create the projects of ``seed_dir``; their names."""
    root = Path(seed_dir)
    if not root.is_dir():
        raise errors.SettingsError([f"--seed {root}: not a directory"])
    problems: list[str] = []
    names = []
    for project_dir in _subdirs(root):
        try:
            _load_project(cp_state, project_dir)
            names.append(project_dir.name)
        except _SeedProblem as exc:
            problems.append(str(exc))
    if problems:
        raise errors.SettingsError(problems)
    return names


class _SeedProblem(Exception):
    pass


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _files(resources_dir: Path) -> dict[str, bytes | None]:
    if not resources_dir.is_dir():
        return {}
    return {
        file.relative_to(resources_dir).as_posix(): file.read_bytes()
        for file in sorted(resources_dir.rglob("*"))
        if file.is_file()
    }


def _load_project(cp_state: state.ControlPlaneState, project_dir: Path) -> None:
    shipyard_file = project_dir / projects.SHIPYARD_URI
    if not shipyard_file.is_file():
        raise _SeedProblem(
            f"{shipyard_file}: missing — every folder in --seed is a project and needs its shipyard.yaml "
            "(layout: <project>/shipyard.yaml, <project>/<stage>/<service>/resources/...; "
            "`jes control-plane --hello-world` serves an example)"
        )
    name = project_dir.name
    try:
        cp_state.create_project(name, shipyard_file.read_text(encoding="utf-8"))
        _write(cp_state, name, None, None, _files(project_dir / RESOURCES_DIR))
        shipyard = projects.parse_shipyard(shipyard_file.read_text(encoding="utf-8"))
        for stage_dir in _subdirs(project_dir):
            if stage_dir.name == RESOURCES_DIR:
                continue
            if shipyard.stage(stage_dir.name) is None:
                raise _SeedProblem(f"{stage_dir}: stage {stage_dir.name!r} is not in {shipyard_file}")
            _load_stage(cp_state, name, stage_dir)
    except models.ApiProblem as exc:
        raise _SeedProblem(f"{project_dir}: {exc.message}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise _SeedProblem(f"{project_dir}: {exc}") from exc


def _load_stage(cp_state: state.ControlPlaneState, project: str, stage_dir: Path) -> None:
    _write(cp_state, project, stage_dir.name, None, _files(stage_dir / RESOURCES_DIR))
    for service_dir in _subdirs(stage_dir):
        if service_dir.name == RESOURCES_DIR:
            continue
        if service_dir.name not in cp_state.services(project):
            cp_state.create_service(project, service_dir.name)
        _write(cp_state, project, stage_dir.name, service_dir.name, _files(service_dir / RESOURCES_DIR))


def _write(
    cp_state: state.ControlPlaneState,
    project: str,
    stage: str | None,
    service: str | None,
    files: dict[str, bytes | None],
) -> None:
    if files:
        cp_state.write_resources(project, stage, service, files)
