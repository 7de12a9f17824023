"""The image allowlist: upstream's glob semantics, cases from its imagefilterlist tests."""

from __future__ import annotations

import pytest

from jes import settings
from jes.matcher import imagepolicy


@pytest.mark.parametrize(
    ("patterns", "image", "allowed"),
    [
        (["ghcr.io/my-other-user/my-other-image:*"], "ghcr.io/my-other-user/my-other-image:3", True),
        (["ghcr.io/my-other-user/my-other-image:*"], "ghcr.io/my-other-user/my-other-image:latest", True),
        (["ghcr.io/my-other-user/my-other-image:*"], "ghcr.io/my-other-user/my-other-image", False),
        (["ghcr.io/my-user/my-image:1.2.3"], "ghcr.io/my-user/my-image:1.2.3", True),
        (["ghcr.io/my-user/my-image:1.2.3"], "ghcr.io/my-user/my-image:1.2.4", False),
        (["docker.io/[AB]/some-image"], "docker.io/A/some-image", True),
        (["docker.io/[AB]/some-image"], "docker.io/B/some-image", True),
        (["docker.io/[AB]/some-image"], "docker.io/B/some-image:1", False),
        (["docker.io/[AB]/some-image"], "B/some-image", False),
        (["docker.io/[AB]/some-image"], "ghcr.io/A/some-image", False),
        (["docker.io/*"], "alpine", False),
        (["docker.io/*"], "docker.io/alpine", True),
        (["*[AB]/some-image*"], "B/some-image", True),
        (["*[AB]/some-image*"], "ghcr.io/B/some-image", True),
        (["*[AB]/some-image*"], "some-image", False),
        (["my-docker-mirror.myorg/loadimpact/k6:0.34.*"], "my-docker-mirror.myorg/loadimpact/k6:0.34.0", True),
        (["my-docker-mirror.myorg/loadimpact/k6:0.34.*"], "my-docker-mirror.myorg/loadimpact/k6:0.34.1", True),
        (["my-docker-mirror.myorg/loadimpact/k6:0.34.*"], "my-docker-mirror.myorg/loadimpact/k6:0.35.0", False),
        (["my-docker-mirror.myorg/loadimpact/k6:0.34.*"], "my-docker-mirror.myorg/loadimpact/k6", False),
        (["a.registry:1337/*"], "a.registry:1337/image", True),
        (["a.registry:1337/*"], "a.registry:1338/image", False),
        (["a.b.c.d.e.f.g.registry/*"], "a.b.c.d.e.f.g.registry:8080/image", False),
        (["ghcr.io/user/image@sha256*"], "ghcr.io/user/image@sha256:abcd", True),
        (["ghcr.io/user/image@sha256*"], "ghcr.io/user/image:1", False),
        (["image@sha256:a428de4495b23ak*"], "image@sha256:a428de4495b23ak9f", True),
        (["image@sha256:a428de4495b23ak*"], "image@sha256:b428de4495b23ak9f", False),
        (["alpine:3.1?"], "alpine:3.18", True),
        (["alpine:3.1?"], "alpine:3.1", False),
        (["{alpine,busybox}:*"], "busybox:1", True),
        (["{alpine,busybox}:*"], "ubuntu:1", False),
        (["docker.io/[!A]/x"], "docker.io/B/x", True),
        (["docker.io/[!A]/x"], "docker.io/A/x", False),
        (["a.b"], "aXb", False),  # dots are literal
        ([], "anything", True),
        (["*"], "anything/at:all", True),
        (["x", "*"], "anything", True),
    ],
)
def test_allowlist_globs(patterns: list[str], image: str, allowed: bool) -> None:
    assert imagepolicy.allowed(image, patterns) is allowed


def test_comma_string_equals_list_and_empty_string_allows_all() -> None:
    assert settings.image_list("a/*,b/c:1") == ("a/*", "b/c:1")
    assert settings.image_list("") == ()
    assert imagepolicy.allowed("x", settings.image_list(""))


def test_forbidden_message_keeps_upstream_wording() -> None:
    assert imagepolicy.forbidden_message("alpine") == "Forbidden: Image alpine does not match configured image allowlist.\n"
