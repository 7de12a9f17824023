"""Property: whatever bytes or YAML structure arrives, the loader returns a config or raises
ConfigError with positioned problems — never anything else."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jes import errors
from jes.matcher import config, schema

KEYS = st.sampled_from(
    ["apiVersion", "actions", "name", "silent", "events", "tasks", "jsonpath", "property", "match", "image",
     "cmd", "args", "env", "value", "valueFrom", "as", "resources", "limits", "cpu", "memory", "files",
     "securityContext", "privileged", "runAsUser", "capabilities", "annotations", "locations", "bogus", "<<"]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20),
    st.sampled_from(["v2", "$.data.x", "$[", "(", "event", "secret", "string", "json", "yaml", "1Gi", "x" * 70]),
)  # fmt: skip
TREES = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=5)),
    max_leaves=25,
)


def _check(data: str | bytes) -> None:
    try:
        loaded = config.load(data, file="f.yaml")
    except errors.ConfigError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.file == "f.yaml" and problem.line >= 1 and problem.column >= 1 and problem.message
        return
    assert isinstance(loaded.config, schema.JobConfig)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_escape_as_another_exception(data: bytes) -> None:
    _check(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.sampled_from(list("abv2:-[]{}&*!|>'\"#%@`,?\n\t .$<")), max_size=120))
def test_arbitrary_yaml_like_text_never_escapes(text: str) -> None:
    _check(text)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TREES, st.booleans())
def test_arbitrary_structures_never_escape(tree: object, with_api_version: bool) -> None:
    if with_api_version and isinstance(tree, dict):
        tree = {"apiVersion": "v2", **tree}
    _check(yaml.safe_dump(tree, allow_unicode=True))
