"""What a task keeps of its Job manifest once the Job exists: the three values waiting and
finishing read, the same as the manifest says, and not the manifest."""

from __future__ import annotations

import pytest

from jes.models import TaskSpec
from jes.runner.kubernetes import manifests
from jes.runner.kubernetes.task import JobTask
from tests.runner.kubernetes import helpers


@pytest.mark.parametrize("outputs", [True, False])
def test_a_created_task_keeps_what_the_manifest_said_and_not_the_manifest(outputs: bool) -> None:
    name = "jes-e1-0123456789abcdef-000-001"
    spec = TaskSpec(task=helpers.task(namespace="team-a"), event=helpers.EVENT, job_name=name)
    built = JobTask.of(spec, manifests.job_for(spec, manifests.JobSettings(task_outputs=outputs)))
    created = built.created()
    assert (created.namespace, created.main_container, created.has_relay) == ("team-a", name, outputs)
    assert (built.namespace, built.main_container, built.has_relay) == ("team-a", name, outputs)
    assert created.job == {} and created.pod_spec == {}
    assert created.created().kept == created.kept  # (created twice: the same three values)
