"""Where job/config.yaml and task files come from: levels, pinned commits, no silent fall-back."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from jes import errors
from jes.clients.keptn import client, configsource
from jes.util import retry
from tests.clients.keptn.support import Script, reply

ClientFactory = Callable[..., client.KeptnClient]
BASE = "/api/resource-service/v1/project/p"
SERVICE = f"{BASE}/stage/dev/service/hello/resource"
STAGE = f"{BASE}/stage/dev/resource"
PROJECT = f"{BASE}/resource"
CONFIG = "/job%2Fconfig.yaml"  # as the path arrives after one decoding (httpx shows the path decoded once)
NOT_FOUND = reply(404, {"code": 404, "message": "Resource not found"})


def content(data: bytes, version: str = "v1") -> httpx.Response:
    return reply(200, {"resourceContent": base64.b64encode(data).decode(), "metadata": {"version": version}})


def source(make_client: ClientFactory) -> configsource.ConfigSource:
    return configsource.ConfigSource(make_client())


async def test_the_service_level_wins_and_is_pinned_to_the_event_commit(
    script: Script, make_client: ClientFactory
) -> None:
    script.on("GET", SERVICE + CONFIG, content(b"apiVersion: v2\n", "abc"))
    found = await source(make_client).fetch_config("p", "dev", "hello", "abc")
    assert found.level == configsource.Level.SERVICE
    assert (found.content, found.version, found.uri) == (b"apiVersion: v2\n", "abc", "job/config.yaml")
    assert script.requests[0].url.params["gitCommitID"] == "abc"
    assert found.digest == hashlib.sha3_224(b"apiVersion: v2\n").hexdigest()
    assert found.location == "service p/dev/hello: job/config.yaml at abc"


async def test_a_404_falls_back_to_stage_then_project_without_a_commit(
    script: Script, make_client: ClientFactory
) -> None:
    script.on("GET", SERVICE + CONFIG, NOT_FOUND)
    script.on("GET", STAGE + CONFIG, NOT_FOUND)
    script.on("GET", PROJECT + CONFIG, content(b"project", "main-head"))
    found = await source(make_client).fetch_config("p", "dev", "hello", "abc")
    assert (found.level, found.content) == (configsource.Level.PROJECT, b"project")
    service, stage, project = script.requests
    assert service.url.params["gitCommitID"] == "abc" and stage.url.params["gitCommitID"] == "abc"
    assert "gitCommitID" not in project.url.params


async def test_the_stage_level(script: Script, make_client: ClientFactory) -> None:
    script.on("GET", SERVICE + CONFIG, NOT_FOUND)
    script.on("GET", STAGE + CONFIG, content(b"stage"))
    found = await source(make_client).fetch_config("p", "dev", "hello")
    assert found.level == configsource.Level.STAGE
    assert all("gitCommitID" not in r.url.params for r in script.requests)  # the event had no commit


async def test_nothing_anywhere_is_config_not_found(script: Script, make_client: ClientFactory) -> None:
    script.on("GET", f"{BASE}/.*", NOT_FOUND)
    with pytest.raises(configsource.ConfigNotFoundError) as caught:
        await source(make_client).fetch_config("p", "dev", "hello", "abc")
    assert "unable to find job configuration job/config.yaml for p/dev/hello" in str(caught.value)
    assert len(caught.value.tried) == 3
    assert isinstance(caught.value, errors.KeptnNotFoundError)


@pytest.mark.parametrize(
    ("failure", "error_type"),
    [
        pytest.param(
            reply(500, {"code": 500, "message": "Internal server error"}), errors.KeptnTemporaryError, id="500"
        ),
        pytest.param(reply(424, {"code": 424, "message": "Invalid git token"}), errors.KeptnPermanentError, id="424"),
        pytest.param(reply(401, {"code": 401, "message": "bad token"}), errors.KeptnAuthError, id="401"),
        pytest.param(httpx.ConnectError("refused"), errors.KeptnTemporaryError, id="unreachable"),
    ],
)
async def test_other_errors_never_fall_back_to_another_level(
    script: Script, make_client: ClientFactory, failure: Any, error_type: type[Exception]
) -> None:
    script.on("GET", SERVICE + CONFIG, failure)
    script.on("GET", STAGE + CONFIG, content(b"stage"))
    script.on("GET", PROJECT + CONFIG, content(b"project"))
    with pytest.raises(error_type):
        await source(make_client).fetch_config("p", "dev", "hello", "abc")
    assert script.count("GET", STAGE + CONFIG) == script.count("GET", PROJECT + CONFIG) == 0


async def test_temporary_errors_are_retried_before_the_config_is_read(
    script: Script, make_client: ClientFactory
) -> None:
    script.on("GET", SERVICE + CONFIG, reply(503), reply(503), content(b"service"))
    found = await source(make_client).fetch_config("p", "dev", "hello", "abc")
    assert found.level == configsource.Level.SERVICE
    assert script.count("GET", SERVICE + CONFIG) == 3
    assert len(retry.QUICK.delays_s) >= 2


# -- task files ---------------------------------------------------------------------------------

LISTING = {
    "resources": [
        {"resourceURI": "/job/config.yaml"},
        {"resourceURI": "/helm/values.yaml"},
        {"resourceURI": "/helm/templates/job.yaml"},
        {"resourceURI": "/helm-abc/other.yaml"},
        {"resourceURI": "/helmDEFG"},
    ],
    "nextPageKey": "0",
}


def files_server(script: Script) -> None:
    stored = {
        "locust.conf": b"users: 1",
        "helm/values.yaml": b"replicas: 1",
        "helm/templates/job.yaml": b"kind: Job",
        "helm-abc/other.yaml": b"other",
    }

    def one(request: httpx.Request) -> httpx.Response:
        name = request.url.path.rsplit("/", 1)[1].replace("%2F", "/")
        if name in stored:
            return content(stored[name])
        return NOT_FOUND

    script.on("GET", SERVICE, reply(200, LISTING))
    script.on("GET", SERVICE + "/.+", one)


async def test_files_are_single_files_or_directories(
    script: Script, make_client: ClientFactory, tmp_path: Path
) -> None:
    files_server(script)
    sizes = await source(make_client).fetch_files("p", "dev", "hello", ["/locust.conf", "helm"], tmp_path, task="load")
    expected = {"locust.conf": b"users: 1", "helm/values.yaml": b"replicas: 1", "helm/templates/job.yaml": b"kind: Job"}
    assert sizes == {path: len(content) for path, content in sorted(expected.items())}
    assert {path: (tmp_path / path).read_bytes() for path in sizes} == expected  # spooled, one at a time
    assert all("gitCommitID" not in r.url.params for r in script.requests)  # always the latest version
    assert script.count("GET", SERVICE) == 1  # one listing for all directories


async def test_a_missing_file_names_the_path_and_the_task(script: Script, make_client: ClientFactory) -> None:
    files_server(script)
    with pytest.raises(configsource.FilesNotFoundError) as caught:
        await source(make_client).fetch_files("p", "dev", "hello", ["hel"], Path("/nonexistent"), task="deploy")
    assert str(caught.value) == "could not find file or directory hel for task deploy"
    assert (caught.value.path, caught.value.task) == ("hel", "deploy")


async def test_a_file_error_other_than_404_is_raised(script: Script, make_client: ClientFactory) -> None:
    script.on("GET", SERVICE + "/.+", reply(403, {"message": "forbidden"}))
    with pytest.raises(errors.KeptnAuthError):
        await source(make_client).fetch_files("p", "dev", "hello", ["locust.conf"], Path("/nonexistent"), task="load")


async def test_files_beyond_the_keptn_volume_are_refused(
    script: Script, make_client: ClientFactory, tmp_path: Path
) -> None:
    files_server(script)
    with pytest.raises(configsource.FilesTooBigError, match="more than 10 bytes, the size of /keptn"):
        await source(make_client).fetch_files("p", "dev", "hello", ["helm"], tmp_path, task="t", max_total_bytes=10)
