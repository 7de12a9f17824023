"""Projects, their shipyards, stages and services.

A project has a shipyard (its stages, sequences and tasks) and a list of services that, as in
Keptn, exist in every stage. Creating a project commits ``shipyard.yaml`` to its default branch
and creates one branch per stage. :meth:`ProjectRegistry.ensure` creates whatever is missing on
the fly (a generated shipyard, a stage, a service) for test and benchmark hooks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import yaml
from pydantic import ValidationError

from jes.devtools.controlplane import keptntime, models, resources
from jes.devtools.controlplane.shipyard import Shipyard

SHIPYARD_URI = "shipyard.yaml"


@dataclass
class Project:
    name: str
    shipyard: Shipyard
    shipyard_yaml: str
    created: datetime
    services: list[str] = field(default_factory=list)

    @property
    def stage_names(self) -> list[str]:
        return [stage.name for stage in self.shipyard.spec.stages]

    def has_stage(self, stage: str) -> bool:
        return self.shipyard.stage(stage) is not None

    def as_json(self) -> dict[str, Any]:
        """The project as the shipyard-controller's project API shows it."""
        return {
            "projectName": self.name,
            "creationDate": keptntime.keptn_time(self.created),
            "shipyard": self.shipyard_yaml,
            "shipyardVersion": self.shipyard.apiVersion,
            "stages": [
                {"stageName": stage, "services": [{"serviceName": s} for s in self.services]}
                for stage in self.stage_names
            ],
        }


def parse_shipyard(text: str) -> Shipyard:
    """Parse shipyard YAML; :class:`models.ApiProblem` (400) says what is wrong."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise models.ApiProblem(400, f"invalid shipyard: not valid YAML ({exc})") from None
    if not isinstance(document, dict):
        raise models.ApiProblem(400, "invalid shipyard: expected a YAML mapping")
    try:
        return Shipyard.model_validate(document)
    except ValidationError as exc:
        raise models.ApiProblem(400, f"invalid shipyard: {models.first_problem(exc)}") from None


def generated_shipyard(project: str, stages: list[str]) -> str:
    document: dict[str, Any] = {
        "apiVersion": "spec.keptn.sh/0.2.2",
        "kind": "Shipyard",
        "metadata": {"name": f"shipyard-{project}"},
        "spec": {"stages": [{"name": stage} for stage in stages]},
    }
    return yaml.safe_dump(document, sort_keys=False)


class ProjectRegistry:
    """All projects; not thread-safe (the state's lock guards it)."""

    def __init__(self, store: resources.ResourceStore) -> None:
        self._store = store
        self.projects: dict[str, Project] = {}

    def get(self, name: str) -> Project | None:
        return self.projects.get(name)

    def create(self, name: str, shipyard_yaml: str, at: datetime) -> Project:
        if name in self.projects:
            raise models.ApiProblem(409, f"project {name} already exists")
        shipyard = parse_shipyard(shipyard_yaml)
        project = Project(name=name, shipyard=shipyard, shipyard_yaml=shipyard_yaml, created=at)
        self._store.create_branch(name, None, at)
        self._store.write(name, None, {("", SHIPYARD_URI): shipyard_yaml.encode()}, at)
        for stage in project.stage_names:
            self._store.create_branch(name, stage, at)
        self.projects[name] = project
        return project

    def delete(self, name: str) -> bool:
        if self.projects.pop(name, None) is None:
            return False
        self._store.drop_project(name)
        return True

    def add_service(self, project_name: str, service: str) -> None:
        project = self.projects.get(project_name)
        if project is None:
            raise models.ApiProblem(404, "project not found")
        if service in project.services:
            raise models.ApiProblem(409, f"service {service} already exists")
        project.services.append(service)

    def ensure(self, project_name: str, stage: str | None, service: str | None, at: datetime) -> Project:
        """The project, with ``stage`` and ``service`` — created when missing."""
        project = self.projects.get(project_name)
        if project is None:
            project = self.create(project_name, generated_shipyard(project_name, [stage] if stage else []), at)
        if stage is not None and not project.has_stage(stage):
            self._add_stage(project, stage, at)
        if service is not None and service not in project.services:
            project.services.append(service)
        return project

    def _add_stage(self, project: Project, stage: str, at: datetime) -> None:
        document = project.shipyard.model_dump(exclude_none=True)
        document["spec"]["stages"].append({"name": stage})
        project.shipyard = Shipyard.model_validate(document)
        project.shipyard_yaml = yaml.safe_dump(document, sort_keys=False)
        self._store.write(project.name, None, {("", SHIPYARD_URI): project.shipyard_yaml.encode()}, at)
        self._store.create_branch(project.name, stage, at)
