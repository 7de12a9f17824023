"""job/config.yaml loading: upstream's accepted files, yaml.v2 coercion, strict errors with positions."""

from __future__ import annotations

import textwrap

import jsonschema
import pytest

from jes import errors
from jes.matcher import checks, config, schema

SIMPLE = """\
apiVersion: v2
actions:
  - name: "Run locust"
    events:
      - name: "sh.keptn.event.test.triggered"
        jsonpath:
          property: "$.data.test.teststrategy"
          match: "locust"
    tasks:
      - name: "Run locust tests"
        files:
          - locust/basic.py
          - locust/import.py
          - locust/locust.conf
        image: "locustio/locust"
        cmd: ["locust"]
        args: ["-f", "/keptn/locust/locustfile.py"]
        workingDir: "/bin"
"""

COMPLEX = """\
apiVersion: v2
actions:
  - name: "Run locust"
    events:
      - name: "sh.keptn.event.test.triggered"
        jsonpath:
          property: "$.data.test.teststrategy"
          match: "health"
    tasks:
      - name: "Run locust smoke tests"
        image: "locustio/locust"
        cmd: ["locust"]
        args: ["-f", "/keptn/locust/basic.py", "--host", "$(HOST)"]
        env:
          - name: HOST
            value: "$.data.deployment.deploymentURIsLocal[0]"
            valueFrom: event
        resources:
          limits: {cpu: 1, memory: 512Mi}
          requests: {cpu: 50m, memory: 128Mi}
        maxPollDuration: 1000
  - name: "Run bash"
    silent: true
    events:
      - name: "sh.keptn.event.action.triggered"
        jsonpath:
          property: "$.data.action.action"
          match: "hello"
      - name: "sh.keptn.event.action.triggered"
        jsonpath:
          property: "$.data.action.action"
          match: "goodbye"
    tasks:
      - name: "Run static world"
        image: "bash"
        cmd: ["echo"]
        args: ["static"]
"""


def load(text: str) -> schema.JobConfig:
    return config.load(textwrap.dedent(text), file="job/config.yaml").config


def problems(text: str) -> list[str]:
    with pytest.raises(errors.ConfigError) as caught:
        config.load(textwrap.dedent(text), file="job/config.yaml")
    return [str(p) for p in caught.value.problems]


def test_simple_config_parses_like_upstream() -> None:
    cfg = load(SIMPLE)
    action = cfg.actions[0]
    assert len(cfg.actions) == 1 and action.silent is False
    task = action.tasks[0]
    assert task.cmd == ["locust"]
    assert task.args == ["-f", "/keptn/locust/locustfile.py"]
    assert task.workingDir == "/bin"
    assert task.files == ["locust/basic.py", "locust/import.py", "locust/locust.conf"]


def test_complex_config_parses_like_upstream() -> None:
    cfg = load(COMPLEX)
    assert len(cfg.actions) == 2 and cfg.actions[1].silent is True
    first = cfg.actions[0].tasks[0]
    assert first.resources is not None
    assert (first.resources.limits.cpu, first.resources.limits.memory) == ("1", "512Mi")
    assert (first.resources.requests.cpu, first.resources.requests.memory) == ("50m", "128Mi")
    assert first.args == ["-f", "/keptn/locust/basic.py", "--host", "$(HOST)"]
    assert first.maxPollDuration == 1000
    assert cfg.actions[1].tasks[0].resources is None


def test_find_action_and_task_by_name() -> None:
    cfg = load(COMPLEX)
    assert schema.find_action(cfg, "nope") is None
    action = schema.find_action(cfg, "Run bash")
    assert action is not None and action is cfg.actions[1]
    assert schema.find_task(action, "nope") is None
    assert schema.find_task(action, "Run static world") is action.tasks[0]


@pytest.mark.parametrize("policy", ["", "Always", "Never", "IfNotPresent"])
def test_image_pull_policy_is_kept_verbatim(policy: str) -> None:
    cfg = load(f"apiVersion: v2\nactions:\n  - tasks:\n      - imagePullPolicy: '{policy}'\n")
    assert cfg.actions[0].tasks[0].imagePullPolicy == policy


@pytest.mark.parametrize(("line", "expected"), [("", None), ("ttlSecondsAfterFinished: 600", 600), ("ttlSecondsAfterFinished: 0", 0)])
def test_ttl_is_kept_at_parse_level(line: str, expected: int | None) -> None:
    cfg = load(f"apiVersion: v2\nactions:\n  - tasks:\n      - name: t\n        {line}\n")
    assert cfg.actions[0].tasks[0].ttlSecondsAfterFinished == expected


def test_null_blocks_mean_absent() -> None:
    cfg = load("apiVersion: v2\nactions:\n  - name: a\n    events:\n    tasks:\n")
    assert cfg.actions[0].events is None and cfg.actions[0].tasks is None


@pytest.mark.parametrize(
    ("snippet", "field", "expected"),
    [
        ("resources: {limits: {cpu: 1, memory: 512}}", "resources", ("1", "512")),
        ("args: [1, true, 1.5, 0x10, yes, ~]", "args", ["1", "true", "1.5", "0x10", "yes", ""]),
        ("cmd: [echo]\n        workingDir: 123", "workingDir", "123"),
        ("annotations: {a: 1, b: true}", "annotations", {"a": "1", "b": "true"}),
        ("name: 2024", "name", "2024"),
    ],
)
def test_scalars_keep_their_text_where_strings_are_expected(snippet: str, field: str, expected: object) -> None:
    task = load(f"apiVersion: v2\nactions:\n  - tasks:\n      - {snippet}\n").actions[0].tasks[0]
    value = getattr(task, field)
    if field == "resources":
        value = (value.limits.cpu, value.limits.memory)
    assert value == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # upstream's rejected files
        ("apiVersion: v2\nextraneousTopLevelTag: 1\nactions: []\n", "job/config.yaml:2:1: extraneousTopLevelTag: unknown field"),
        ("apiVersion: v2\nactions:\n  - name: a\n    foo: bar\n", "job/config.yaml:4:5: actions[0].foo: unknown field 'foo'"),
        (
            "apiVersion: v2\nactions:\n  - tasks:\n      - cmd: wrong value\n",
            "job/config.yaml:4:14: actions[0].tasks[0].cmd: expected a list of strings, got a string",
        ),
        ("actions: []\n", "job/config.yaml:1:1: apiVersion: apiVersion must be specified"),
        ("apiVersion: v0\nactions: []\n", "job/config.yaml:1:13: apiVersion: apiVersion v0 is not supported, use v2"),
        # booleans and integers must be real ones
        ("apiVersion: v2\nactions:\n  - silent: 'true'\n", "actions[0].silent: expected a boolean (true or false), got a string"),
        ("apiVersion: v2\nactions:\n  - tasks:\n      - maxPollDuration: '10'\n", "maxPollDuration: expected a whole number, got a string"),
        ("apiVersion: v2\nactions:\n  - tasks:\n      - maxPollDuration: 1.5\n", "maxPollDuration: expected a whole number, got a number"),
        # shapes
        ("apiVersion: v2\nactions: {a: 1}\n", "job/config.yaml:2:10: actions: expected a list, got a mapping"),
        ("apiVersion: v2\nactions:\n  - events: sh.keptn\n", "actions[0].events: expected a list, got a string"),
        ("apiVersion: v2\nactions:\n  - tasks:\n      - env: {a: b}\n", "actions[0].tasks[0].env: expected a list, got a mapping"),
        (
            "apiVersion: v2\nactions:\n  - tasks:\n      - annotations:\n          - a: b\n",
            "annotations: expected a mapping of strings, got a list (write `key: value` lines, not a list)",
        ),
        ("apiVersion: v2\nactions:\n  - tasks:\n      - args: [[a]]\n", "args: expected a list of strings, but item 0 is a list"),
        # keys upstream rejects: not in the schema
        ("apiVersion: v2\nactions:\n  - tasks:\n      - restartPolicy: Always\n", "actions[0].tasks[0].restartPolicy: unknown field"),
        (
            "apiVersion: v2\nactions:\n  - tasks:\n      - securityContext: {seLinuxOptions: {}}\n",
            "securityContext.seLinuxOptions: unknown field",
        ),
        ("apiVersion: v2\nactions:\n  - tasks:\n      - env: [{name: A, value: b, valueFrom: string, ass: json}]\n", "did you mean 'as'?"),
        ("apiVersion: v2\nactions:\n  - tasks:\n      - imagePullSecret: [a]\n", "did you mean 'imagePullSecrets'?"),
        # duplicate keys
        ("apiVersion: v2\nactions:\n  - name: a\n    name: b\n", "job/config.yaml:4:5: actions[0].name: duplicate key 'name' (first defined at line 3)"),
        # semantics
        (
            "apiVersion: v2\nactions:\n  - events: [{name: 'sh.keptn.(test'}]\n",
            "actions[0].events[0].name: invalid regular expression 'sh.keptn.(test'",
        ),
        (
            "apiVersion: v2\nactions:\n  - events: [{name: a, jsonpath: {property: data.x, match: y}}]\n",
            "actions[0].events[0].jsonpath.property: invalid JSONPath 'data.x': it must start with $",
        ),
        ("apiVersion: v2\nactions:\n  - tasks:\n      - env: [{name: A, valueFrom: evnt}]\n", "env[0].valueFrom: must be one of event, secret, string; got 'evnt'"),
        ("apiVersion: v2\nactions:\n  - tasks:\n      - env: [{name: A, value: a}]\n", "env[0].valueFrom: must be one of event, secret, string; got nothing"),
        ("apiVersion: v2\nactions:\n  - tasks:\n      - env: [{name: A, value: '$.data[', valueFrom: event}]\n", "env[0].value: invalid JSONPath '$.data['"),
        (
            "apiVersion: v2\nactions:\n  - tasks:\n      - resources: {limits: {cpu: 1KeinEiKummGeGimmeEinEi}}\n",
            "resources.limits.cpu: '1KeinEiKummGeGimmeEinEi' is not a Kubernetes quantity",
        ),
        ("apiVersion: v2\nactions:\n  - tasks:\n      - securityContext: {seccompProfile: {localhostProfile: x}}\n", "seccompProfile.type: required field is missing"),
        ("apiVersion: v2\nactions:\n  - tasks:\n      - maxPollDuration: 0\n", "maxPollDuration: must be greater than 0 seconds"),
        # the variables jes sets for a task with API-proxy access, and other tasks' token Secrets
        (
            "apiVersion: v2\nactions:\n  - tasks:\n      - env: [{name: KEPTN_API_PROXY_TOKEN, value: x, valueFrom: string}]\n",
            "job/config.yaml:4:22: actions[0].tasks[0].env[0].name: KEPTN_API_PROXY_TOKEN is set by jes",
        ),
        (
            "apiVersion: v2\nactions:\n  - tasks:\n      - env: [{name: KEPTN_API_PROXY_URL, value: $.data.url, valueFrom: event}]\n",
            "env[0].name: KEPTN_API_PROXY_URL is set by jes (a task that may use the API proxy gets its URL",
        ),
        (
            "apiVersion: v2\nactions:\n  - tasks:\n      - env: [{name: jes-abc-dc1114cd074914bd-000-001-api-proxy, valueFrom: secret}]\n",
            "env[0].name: secret 'jes-abc-dc1114cd074914bd-000-001-api-proxy' holds another task's API-proxy token",
        ),
        (
            "apiVersion: v2\nactions:\n  - tasks:\n      - imagePullSecrets: [jes-abc-dc1114cd074914bd-000-001-api-proxy]\n",
            "imagePullSecrets[0]: secret 'jes-abc-dc1114cd074914bd-000-001-api-proxy' holds another task's",
        ),
        # not a config at all
        ("", "job/config.yaml:1:1: expected a mapping with apiVersion: v2 and actions, got an empty file"),
        ("- a\n- b\n", "expected a mapping with apiVersion: v2 and actions, got a list"),
        ("apiVersion: v2\nactions:\n  - name: 'unterminated\n", "job/config.yaml:4:1: YAML syntax error"),
        ("apiVersion: v2\n\tactions: []\n", "YAML syntax error"),
    ],
)
def test_invalid_configs_name_file_line_column_and_field(text: str, expected: str) -> None:
    found = problems(text)
    assert any(expected in p for p in found), found


def test_every_problem_is_reported_at_once_in_file_order() -> None:
    found = problems(
        """\
        apiVersion: v2
        actions:
          - silent: maybe
            tasks:
              - cmd: echo
                bogus: 1
              - name: a
                name: b
        """
    )
    assert [p.split(": ")[0] for p in found] == [
        "job/config.yaml:3:13",
        "job/config.yaml:5:14",
        "job/config.yaml:6:9",
        "job/config.yaml:8:9",
    ]


def test_warnings_do_not_fail_the_config() -> None:
    loaded = config.load(
        "apiVersion: v2\nactions:\n  - name: a\n    tasks:\n      - ttlSecondsAfterFinished: 5\n"
        "        resources: {}\n        env: [{name: A, value: $.id, valueFrom: event, as: text}]\n"
    )
    messages = [f"{w.path}: {w.message}" for w in loaded.warnings]
    assert "actions[0]: action has no events, so it never runs" in messages
    assert "actions[0].tasks[0].ttlSecondsAfterFinished: 5 is raised to 60 so logs can be read" in messages
    assert "actions[0].tasks[0].resources: empty resources: the task runs without requests or limits" in messages
    assert any("unknown format 'text'" in m for m in messages)
    assert any("task has no image" in m for m in messages)


def test_policy_checks_images_and_privileged_containers() -> None:
    text = "apiVersion: v2\nactions:\n  - tasks:\n      - image: alpine\n        securityContext: {privileged: true}\n"
    with pytest.raises(errors.ConfigError) as caught:
        config.load(text, policy=checks.Policy(allowed_images=("docker.io/*",)))
    messages = [str(p) for p in caught.value.problems]
    assert "job/config.yaml:4:16: actions[0].tasks[0].image: image 'alpine' does not match the allowed image list" in messages
    assert any("securityContext.privileged: privileged containers are not allowed" in m for m in messages)
    assert config.load(text, policy=checks.Policy(allowed_images=("alpine",), allow_privileged=True))


def test_config_hash_is_sha3_224_of_the_raw_bytes() -> None:
    import hashlib

    raw = SIMPLE.encode()
    assert config.load(raw).sha3_224 == hashlib.sha3_224(raw).hexdigest()


def test_non_utf8_is_a_config_error() -> None:
    with pytest.raises(errors.ConfigError, match="not UTF-8"):
        config.load(b"apiVersion: v2\nactions: [\xff]\n")


def test_extensions_are_accepted() -> None:
    cfg = load("apiVersion: v2\nactions:\n  - locations: [EU, APAC]\n    tasks:\n      - imagePullSecrets: [regcred]\n")
    assert cfg.actions[0].locations == ["EU", "APAC"]
    assert cfg.actions[0].tasks[0].imagePullSecrets == ["regcred"]


def test_merge_keys_and_anchors_work_as_in_yaml_v2() -> None:
    cfg = load(
        """\
        apiVersion: v2
        actions:
          - name: a
            tasks:
              - &base
                name: one
                image: alpine
                cmd: [echo]
              - <<: *base
                name: two
        """
    )
    assert [(t.name, t.image, t.cmd) for t in cfg.actions[0].tasks] == [("one", "alpine", ["echo"]), ("two", "alpine", ["echo"])]


def test_examples_validate_against_the_generated_json_schema(repo) -> None:  # type: ignore[no-untyped-def]
    import yaml

    job_schema = config.json_schema()
    for path in sorted((repo / "examples" / "job").glob("*.yaml")):
        jsonschema.validate(yaml.safe_load(path.read_text()), job_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"apiVersion": "v2", "actions": [{"nam": "typo"}]}, job_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"apiVersion": "v3"}, job_schema)


def test_committed_schema_file_is_current(repo) -> None:  # type: ignore[no-untyped-def]
    import json

    committed = json.loads((repo / "docs" / "job-config.schema.json").read_text())
    assert committed == config.json_schema(), "run: jes schema > docs/job-config.schema.json"
