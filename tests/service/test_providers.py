"""The control-plane config provider: one fetch for a burst, caching by commit, errors shared."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from jes import settings
from jes.clients.keptn import auth, configsource
from jes.clients.keptn import client as keptn_client
from jes.devtools.controlplane.server import LocalControlPlane
from jes.models import EventInfo
from jes.service import providers
from jes.service.ports import ConfigNotFound

CONFIG = b"apiVersion: v2\nactions: []\n"


@pytest.fixture
def seeded() -> Iterator[tuple[LocalControlPlane, str]]:
    with LocalControlPlane(token="p") as control_plane:
        commit = control_plane.put_resource(project="p", stage="dev", service="svc", uri="job/config.yaml", content=CONFIG)
        yield control_plane, commit


def info(commit: str = "", service: str = "svc") -> EventInfo:
    return EventInfo(id="1", type="t", source="s", keptn_context="c", git_commit_id=commit, project="p", stage="dev", service=service)


async def test_a_burst_shares_one_fetch_and_pinned_configs_stay_cached(seeded: tuple[LocalControlPlane, str]) -> None:
    plane, commit = seeded
    counter = plane.faults.add(method="GET", path="/resource-service/v1/project/p/stage/dev/service/svc/resource/.*", latency_s=0.2)
    current = settings.Settings(keptn_api_endpoint=plane.url, keptn_api_token="p")
    async with auth.make_http_client(current) as http:
        subject = providers.ControlPlaneConfigs(configsource.ConfigSource(keptn_client.KeptnClient.from_settings(http, current)))
        loaded = await asyncio.gather(*(subject.load(info(commit)) for _ in range(50)))
        assert {id(x) for x in loaded} == {id(loaded[0])} and counter.fired == 1
        await subject.load(info(commit))
        assert counter.fired == 1  # pinned to a commit: cached
        missing = [subject.load(info(service="nope")) for _ in range(5)]
        results = await asyncio.gather(*missing, return_exceptions=True)
        assert all(isinstance(r, ConfigNotFound) for r in results)


async def test_a_cancelled_fetch_does_not_fail_the_waiters(seeded: tuple[LocalControlPlane, str]) -> None:
    plane, commit = seeded
    plane.faults.add(method="GET", path="/resource-service/v1/project/p/stage/dev/service/svc/resource/.*", latency_s=0.3)
    current = settings.Settings(keptn_api_endpoint=plane.url, keptn_api_token="p")
    async with auth.make_http_client(current) as http:
        subject = providers.ControlPlaneConfigs(configsource.ConfigSource(keptn_client.KeptnClient.from_settings(http, current)))
        first = asyncio.create_task(subject.load(info(commit)))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(subject.load(info(commit)))
        await asyncio.sleep(0.05)
        first.cancel()
        assert (await second).config.apiVersion == "v2"
        with pytest.raises(asyncio.CancelledError):
            await first
