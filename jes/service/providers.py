"""The handler's config and file providers backed by the control plane's resource service.

Configs pinned to a git commit never change, so they are cached (bounded); a project-level config
(read at the branch head) is cached only for ``unpinned_ttl_s``. Events arriving together that
need the same config share one fetch (the others wait for it), so a burst of a thousand events
costs one request, not a thousand.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jes.clients.keptn import client as keptn_client
from jes.clients.keptn import configsource
from jes.matcher import config as cfg
from jes.models import EventInfo, EventRef, RenderedTask
from jes.service import ports
from jes.util import retry

Key = tuple[str, str, str, str]


class ControlPlaneConfigs:
    def __init__(
        self,
        source: configsource.ConfigSource,
        *,
        max_entries: int = 512,
        unpinned_ttl_s: float = 2.0,
        max_config_bytes: int = cfg.DEFAULT_MAX_CONFIG_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._max_config_bytes = max_config_bytes
        self._cache: OrderedDict[Key, tuple[float, cfg.LoadedConfig]] = OrderedDict()
        self._max_entries = max_entries
        self._unpinned_ttl_s = unpinned_ttl_s
        self._clock = clock
        self._loading: dict[Key, asyncio.Future[cfg.LoadedConfig]] = {}

    async def load(self, info: EventInfo) -> cfg.LoadedConfig:
        key = (info.project, info.stage, info.service, info.git_commit_id)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > self._clock():
            self._cache.move_to_end(key)
            return cached[1]
        loading = self._loading.get(key)
        if loading is not None:
            try:
                return await asyncio.shield(loading)
            except asyncio.CancelledError:
                if loading.cancelled():  # the event that was fetching it was cancelled: fetch anew
                    return await self.load(info)
                raise
        future: asyncio.Future[cfg.LoadedConfig] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            loaded = await self._fetch(key, info)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # marks it retrieved: the waiters re-raise it themselves
            raise
        else:
            future.set_result(loaded)
            return loaded
        finally:
            del self._loading[key]

    async def _fetch(self, key: Key, info: EventInfo) -> cfg.LoadedConfig:
        try:
            found = await self._source.fetch_config(info.project, info.stage, info.service, info.git_commit_id)
        except configsource.ConfigNotFoundError as exc:
            raise ports.ConfigNotFound(str(exc)) from exc
        # parsing a big file takes a while: off the event loop, so polling and reports go on
        loaded = await asyncio.to_thread(
            cfg.load, found.content, file=f"job/config.yaml ({found.location})", max_bytes=self._max_config_bytes
        )
        pinned = bool(info.git_commit_id) and found.level is not configsource.Level.PROJECT
        self._remember(key, loaded, float("inf") if pinned else self._clock() + self._unpinned_ttl_s)
        return loaded

    def _remember(self, key: Key, loaded: cfg.LoadedConfig, expires: float) -> None:
        self._cache[key] = (expires, loaded)
        self._cache.move_to_end(key)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)


class ControlPlaneFiles:
    def __init__(self, source: configsource.ConfigSource, *, max_total_bytes: int | None = None) -> None:
        self._source = source
        self._max_total_bytes = max_total_bytes

    async def fetch(self, info: EventInfo, task: RenderedTask, into: Path) -> dict[str, int]:
        return await self._source.fetch_files(
            info.project, info.stage, info.service, task.files, into,
            task=task.name, max_total_bytes=self._max_total_bytes,
        )  # fmt: skip


class ControlPlaneTriggered:
    """Whether a triggered event is still open, from the shipyard-controller (never the datastore):
    ``GET /controlPlane/v1/event/triggered/{type}?eventID=`` answers with at most one event, so
    Keptn's page-2 bug cannot hide it. Temporary errors are retried until it answers."""

    def __init__(self, client: keptn_client.KeptnClient, *, backoff: retry.Backoff = retry.UNTIL_ACCEPTED) -> None:
        self._client = client
        self._backoff = backoff

    async def fetch(self, ref: EventRef) -> dict[str, Any] | None:
        found = await self._client.get_triggered(ref.type, event_id=ref.id, backoff=self._backoff)
        return next((e for e in found if e.get("id") == ref.id), None)
