"""Rendering a task for an event: env order and formatting, resources, security context, policy."""

from __future__ import annotations

from typing import Any

import pytest

from jes.matcher import config, schema
from jes.matcher import matching as matcher
from jes.models import EnvSecret, EnvValue, PlannedAction, Resources

EVENT: dict[str, Any] = {
    "id": "f2b878d3-03c0-4e8f-bc3f-454bc1b3d79b",
    "type": "sh.keptn.event.deployment.triggered",
    "source": "shipyard-controller",
    "shkeptncontext": "ctx",
    "data": {
        "project": "sockshop",
        "stage": "dev",
        "service": "carts",
        "labels": {"app-version": "0.1.2", "build-datetime": "202202212056", "e2e label": "x"},
        "deployment": {
            "deploymentURIsLocal": ["https://keptn.sh", "https://keptn2.sh"],
            "deploymentstrategy": "blue_green_service",
            "meta": {"b": 1, "a": "<tag> & co"},
        },
        "number": 1000000,
        "ratio": 1.5,
        "flag": True,
        "nothing": None,
    },
}


def plan_action(tasks_yaml: str, executor: matcher.Executor | None = None, ev: dict[str, Any] | None = None) -> PlannedAction:
    loaded = config.load(f"apiVersion: v2\nactions:\n  - name: act\n    events: [{{name: ''}}]\n    tasks:\n{tasks_yaml}")
    result = matcher.plan(loaded, ev or EVENT, executor or matcher.Executor())
    assert len(result.actions) == 1
    return result.actions[0]


def env_of(env_yaml: str) -> list[Any]:
    action = plan_action(f"      - name: t\n        image: alpine\n        env:\n{env_yaml}")
    assert action.error is None, action.error
    return list(action.tasks[0].env)


def one(value: str, as_: str = "") -> str:
    fmt = f"\n            as: {as_}" if as_ else ""
    entries = env_of(f"          - name: V\n            value: '{value}'\n            valueFrom: event{fmt}\n")
    first = entries[0]
    assert isinstance(first, EnvValue)
    return first.value


@pytest.mark.parametrize(
    ("path", "as_", "expected"),
    [
        ("$.data.deployment.deploymentURIsLocal[0]", "", "https://keptn.sh"),
        ("$.data.deployment.deploymentstrategy", "", "blue_green_service"),
        ("$.data.deployment.deploymentstrategy", "json", '"blue_green_service"'),
        ("$.data.deployment.deploymentstrategy", "yaml", "blue_green_service\n...\n"),
        ("$.data.deployment.meta", "", '{"a":"\\u003ctag\\u003e \\u0026 co","b":1}'),  # objects: compact, sorted, escaped
        ("$.data.deployment.meta", "JSON", '{"a":"\\u003ctag\\u003e \\u0026 co","b":1}'),
        ("$.data.deployment.deploymentURIsLocal", "", '["https://keptn.sh","https://keptn2.sh"]'),  # not Go's [a b]
        ("$.data.deployment.deploymentURIsLocal", "yaml", "- https://keptn.sh\n- https://keptn2.sh\n"),
        ("$.data.deployment.deploymentURIsLocal", "Yaml", "- https://keptn.sh\n- https://keptn2.sh\n"),
        ("$.data.number", "", "1000000"),
        ("$.data.ratio", "", "1.5"),
        ("$.data.flag", "", "true"),
        ("$.data.nothing", "", "null"),
        ("$.type", "", "sh.keptn.event.deployment.triggered"),
        ("$.source", "", "shipyard-controller"),
        ("$.data.deployment.deploymentURIsLocal[*]", "", '["https://keptn.sh","https://keptn2.sh"]'),
    ],
)
def test_env_from_event_formatting(path: str, as_: str, expected: str) -> None:
    assert one(path, as_) == expected


def test_env_order_is_task_env_then_keptn_scope_then_labels() -> None:
    entries = env_of(
        "          - {name: HOST, value: '$.data.deployment.deploymentURIsLocal[0]', valueFrom: event}\n"
        "          - {name: my-secret, valueFrom: secret}\n"
        "          - {name: MODE, value: fast, valueFrom: string}\n"
    )
    assert entries == [
        EnvValue("HOST", "https://keptn.sh", from_event=True),
        EnvSecret("my-secret"),
        EnvValue("MODE", "fast"),
        EnvValue("KEPTN_PROJECT", "sockshop", from_event=True),
        EnvValue("KEPTN_STAGE", "dev", from_event=True),
        EnvValue("KEPTN_SERVICE", "carts", from_event=True),
        EnvValue("LABELS_APP_VERSION", "0.1.2", from_event=True),
        EnvValue("LABELS_BUILD_DATETIME", "202202212056", from_event=True),
        EnvValue("LABELS_E2E_LABEL", "x", from_event=True),
    ]


def test_env_from_string_adds_only_the_scope() -> None:
    entries = env_of("          - {name: A, value: b, valueFrom: string}\n")
    assert entries[0] == EnvValue("A", "b")
    event_without_labels = {**EVENT, "data": {"project": "p", "stage": "s", "service": "v"}}
    action = plan_action("      - name: t\n        env: [{name: A, value: b, valueFrom: string}]\n", ev=event_without_labels)
    assert len(action.tasks[0].env) == 4


def test_a_failing_jsonpath_is_a_clear_error_naming_task_env_and_path() -> None:
    action = plan_action(
        "      - name: first\n        image: alpine\n"
        "      - name: Deploy\n        env: [{name: DEPLOYMENT_STRATEGY, value: '$.data.deployment.undeploymentstrategy', valueFrom: event}]\n"
    )
    assert action.tasks == ()
    assert action.error == (
        "task 'Deploy': env 'DEPLOYMENT_STRATEGY' from event path $.data.deployment.undeploymentstrategy: "
        "key 'undeploymentstrategy' not found in $.data.deployment "
        "(keys there: deploymentURIsLocal, deploymentstrategy, meta)"
    )


def test_index_out_of_bounds_is_explained() -> None:
    action = plan_action("      - name: t\n        env: [{name: H, value: '$.data.deployment.deploymentURIsLocal[5]', valueFrom: event}]\n")
    assert action.error is not None and "index 5 out of bounds: $.data.deployment.deploymentURIsLocal has 2 items" in action.error


def test_resources_defaults_override_and_empty() -> None:
    defaults = Resources("1", "512Mi", "50m", "128Mi")
    executor = matcher.Executor(default_resources=defaults)
    absent = plan_action("      - name: t\n", executor).tasks[0]
    assert absent.resources == defaults
    partial = plan_action("      - name: t\n        resources: {limits: {cpu: 2}}\n", executor).tasks[0]
    assert partial.resources == Resources(limits_cpu="2")
    empty = plan_action("      - name: t\n        resources: {}\n", executor).tasks[0]
    assert empty.resources == Resources()
    assert empty.resources is not None and empty.resources.as_k8s() == {}


@pytest.mark.parametrize(("line", "ttl"), [("", 21600), ("ttlSecondsAfterFinished: 600", 600), ("ttlSecondsAfterFinished: 0", 60)])
def test_ttl_defaults_and_minimum(line: str, ttl: int) -> None:
    assert plan_action(f"      - name: t\n        {line}\n").tasks[0].ttl_seconds_after_finished == ttl


def test_defaults_for_poll_duration_namespace_and_service_account() -> None:
    executor = matcher.Executor(job_namespace="keptn-jes", default_service_account="job-sa")
    task = plan_action("      - name: t\n", executor).tasks[0]
    assert (task.max_poll_duration_s, task.namespace, task.service_account) == (300, "keptn-jes", "job-sa")
    custom = plan_action("      - {name: t, maxPollDuration: 1006, namespace: carts, serviceAccount: mine}\n", executor).tasks[0]
    assert (custom.max_poll_duration_s, custom.namespace, custom.service_account) == (1006, "carts", "mine")


def test_security_context_merges_task_fields_over_the_default() -> None:
    default = {
        "privileged": False,
        "runAsUser": 1000,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    executor = matcher.Executor(job_security_context=default)
    assert plan_action("      - name: t\n", executor).tasks[0].security_context == default
    task = plan_action(
        "      - name: t\n        securityContext:\n          runAsUser: 7000\n          readOnlyRootFilesystem: false\n"
        "          capabilities: {add: [NET_ADMIN]}\n          procMount: Default\n"
        "          seccompProfile: {type: Localhost, localhostProfile: p.json}\n",
        executor,
    ).tasks[0]
    assert task.security_context == {
        "privileged": False,
        "runAsUser": 7000,
        "readOnlyRootFilesystem": False,
        "capabilities": {"add": ["NET_ADMIN"]},  # replaced as a whole
        "seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"},
        "procMount": "Default",
    }


def test_privileged_is_refused_unless_allowed() -> None:
    tasks = "      - name: t\n        securityContext: {privileged: true}\n"
    refused = plan_action(tasks, matcher.Executor())
    assert refused.error == "task 't': privileged containers are not allowed" and refused.tasks == ()
    assert plan_action(tasks, matcher.Executor(allow_privileged=True)).error is None


def test_every_image_is_checked_before_any_task_runs() -> None:
    executor = matcher.Executor(allowed_images=("docker.io/*",))
    action = plan_action("      - {name: a, image: docker.io/alpine}\n      - {name: b, image: alpine}\n", executor)
    assert action.tasks == ()
    assert action.error == "Forbidden: Image alpine does not match configured image allowlist.\n"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"name": "KEPTN_API_PROXY_TOKEN", "value": "mine", "valueFrom": "string"}, "KEPTN_API_PROXY_TOKEN is set by jes"),
        ({"name": "KEPTN_API_PROXY_URL", "value": "$.data.url", "valueFrom": "event"}, "KEPTN_API_PROXY_URL is set by jes"),
        (
            {"name": "jes-abc-dc1114cd074914bd-000-001-api-proxy", "valueFrom": "secret"},
            "holds another task's API-proxy token",
        ),
    ],
)
def test_the_variables_jes_sets_are_refused_at_plan_time_naming_the_task(env: dict[str, str], message: str) -> None:
    """Also a config that did not pass the loader (the loader refuses these as well) never runs."""
    raw = {"apiVersion": "v2", "actions": [{"name": "act", "events": [{"name": ""}],
                                            "tasks": [{"name": "ok", "image": "alpine"},
                                                      {"name": "greedy", "image": "alpine", "env": [env]}]}]}  # fmt: skip
    loaded = config.LoadedConfig(schema.JobConfig.model_validate(raw), "job/config.yaml", "hash")
    (action,) = matcher.plan(loaded, EVENT, matcher.Executor()).actions
    assert action.tasks == ()  # no task of the action runs, not even the harmless first one
    assert action.error is not None and action.error.startswith("Forbidden: task 'greedy': ")
    assert message in action.error


def test_the_keptn_scope_variables_are_not_refused() -> None:
    """Only the proxy's variables are jes's: KEPTN_API_TOKEN or KEPTN_PROJECT in a config stay the
    author's own values (jes never gives a task the Keptn token; upstream configs set such names)."""
    action = plan_action("      - name: t\n        env: [{name: KEPTN_API_TOKEN, value: mine, valueFrom: string}]\n")
    assert action.error is None


def test_cmd_args_and_extensions_pass_through() -> None:
    task = plan_action(
        "      - name: t\n        image: alpine\n        imagePullPolicy: Always\n        cmd: [sh, -c]\n"
        "        args: ['echo $(HOST)']\n        workingDir: /keptn\n        files: [a.txt, /helm]\n"
        "        annotations: {x: y}\n        imagePullSecrets: [regcred]\n"
    ).tasks[0]
    assert (task.cmd, task.args, task.working_dir, task.image_pull_policy) == (("sh", "-c"), ("echo $(HOST)",), "/keptn", "Always")
    assert (task.files, dict(task.annotations), task.image_pull_secrets) == (("a.txt", "/helm"), {"x": "y"}, ("regcred",))
    absent = plan_action("      - name: t\n").tasks[0]
    assert absent.cmd is None and absent.args is None
