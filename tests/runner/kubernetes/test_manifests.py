"""The batch/v1 Job builder: names, labels, the pod, files; every manifest passes the real schemas."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jes import settings as jes_settings
from jes.commands import copy_files as filecopy
from jes.matcher import config
from jes.matcher import matching as matcher
from jes.models import Plan, job_name
from jes.runner.kubernetes import manifests
from jes.util import parsing
from tests.conftest import k8s_valid

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
EVENT: dict[str, Any] = {
    "id": "f2b878d3-03c0-4e8f-bc3f-454bc1b3d79b",
    "type": "sh.keptn.event.test.triggered",
    "source": "shipyard-controller",
    "shkeptncontext": "08735340-6f9e-4b32-97ff-3b6c292bc50a",
    "gitcommitid": "7a1c0e5b",
    "data": {"project": "sockshop", "stage": "dev", "service": "carts", "labels": {"build-id": "17"}},
}


def plan_for(tasks_yaml: str, *, event: dict[str, Any] | None = None, executor: matcher.Executor | None = None) -> Plan:
    loaded = config.load(
        "apiVersion: v2\nactions:\n  - name: 'Some fancy action name ...'\n    events: [{name: ''}]\n    tasks:\n" + tasks_yaml
    )
    return matcher.plan(loaded, event or EVENT, executor or matcher.executor_from_settings(jes_settings.Settings()))


def job_for(tasks_yaml: str, job_settings: manifests.JobSettings | None = None, **kwargs: Any) -> dict[str, Any]:
    result = plan_for(tasks_yaml, **kwargs)
    task = result.actions[0].tasks[0]
    job = manifests.build_job(
        task, result.event, config_hash=result.config_hash, settings=job_settings or manifests.JobSettings(), files=None
    )
    k8s_valid(job)
    return job


# ---------------------------------------------------------------------------------------------
# names


def test_job_name_is_deterministic_short_and_distinguishes_tasks() -> None:
    name = job_name("f2b878d3-03c0-4e8f-bc3f-454bc1b3d79b", 0, 0)
    assert name == job_name("f2b878d3-03c0-4e8f-bc3f-454bc1b3d79b", 0, 0)
    assert name.startswith("jes-f2b878d3-03c-") and name.endswith("-000-001")
    names = {job_name("f2b878d3-03c0-4e8f-bc3f-454bc1b3d79b", a, t) for a in range(3) for t in range(3)}
    assert len(names) == 9
    # upstream cut ids to 24 characters: two ids with one prefix collided
    assert job_name("f2b878d3-03c0-4e8f-bc3f-454bc1b3d79b", 0, 0) != job_name(
        "f2b878d3-03c0-4e8f-bc3f-000000000000", 0, 0
    )
    # ids differing only in case are different events
    assert job_name("ABC", 0, 0) != job_name("abc", 0, 0)
    # each executor (namespace/location) has its own Jobs for the same event
    assert job_name("abc", 0, 0, executor="jes-eu/EU") != job_name("abc", 0, 0, executor="jes-apac/APAC")
    assert job_name("abc", 0, 0, executor="team-a/-") != job_name("abc", 0, 0, executor="team-b/-")


@pytest.mark.parametrize("event_id", ["", "1", "ABC", "a b/c?d", "---", "é漢字", "x" * 300, "f2b878d3-03c0-4e8f-bc3f-454bc1b3d79b"])
def test_job_name_is_a_valid_dns_label_for_odd_ids(event_id: str) -> None:
    name = job_name(event_id, 12, 345)
    assert DNS_LABEL.match(name) and len(name) <= 45, name


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80), st.integers(0, 999), st.integers(0, 998))
def test_job_name_property(event_id: str, action: int, task: int) -> None:
    name = job_name(event_id, action, task)
    assert DNS_LABEL.match(name) and len(name) <= 45


@settings(max_examples=100, deadline=None)
@given(st.sets(st.text(max_size=40), min_size=2, max_size=30))
def test_distinct_ids_give_distinct_names(ids: set[str]) -> None:
    assert len({job_name(i, 0, 0) for i in ids}) == len(ids)


@pytest.mark.parametrize(
    ("raw", "label"),
    [
        ("Some fancy action name ...", "Some_fancy_action_name"),
        ("--NameThat's not Compatible with k8s []{}///// a....", "NameThat_s_not_Compatible_with_k8s_a"),
        ("Test Action", "Test_Action"),
        ("x" * 80, "x" * 63),
    ],
)
def test_label_sanitising_follows_upstream(raw: str, label: str) -> None:
    assert manifests.sanitise_label_value(raw) == label


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=100))
def test_sanitised_labels_are_always_valid(raw: str) -> None:
    assert not parsing.label_problems({"k": manifests.sanitise_label_value(raw)})


# ---------------------------------------------------------------------------------------------
# the Job


def test_job_shape_for_a_plain_task() -> None:
    job_settings = manifests.JobSettings(
        managed_by="job-executor-service",
        job_labels={"team": "qa", "keptn.sh/context": "overridden"},
        pod_security_context={"runAsUser": 1000, "fsGroup": 2000},
    )
    job = job_for(
        "      - name: 'Run locust'\n        image: locustio/locust\n        cmd: [locust]\n        args: [-f, x.py]\n"
        "        workingDir: /keptn\n        annotations: {vault.hashicorp.com/agent-inject: 'true'}\n"
        "        env: [{name: A, value: b, valueFrom: string}, {name: creds, valueFrom: secret}]\n",
        job_settings,
    )
    metadata, spec = job["metadata"], job["spec"]
    assert metadata["name"] == job_name(EVENT["id"], 0, 0)
    assert metadata["namespace"] == "default"
    assert metadata["labels"] == {
        "team": "qa",
        "app.kubernetes.io/managed-by": "job-executor-service",
        "keptn.sh/context": "08735340-6f9e-4b32-97ff-3b6c292bc50a",  # generated labels win
        "keptn.sh/event-id": EVENT["id"],
        "keptn.sh/commitid": "7a1c0e5b",
        "keptn.sh/jes-action": "Some_fancy_action_name",
        "keptn.sh/jes-task": "Run_locust",
        "keptn.sh/jes-job-confighash": metadata["labels"]["keptn.sh/jes-job-confighash"],
        "keptn.sh/jes-action-index": "0",
        "keptn.sh/jes-task-index": "0",
    }
    assert re.fullmatch(r"[0-9a-f]{56}", metadata["labels"]["keptn.sh/jes-job-confighash"])
    assert metadata["annotations"]["vault.hashicorp.com/agent-inject"] == "true"
    assert spec["backoffLimit"] == 0 and spec["ttlSecondsAfterFinished"] == 21600
    assert "activeDeadlineSeconds" not in spec
    pod = spec["template"]["spec"]
    assert spec["template"]["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "job-executor-service"}
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"] == {"runAsUser": 1000, "fsGroup": 2000}
    assert "initContainers" not in pod and "serviceAccountName" not in pod
    assert pod["volumes"] == [{"name": "job-volume", "emptyDir": {"sizeLimit": "20Mi"}}]
    (container,) = pod["containers"]
    assert container["name"] == metadata["name"]
    assert (container["image"], container["command"], container["args"], container["workingDir"]) == (
        "locustio/locust",
        ["locust"],
        ["-f", "x.py"],
        "/keptn",
    )
    assert container["env"][0] == {"name": "A", "value": "b"}
    assert [e["name"] for e in container["env"]] == ["A", "KEPTN_PROJECT", "KEPTN_STAGE", "KEPTN_SERVICE", "LABELS_BUILD_ID"]
    assert container["envFrom"] == [{"secretRef": {"name": "creds"}}]
    assert container["resources"] == {"limits": {"cpu": "1", "memory": "512Mi"}, "requests": {"cpu": "50m", "memory": "128Mi"}}
    assert container["volumeMounts"] == [{"name": "job-volume", "mountPath": "/keptn"}]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_optional_fields_deadline_service_account_pull_secrets_and_empty_resources() -> None:
    job = job_for(
        "      - name: t\n        image: alpine\n        imagePullPolicy: Always\n        serviceAccount: runner\n"
        "        namespace: carts\n        resources: {}\n        imagePullSecrets: [regcred, other]\n"
        "        ttlSecondsAfterFinished: 5\n",
        manifests.JobSettings(task_deadline_seconds=30),
    )
    pod = job["spec"]["template"]["spec"]
    assert job["metadata"]["namespace"] == "carts"
    assert job["spec"]["activeDeadlineSeconds"] == 30
    assert job["spec"]["ttlSecondsAfterFinished"] == 60
    assert pod["serviceAccountName"] == "runner"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "other"}]
    container = pod["containers"][0]
    assert "resources" not in container and "command" not in container and "args" not in container
    assert container["imagePullPolicy"] == "Always"


def test_files_become_configmaps_a_projected_volume_and_an_init_container() -> None:
    result = plan_for("      - name: t\n        image: alpine\n        files: [locust/basic.py, /helm]\n")
    task = result.actions[0].tasks[0]
    files = {"locust/basic.py": b"print(1)\n", "helm/values.yaml": b"a: 1\n", "helm/sub/chart.tgz": bytes(range(256))}
    sizes = {path: len(content) for path, content in files.items()}
    job_settings = manifests.JobSettings(init_image="ghcr.io/jes-project/jes:9.9.9")
    job = manifests.build_job(task, result.event, config_hash=result.config_hash, settings=job_settings, files=sizes)
    k8s_valid(job)
    pod = job["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["image"] == "ghcr.io/jes-project/jes:9.9.9"
    assert init["command"] == ["jes", "copy-files", "/jes-files", "/keptn"]
    assert init["securityContext"] == pod["containers"][0]["securityContext"]
    assert {m["mountPath"] for m in init["volumeMounts"]} == {"/keptn", "/jes-files"}
    projected = next(v for v in pod["volumes"] if v["name"] == "job-files")["projected"]["sources"]
    items = {i["path"]: (s["configMap"]["name"], i["key"]) for s in projected for i in s["configMap"]["items"]}
    assert set(items) == set(files)
    config_maps = manifests.build_config_maps(job, lambda piece: files[piece.source], sizes)
    by_name = {cm["metadata"]["name"]: cm for cm in config_maps}
    for path, (cm_name, key) in items.items():
        k8s_valid(by_name[cm_name])
        assert base64.b64decode(by_name[cm_name]["binaryData"][key]) == files[path]
        assert by_name[cm_name]["metadata"]["namespace"] == job["metadata"]["namespace"]
    text = str(job)
    assert "token" not in text.lower()


def test_large_files_are_spread_over_several_configmaps() -> None:
    sizes = {f"f{i}.bin": 400 * 1024 for i in range(5)}
    chunks = manifests.file_pieces(sizes)
    assert [len(c) for c in chunks] == [2, 2, 1]
    assert all(sum(p.length for p in chunk) <= manifests.CONFIGMAP_CHUNK_BYTES for chunk in chunks)
    assert manifests.file_pieces({}) == []


def test_a_file_bigger_than_a_configmap_is_cut_into_pieces_the_init_container_joins(tmp_path: Path) -> None:
    """A ConfigMap holds 1 MiB at most: a 5 MiB file goes as six pieces, each in its own ConfigMap,
    and ``jes copy-files`` puts it together again, byte for byte."""
    content = bytes(range(256)) * (5 * 1024 * 1024 // 256)
    files = {"small.txt": b"hi\n", "data/big.bin": content}
    sizes = {path: len(data) for path, data in files.items()}
    pieces = manifests.file_pieces(sizes)
    assert len(pieces) == 6 and all(sum(p.length for p in chunk) <= manifests.CONFIGMAP_CHUNK_BYTES for chunk in pieces)
    job = {"metadata": {"name": "j", "namespace": "ns", "labels": {}}}
    volume = tmp_path / "projected"
    for config_map in manifests.build_config_maps(job, lambda p: files[p.source][p.offset : p.offset + p.length], sizes):
        k8s_valid(config_map)
        assert len(json.dumps(config_map)) < 1536 * 1024
        index = int(config_map["metadata"]["name"].rsplit("-", 1)[1])
        for piece in pieces[index]:  # as the kubelet projects the items
            target = volume / piece.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(base64.b64decode(config_map["binaryData"][piece.key]))
    keptn = tmp_path / "keptn"
    assert filecopy.copy_tree(volume, keptn) == 2
    assert (keptn / "data/big.bin").read_bytes() == content and (keptn / "small.txt").read_bytes() == b"hi\n"
    assert not (keptn / ".jes-parts").exists()


def test_settings_shape_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FULL_DEPLOYMENT_NAME", "jes-eu")
    monkeypatch.setenv("TASK_DEADLINE_SECONDS", "10")
    monkeypatch.setenv("JES_JOB_LABELS", '{"region": "eu"}')
    monkeypatch.setenv("JES_POD_SECURITY_CONTEXT", '{"RunAsUser": 1000, "RunAsNonRoot": true}')
    monkeypatch.setenv("JOB_NAMESPACE", "keptn-jes-eu")
    current = jes_settings.load()
    job = job_for("      - name: t\n        image: alpine\n", manifests.JobSettings.from_settings(current), executor=matcher.executor_from_settings(current))
    assert job["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "jes-eu"
    assert job["metadata"]["labels"]["region"] == "eu"
    assert job["metadata"]["namespace"] == "keptn-jes-eu"
    assert job["spec"]["activeDeadlineSeconds"] == 10
    assert job["spec"]["template"]["spec"]["securityContext"] == {"runAsUser": 1000, "runAsNonRoot": True}


@settings(max_examples=60, deadline=None)
@given(
    event_id=st.text(min_size=1, max_size=50),
    context=st.text(max_size=50),
    action_name=st.text(max_size=70),
    labels=st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=10), max_size=3),
)
def test_any_event_gives_a_valid_job(event_id: str, context: str, action_name: str, labels: dict[str, str]) -> None:
    event = {**EVENT, "id": event_id, "shkeptncontext": context, "data": {**EVENT["data"], "labels": labels}}
    loaded = config.load(
        "apiVersion: v2\nactions:\n  - name: " + _yaml_string(action_name) + "\n    events: [{name: ''}]\n"
        "    tasks: [{name: t, image: alpine, cmd: [echo]}]\n"
    )
    result = matcher.plan(loaded, event, matcher.Executor())
    job = manifests.build_job(result.actions[0].tasks[0], result.event, config_hash=result.config_hash, settings=manifests.JobSettings())
    k8s_valid(job)
    assert not parsing.label_problems(job["metadata"]["labels"])


def _yaml_string(text: str) -> str:
    import json

    return json.dumps(text)


def test_label_and_annotation_keys_are_an_interface() -> None:
    """Other replicas, older versions and users' selectors read these keys: they never change
    (a module move once rewrote ``jes.keptn.sh`` keys by accident)."""
    from jes.ledger import leases

    job = job_for("      - name: 'Run locust'\n        image: locustio/locust\n")
    assert set(job["metadata"]["annotations"]) >= {"jes.keptn.sh/event-id", "jes.keptn.sh/task"}
    assert set(job["metadata"]["labels"]) >= {
        "app.kubernetes.io/managed-by", "keptn.sh/context", "keptn.sh/event-id", "keptn.sh/commitid",
        "keptn.sh/jes-action", "keptn.sh/jes-task", "keptn.sh/jes-job-confighash",
    }  # fmt: skip
    keys = (leases.RECORD_ANNOTATION, leases.CLAIM_LABEL, leases.STATE_LABEL, leases.EXECUTOR_LABEL)
    assert keys == ("jes.keptn.sh/claim", "jes.keptn.sh/claim", "jes.keptn.sh/state", "jes.keptn.sh/executor")
