"""``tasks[].retries`` in the Job: ``backoffLimit`` and a ``podFailurePolicy`` (valid for
``kubernetes-validate --strict``); a task without retries gets exactly the Job it got before."""

from __future__ import annotations

import json

from jes.runner.kubernetes import manifests
from tests.conftest import k8s_valid
from tests.runner.kubernetes.test_manifests import job_for, plan_for

PLAIN = "      - name: t\n        image: alpine\n        cmd: [sh]\n"


def test_without_retries_the_job_is_unchanged() -> None:
    plain, zero = job_for(PLAIN), job_for(PLAIN + "        retries: 0\n")
    for job in (plain, zero):  # the config's hash differs, as the config's text does
        del job["metadata"]["labels"][manifests.LABEL_CONFIG_HASH]
    assert json.dumps(plain, sort_keys=False) == json.dumps(zero, sort_keys=False)
    assert list(plain["spec"]) == ["backoffLimit", "ttlSecondsAfterFinished", "template"]
    assert plain["spec"]["backoffLimit"] == 0 and "podFailurePolicy" not in plain["spec"]


def test_retries_on_any_exit_code_set_the_backoff_limit_and_ignore_disruptions() -> None:
    job = job_for(PLAIN + "        retries: 3\n")
    assert job["spec"]["backoffLimit"] == 3
    assert job["spec"]["podFailurePolicy"] == {
        "rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]
    }
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"  # required with a podFailurePolicy


def test_retry_on_exit_codes_fails_the_job_on_any_other_code_of_the_task_container() -> None:
    job = job_for(PLAIN + "        retries: 2\n        retryOnExitCodes: [42, 2]\n")
    container = job["spec"]["template"]["spec"]["containers"][0]["name"]
    assert job["spec"]["backoffLimit"] == 2
    assert job["spec"]["podFailurePolicy"]["rules"][1] == {
        "action": "FailJob",
        "onExitCodes": {"containerName": container, "operator": "NotIn", "values": [2, 42]},  # ascending
    }


def test_a_task_with_files_and_retries_is_valid_too() -> None:
    result = plan_for(PLAIN + "        retries: 1\n        retryOnExitCodes: [1]\n        files: [a.txt]\n")
    task = result.actions[0].tasks[0]
    settings = manifests.JobSettings()
    job = manifests.build_job(task, result.event, config_hash=result.config_hash, settings=settings, files={"a.txt": 3})
    k8s_valid(job)
    assert job["spec"]["template"]["spec"]["initContainers"]
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert rules[1]["onExitCodes"]["containerName"] == job["spec"]["template"]["spec"]["containers"][0]["name"]
