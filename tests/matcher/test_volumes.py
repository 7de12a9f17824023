"""``tasks[].volumes``: shapes, the checks beyond them (each at file:line:col), the claim allowlist
in ``jes validate``'s policy and in the matcher, and the rendered task."""

from __future__ import annotations

import pytest

from jes import errors
from jes.matcher import checks, config, volumes
from jes.matcher import matching as matcher
from jes.models import TaskVolume
from tests.matcher.test_rendering import plan_action

HEAD = "apiVersion: v2\nactions:\n  - name: a\n    events: [{name: x}]\n    tasks:\n      - name: t\n        image: alpine\n"
GOOD = """        volumes:
          - name: cache
            mountPath: /cache
            emptyDir: {sizeLimit: 1Gi}
          - name: scratch
            mountPath: /scratch
            emptyDir: {}
          - name: data
            mountPath: /data
            persistentVolumeClaim: {claimName: shared-data, readOnly: true}
"""
TASK = "      - name: t\n        image: alpine\n"


def problems(volumes_yaml: str, policy: checks.Policy | None = None) -> list[tuple[int, int, str, str]]:
    with pytest.raises(errors.ConfigError) as caught:
        config.load(HEAD + "        volumes:\n" + volumes_yaml, policy=policy)
    return [(p.line, p.column, p.path, p.message) for p in caught.value.problems]


def test_a_config_without_volumes_renders_none() -> None:
    action = plan_action(TASK)
    assert action.error is None and action.tasks[0].volumes == ()


def test_good_volumes_render_in_file_order() -> None:
    executor = matcher.Executor(allowed_volume_claims=("shared-*",))
    action = plan_action(TASK + GOOD, executor)
    assert action.error is None
    assert action.tasks[0].volumes == (
        TaskVolume("cache", "/cache", size_limit="1Gi"),
        TaskVolume("scratch", "/scratch"),
        TaskVolume("data", "/data", claim_name="shared-data", read_only=True),
    )
    assert [v.kind for v in action.tasks[0].volumes] == ["emptyDir", "emptyDir", "persistentVolumeClaim"]


def test_validate_accepts_good_volumes_with_the_claim_allowed() -> None:
    loaded = config.load(HEAD + GOOD, policy=checks.Policy(allowed_volume_claims=("shared-data",)))
    assert loaded.warnings == ()


@pytest.mark.parametrize("kind", ["hostPath", "secret", "configMap", "nfs", "csi", "projected"])
def test_other_volume_types_are_refused_for_security(kind: str) -> None:
    found = problems(f"          - name: host\n            mountPath: /host\n            {kind}: {{path: /}}\n")
    assert found == [(11, 13, f"actions[0].tasks[0].volumes[0].{kind}", volumes.volume_type_message(kind))]
    assert "emptyDir or a persistentVolumeClaim" in found[0][3] and "for security" in found[0][3]


def test_exactly_one_source() -> None:
    neither = "          - name: v\n            mountPath: /v\n"
    both = neither + "            emptyDir: {}\n            persistentVolumeClaim: {claimName: c}\n"
    allow = checks.Policy(allowed_volume_claims=("*",))
    assert problems(neither) == [
        (9, 13, "actions[0].tasks[0].volumes[0]", "volume 'v' has neither emptyDir nor persistentVolumeClaim: "
         "give exactly one (emptyDir: {} for an empty directory without a size limit)"),
    ]  # fmt: skip
    assert problems(both, allow) == [
        (9, 13, "actions[0].tasks[0].volumes[0]", "volume 'v' has both emptyDir and persistentVolumeClaim: "
         "give exactly one (emptyDir: {} for an empty directory without a size limit)"),
    ]  # fmt: skip


def test_required_fields() -> None:
    assert problems("          - emptyDir: {}\n") == [
        (9, 13, "actions[0].tasks[0].volumes[0].name", "required field is missing"),
        (9, 13, "actions[0].tasks[0].volumes[0].mountPath", "required field is missing"),
    ]
    found = problems("          - name: v\n            mountPath: /v\n            persistentVolumeClaim: {readOnly: true}\n")
    assert found == [(11, 36, "actions[0].tasks[0].volumes[0].persistentVolumeClaim.claimName",
                      "required field is missing")]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Cache", 'Invalid value: "Cache": a lowercase RFC 1123 label'),
        ("a.b", 'Invalid value: "a.b": a lowercase RFC 1123 label'),
        ("x" * 64, "be at most 63 characters"),
        ("job-volume", "'job-volume' is the name of a volume jes adds to every task's pod; choose another name"),
        ("job-files", "'job-files' is the name of a volume jes adds to every task's pod; choose another name"),
    ],
)
def test_names_are_dns_labels_and_not_jes_own(name: str, message: str) -> None:
    found = problems(f"          - name: '{name}'\n            mountPath: /v\n            emptyDir: {{}}\n")
    assert [(line, col, path) for line, col, path, _ in found] == [(9, 19, "actions[0].tasks[0].volumes[0].name")]
    assert message in found[0][3]


def test_names_and_mount_paths_are_unique() -> None:
    found = problems(
        "          - {name: a, mountPath: /a, emptyDir: {}}\n"
        "          - {name: a, mountPath: /b, emptyDir: {}}\n"
        "          - {name: c, mountPath: /a, emptyDir: {}}\n"
    )
    assert found == [
        (10, 20, "actions[0].tasks[0].volumes[1].name", 'Duplicate value: "a": volume names must be unique in a task'),
        (11, 34, "actions[0].tasks[0].volumes[2].mountPath",
         'Invalid value: "/a": must be unique (another volume is mounted there)'),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("cache", "'cache' is not an absolute path; write it from the root, e.g. /cache"),
        ("/cache/", "'/cache/' is not a normalised path; write '/cache'"),
        ("/a//b", "'/a//b' is not a normalised path; write '/a/b'"),
        ("/a/../keptn", "'/a/../keptn' is not a normalised path; write '/keptn'"),
        ("/./a", "'/./a' is not a normalised path; write '/a'"),
        ("//a", "'//a' is not a normalised path; write '/a'"),
        ("/keptn", "'/keptn' is the same path as /keptn, where jes mounts the task's files"),
        ("/keptn/cache", "'/keptn/cache' is inside /keptn, where jes mounts the task's files"),
        ("/", "'/' is a parent of /keptn, where jes mounts the task's files"),
    ],
)
def test_mount_paths(path: str, message: str) -> None:
    found = problems(f"          - name: v\n            mountPath: '{path}'\n            emptyDir: {{}}\n")
    assert [(line, col, p) for line, col, p, _ in found] == [(10, 24, "actions[0].tasks[0].volumes[0].mountPath")]
    assert found[0][3].startswith(message)


def test_nested_mounts_and_keptn_lookalikes_are_fine() -> None:
    text = (
        "        volumes:\n          - {name: a, mountPath: /data, emptyDir: {}}\n"
        "          - {name: b, mountPath: /data/cache, emptyDir: {}}\n"
        "          - {name: c, mountPath: /keptn2, emptyDir: {}}\n"
    )
    assert config.load(HEAD + text).warnings == ()


@pytest.mark.parametrize(
    ("size", "message"),
    [("lots", "'lots' is not a Kubernetes quantity"), ("-1Gi", "'-1Gi': a size limit must not be negative")],
)
def test_size_limit_is_a_quantity(size: str, message: str) -> None:
    found = problems(f"          - name: v\n            mountPath: /v\n            emptyDir: {{sizeLimit: '{size}'}}\n")
    assert [(line, col, p) for line, col, p, _ in found] == [
        (11, 35, "actions[0].tasks[0].volumes[0].emptyDir.sizeLimit")
    ]
    assert found[0][3].startswith(message)


def test_claim_names_are_dns_subdomains() -> None:
    found = problems("          - {name: v, mountPath: /v, persistentVolumeClaim: {claimName: Shared_Data}}\n")
    assert found == [
        (9, 73, "actions[0].tasks[0].volumes[0].persistentVolumeClaim.claimName",
         'Invalid value: "Shared_Data": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric '
         "characters, '-' or '.', and must start and end with an alphanumeric character"),
    ]  # fmt: skip


CLAIM = "          - {name: v, mountPath: /v, persistentVolumeClaim: {claimName: shared-data}}\n"


@pytest.mark.parametrize(
    ("patterns", "allowed"),
    [
        ((), False),
        (("shared-data",), True),
        (("shared-*",), True),
        (("shared-dat?",), True),
        (("shared-[a-d]ata",), True),
        (("shared-[!d]ata",), False),
        (("*",), True),
        (("other", "shared-*"), True),
        (("shared",), False),
        (("Shared-data",), False),  # case-sensitive, as claim names are
        (("",), False),
    ],
)
def test_claim_allowlist_globs(patterns: tuple[str, ...], allowed: bool) -> None:
    assert volumes.claim_allowed("shared-data", patterns) is allowed
    policy = checks.Policy(allowed_volume_claims=patterns)
    if allowed:
        config.load(HEAD + "        volumes:\n" + CLAIM, policy=policy)
        return
    found = problems(CLAIM, policy)
    assert [(line, col, p) for line, col, p, _ in found] == [
        (9, 73, "actions[0].tasks[0].volumes[0].persistentVolumeClaim.claimName")
    ]
    assert found[0][3].startswith("persistentVolumeClaim 'shared-data' is not in the executor's allowed volume claims")
    assert found[0][3].endswith(
        "add the claim or a glob matching it to JES_ALLOWED_VOLUME_CLAIMS (chart: jobConfig.allowedVolumeClaims)"
    )


def test_without_a_policy_the_file_alone_is_checked() -> None:
    """The service loads configs without a policy; the matcher applies the allowlist when planning."""
    config.load(HEAD + "        volumes:\n" + CLAIM)


def test_the_matcher_refuses_the_action_before_any_task_like_the_image_allowlist() -> None:
    tasks = TASK + "      - name: second\n        image: alpine\n        volumes:\n" + CLAIM
    action = plan_action(tasks, matcher.Executor(allowed_volume_claims=("cache-*",)))
    assert action.tasks == ()
    assert action.error == (
        "Forbidden: task 'second': persistentVolumeClaim 'shared-data' is not in the executor's allowed volume "
        "claims (JES_ALLOWED_VOLUME_CLAIMS: it allows cache-*); add the claim or a glob matching it to "
        "JES_ALLOWED_VOLUME_CLAIMS (chart: jobConfig.allowedVolumeClaims)"
    )
    assert plan_action(tasks, matcher.Executor(allowed_volume_claims=("shared-*",))).error is None


def test_schema_has_the_volume_shapes() -> None:
    defs = config.json_schema()["$defs"]
    assert set(defs["Volume"]["properties"]) == {"name", "mountPath", "emptyDir", "persistentVolumeClaim"}
    assert defs["Volume"]["additionalProperties"] is False
    assert defs["PersistentVolumeClaimVolume"]["required"] == ["claimName"]
