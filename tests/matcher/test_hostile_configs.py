"""A job/config.yaml comes from a repository many people can write to: hostile files are refused
quickly, cheaply and with a position — never parsed into hundreds of MiB, never a crash."""

from __future__ import annotations

import time
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jes import errors
from jes.matcher import config, yamlsource

LOL = """apiVersion: v2
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
actions: *g
"""


def refused(text: str | bytes, **options: object) -> tuple[errors.ConfigError, float, float]:
    """The error, the CPU seconds (of this thread: other processes on a busy machine do not count)
    and the MiB (peak, traced) it took."""
    tracemalloc.start()
    started = time.thread_time()
    try:
        with pytest.raises(errors.ConfigError) as caught:
            config.load(text, file="job/config.yaml", **options)  # type: ignore[arg-type]
        elapsed = time.thread_time() - started
        peak = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    return caught.value, elapsed, peak


def test_an_alias_bomb_is_refused_in_well_under_a_second_and_a_few_mib() -> None:
    assert len(LOL) < 320  # 9^7 "lol"s if expanded
    error, seconds, mib = refused(LOL)
    (problem,) = error.problems
    assert problem.message == f"aliases expand to more than {yamlsource.MAX_ALIAS_NODES} nodes"
    assert (problem.file, problem.line) == ("job/config.yaml", 2)
    assert seconds < 1.0 and mib < 50, (seconds, mib)


@pytest.mark.parametrize(
    "text",
    [
        "apiVersion: v2\nactions: &x [*x]\n",  # a list that contains itself
        "apiVersion: v2\nactions:\n  - &t {name: t, tasks: [*t]}\n",
        "apiVersion: v2\nactions: " + "[" * 5000 + "]" * 5000 + "\n",  # the composer recurses per level
    ],
    ids=["recursive-list", "recursive-mapping", "deep-nesting"],
)
def test_recursion_and_deep_nesting_are_refused(text: str) -> None:
    error, seconds, _ = refused(text)
    assert any(f"nest deeper than {yamlsource.MAX_DEPTH} levels" in p.message for p in error.problems)
    assert seconds < 1.0


def test_a_file_over_the_size_limit_is_refused_unparsed() -> None:
    big = "apiVersion: v2\n# " + "x" * 2000 + "\n"
    error, _, _ = refused(big, max_bytes=1024)
    assert "more than 1024 bytes (JES_MAX_CONFIG_BYTES)" in error.problems[0].message
    assert config.load(big, max_bytes=4096).config.apiVersion == "v2"


def test_merge_keys_with_anchors_still_work() -> None:
    text = """apiVersion: v2
defaults: &defaults {image: alpine, cmd: [echo]}
actions:
  - name: a
    events: [{name: x}]
    tasks:
      - <<: *defaults
        name: one
      - <<: *defaults
        name: two
"""
    with pytest.raises(errors.ConfigError) as caught:  # "defaults" is not a field, but parsing worked
        config.load(text)
    assert [p.path for p in caught.value.problems] == ["defaults"]


ANCHORED = st.recursive(
    st.sampled_from(["x", "1", "true", "[]", "{}"]),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=6).map(lambda items: "[" + ", ".join(items) + "]"),
        st.lists(inner, min_size=1, max_size=4).map(lambda vs: "{" + ", ".join(f"k{i}: {v}" for i, v in enumerate(vs)) + "}"),
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ANCHORED, min_size=1, max_size=6), st.integers(min_value=2, max_value=12), st.booleans())
def test_alias_heavy_documents_are_bounded(values: list[str], fan_out: int, recursive: bool) -> None:
    """Chains of anchors, each used many times by the next (and sometimes by itself): the loader
    answers quickly, with a config or a ConfigError, never another exception."""
    lines = ["apiVersion: v2"]
    for i, value in enumerate(values):
        refs = ", ".join([f"*a{i - 1}"] * fan_out) if i else value
        lines.append(f"k{i}: &a{i} [{refs}]")
    last = len(values) - 1
    lines.append(f"actions: &r [*a{last}{', *r' if recursive else ''}]")
    started = time.thread_time()  # CPU time: a busy machine does not make a bounded parse slow
    try:
        config.load("\n".join(lines) + "\n", file="f.yaml")
    except errors.ConfigError as exc:
        assert all(p.line >= 1 and p.column >= 1 for p in exc.problems)
    assert time.thread_time() - started < 2.0


def test_kubernetes_refusals_are_named_with_the_allowed_values() -> None:
    text = """apiVersion: v2
actions:
  - name: a
    events: [{name: sh.keptn.event.test.triggered}]
    tasks:
      - name: t
        image: alpine
        imagePullPolicy: always
        securityContext:
          procMount: Weird
          seccompProfile: {type: localhost}
"""
    with pytest.raises(errors.ConfigError) as caught:
        config.load(text)
    assert [(p.line, p.path, p.message) for p in caught.value.problems] == [
        (8, "actions[0].tasks[0].imagePullPolicy",
         'Unsupported value: "always": supported values: "Always", "IfNotPresent", "Never" (did you mean \'Always\'?)'),
        (10, "actions[0].tasks[0].securityContext.procMount",
         'Unsupported value: "Weird": supported values: "Default", "Unmasked"'),
        (11, "actions[0].tasks[0].securityContext.seccompProfile.type",
         'Unsupported value: "localhost": supported values: "RuntimeDefault", "Unconfined", "Localhost" '
         "(did you mean 'Localhost'?)"),
    ]  # fmt: skip
    schema = config.json_schema()
    task = schema["$defs"]["Task"]["properties"]
    assert task["imagePullPolicy"]["enum"] == ["Always", "IfNotPresent", "Never", ""]
    assert schema["$defs"]["SecurityContext"]["properties"]["procMount"]["anyOf"][0]["enum"] == ["Default", "Unmasked"]


def test_names_kubernetes_would_refuse_and_localhost_profiles() -> None:
    text = """apiVersion: v2
actions:
  - name: a
    events: [{name: x}]
    tasks:
      - name: t
        image: alpine
        namespace: Team_A
        serviceAccount: Deployer
        imagePullSecrets: [ok-secret, Bad_Secret]
        env:
          - {name: "A=B", value: x, valueFrom: string}
          - {name: Not.A.Secret, valueFrom: secret}
        securityContext:
          capabilities: {add: ["NET ADMIN", CAP_SYS_TIME]}
          seccompProfile: {type: Localhost}
"""
    with pytest.raises(errors.ConfigError) as caught:
        config.load(text)
    assert [w.path for w in caught.value.warnings] == ["actions[0].tasks[0].securityContext.capabilities.add[1]"]
    paths = [p.path for p in caught.value.problems]
    assert paths == [
        "actions[0].tasks[0].namespace",
        "actions[0].tasks[0].serviceAccount",
        "actions[0].tasks[0].imagePullSecrets[1]",
        "actions[0].tasks[0].env[0].name",
        "actions[0].tasks[0].env[1].name",
        "actions[0].tasks[0].securityContext.capabilities.add[0]",
        "actions[0].tasks[0].securityContext.seccompProfile.localhostProfile",
    ]


def test_every_problem_and_warning_of_a_file_in_one_pass() -> None:
    """A shape error elsewhere does not hide a bad regex, an unknown value or a warning."""
    text = """apiVersion: v2
actions:
  - name: a
    events: [{name: "(unclosed"}]
    tasks:
      - name: t
        image: alpine
        ttlSecondsAfterFinished: 10
  - name: b
    events: [{name: x}]
    tasks:
      - name: u
        cmd: not a list
"""
    with pytest.raises(errors.ConfigError) as caught:
        config.load(text)
    assert [p.line for p in caught.value.problems] == [4, 13]
    assert [w.line for w in caught.value.warnings] == [8]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("JES_JOB_SECURITY_CONTEXT", '{"appArmorProfile": {"type": "runtimedefault"}}',
         'appArmorProfile.type: Unsupported value: "runtimedefault": supported values: "Localhost", "RuntimeDefault", "Unconfined"'),
        ("JES_JOB_SECURITY_CONTEXT", '{"procMount": "Weird"}',
         'procMount: Unsupported value: "Weird": supported values: "Default", "Unmasked"'),
        ("JES_POD_SECURITY_CONTEXT", '{"seccompProfile": {"type": "Localhost"}}',
         "seccompProfile.localhostProfile: set it exactly when the type is Localhost"),
    ],
)  # fmt: skip
def test_executor_security_contexts_kubernetes_would_refuse_stop_jes_at_start(
    variable: str, value: str, message: str
) -> None:
    from jes import settings

    with pytest.raises(errors.SettingsError) as caught:
        settings.load({variable: value})
    assert caught.value.problems == [f"{variable}: {message}"]
