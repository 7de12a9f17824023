"""The distributor's API proxy and event forwarding inside ``jes serve`` (off unless
``API_PROXY_PORT`` is set), and the scoped tokens of tasks (``JES_API_PROXY_TASK_PORT``).

Events a sidecar or a task sends to ``/event`` leave the way jes's own reports leave: published to
NATS in NATS mode, POSTed to ``/v1/event`` otherwise. Error-log events (and errored ``.finished``
events) become entries of the integration's error log, as the distributor's uniform log does.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

from jes import ledger
from jes import settings as jes_settings
from jes.clients.keptn import wire
from jes.clients.keptn.httperrors import EventMaybeDeliveredError
from jes.models import ApiProxyAccess, EventRef
from jes.proxy.server import ProxyServer
from jes.reporter import delivery
from jes.service.taskscopes import LedgerScopes
from jes.util import retry

logger = logging.getLogger(__name__)


def task_proxy_url(settings: jes_settings.Settings) -> str:
    """``KEPTN_API_PROXY_URL`` as tasks see it (the chart's Service, or loopback for the local runner)."""
    return settings.api_proxy_task_url or f"http://127.0.0.1:{settings.api_proxy_task_port}"


class ApiProxy:
    """Builds, starts and stops the proxy; mints and revokes task tokens."""

    def __init__(
        self,
        settings: jes_settings.Settings,
        *,
        http: httpx.AsyncClient,
        sender: delivery.EventSender,
        reporter: delivery.Reporter,
        store: ledger.Ledger,
    ) -> None:
        self.settings = settings
        self._sender = sender
        self._reporter = reporter
        self.scopes: LedgerScopes | None = (
            LedgerScopes(store) if settings.api_proxy_task_port is not None else None
        )
        self.server = ProxyServer.from_settings(
            settings, http=http, forward_event=self.forward, on_error_log=self.error_log, scopes=self.scopes
        )
        self._log_tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.server.start()
        where = f"{self.settings.api_proxy_host}:{self.server.trusted.port}"
        tasks = f", tasks on port {self.server.task.port}" if self.server.task is not None else ""
        logger.info("API proxy and event forwarding listening on %s%s", where, tasks)

    async def stop(self) -> None:
        await self.server.stop()
        for task in list(self._log_tasks):
            task.cancel()
        await asyncio.gather(*self._log_tasks, return_exceptions=True)

    async def forward(self, event: dict[str, Any]) -> None:
        """Send an event on once (as the distributor: the caller retries)."""
        try:
            await self._sender.send_event(event, backoff=retry.Backoff(()))
        except EventMaybeDeliveredError:
            if not self.settings.in_cluster:
                raise
            # published to NATS without a stream's acknowledgement: it left, as the distributor's publish

    def error_log(self, event: dict[str, Any]) -> None:
        made = wire.log_entry_for(event)
        if made is None:
            return
        # the integration's own id is filled in by the reporter
        entry = made.model_dump(exclude={"integrationid"}) | {"gitcommitid": str(event.get("gitcommitid") or "")}
        task = asyncio.get_running_loop().create_task(self._reporter.error_log(entry), name="jes-proxy-error-log")
        self._log_tasks.add(task)
        task.add_done_callback(self._log_tasks.discard)

    def task_access(self) -> TaskAccess | None:
        """What the task runner gives tasks (None: tasks get no proxy access)."""
        if self.scopes is None:
            return None
        return TaskAccess(self.scopes, task_proxy_url(self.settings))


class TaskAccess:
    """Grants a task its URL and token (:class:`jes.service.tasks.ProxyAccess`)."""

    def __init__(self, scopes: LedgerScopes, url: str) -> None:
        self._scopes = scopes
        self._url = url

    def grant(self, ref: EventRef, action_index: int, task_index: int) -> tuple[ApiProxyAccess, str]:
        token, token_digest = self._scopes.mint_for(ref, action_index, task_index)
        return ApiProxyAccess(url=self._url, token=token), token_digest

    def ended(self, job_name: str) -> None:
        self._scopes.ended(job_name)
