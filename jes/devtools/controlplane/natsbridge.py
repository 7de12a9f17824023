"""The local control plane's NATS side (``jes control-plane --nats URL``), as Keptn 1.x runs it.

- Every event the control plane creates or accepts over ``POST /v1/event`` is published as a
  structured CloudEvent on the subject named by its type (the shipyard-controller and the
  api-service do so).
- Events that integrations publish are consumed as the shipyard-controller consumes them: Keptn's
  chart runs NATS with JetStream, the shipyard-controller keeps a stream ``keptn`` over ``sh.keptn.>``
  and reads it with a durable pull consumer (explicit acks, batches of 10). So a publish stored by
  the stream is processed even if the control plane was busy or restarting. On a NATS server without
  JetStream the bridge falls back to a plain subscription (at most once, as Keptn before 1.0).
- The datastore is fed apart from the shipyard-controller, as Keptn's mongodb-datastore is: a core
  queue subscription on ``sh.keptn.event.>`` that stores every copy it gets (a repeated publish is
  stored twice; the stream's duplicate detection does not apply to it) and nothing while it is down.
- Events the bridge published itself come back through the stream and are skipped by id.

The bridge runs its own event loop in a thread: the rest of the control plane is threaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
from collections import OrderedDict
from concurrent.futures import Future
from typing import Any
from urllib.parse import urlsplit

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import StreamConfig

from jes import errors
from jes.clients.nats import structured
from jes.devtools.controlplane import models, state

logger = logging.getLogger(__name__)

STREAM = "keptn"
SUBJECTS = "sh.keptn.>"
DURABLE = "shipyard-controller-all-events"
DATASTORE_SUBJECTS = "sh.keptn.event.>"
#: Ids of events published by the bridge, remembered to skip them when they come back.
_OWN_IDS = 100_000
_START_TIMEOUT_S = 10.0


class NatsBridge:
    """Publishes the control plane's events to NATS and takes integrations' events from it."""

    def __init__(self, url: str, cp_state: state.ControlPlaneState) -> None:
        self.url = url
        self._state = cp_state
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="jes-control-plane-nats", daemon=True)
        self._nc: Client | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._own: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self.jetstream = False
        self.consumed = 0

    def start(self) -> None:
        """Connect (a clear SettingsError when NATS cannot be reached) and start consuming."""
        _reachable_or_say_so(self.url)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(_START_TIMEOUT_S)
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            self.stop()
            raise errors.SettingsError(
                [f"--nats: cannot reach NATS at {self.url} ({type(exc).__name__}: {exc}); start nats-server "
                 "(e.g. `nats-server -js -p 4222`) or leave out --nats"]  # fmt: skip
            ) from exc
        self._state.publishers.append(self.publish)

    async def _start(self) -> None:
        self._nc = await nats.connect(
            servers=[self.url], name="jes-local-control-plane", connect_timeout=2, max_reconnect_attempts=-1,
            reconnect_time_wait=1, allow_reconnect=True,
        )  # fmt: skip
        await self._nc.subscribe(DATASTORE_SUBJECTS, queue="mongodb-datastore", cb=self._store)
        self._consumer = asyncio.create_task(self._consume(), name="jes-control-plane-nats-consumer")

    async def _consume(self) -> None:
        assert self._nc is not None
        pull = None
        while pull is None:
            if not self._nc.is_connected:  # NATS away: wait for nats-py's reconnection
                await asyncio.sleep(0.2)
                continue
            try:
                js = self._nc.jetstream()
                with contextlib.suppress(nats.js.errors.BadRequestError):  # exists with other settings: keep it
                    await js.add_stream(StreamConfig(name=STREAM, subjects=[SUBJECTS]))
                pull = await js.pull_subscribe(SUBJECTS, durable=DURABLE, stream=STREAM)
            except (nats.js.errors.ServiceUnavailableError, nats.errors.NoRespondersError):
                logger.warning("NATS at %s has no JetStream: consuming with a plain subscription (at most once)",
                               self.url)  # fmt: skip
                await self._nc.subscribe(SUBJECTS, cb=self._take)
                return
            except (nats.errors.Error, TimeoutError) as exc:
                logger.debug("setting up the NATS stream failed (retrying): %s", exc)
                await asyncio.sleep(0.5)
        self.jetstream = True
        while True:
            try:
                messages = await pull.fetch(10, timeout=1.0)
            except TimeoutError:
                continue
            except nats.errors.Error as exc:
                logger.debug("reading the NATS stream failed (retrying): %s", exc)
                await asyncio.sleep(0.5)
                continue
            for msg in messages:
                await self._take(msg)
                with contextlib.suppress(nats.errors.Error):
                    await msg.ack()

    async def _store(self, msg: Msg) -> None:
        try:
            body = json.loads(msg.data)
        except (ValueError, RecursionError):
            return
        if isinstance(body, dict) and isinstance(body.get("type"), str) and not self._is_own(str(body.get("id", ""))):
            self._state.store_published(body)

    async def _take(self, msg: Msg) -> None:
        try:
            body = json.loads(msg.data)
        except (ValueError, RecursionError):
            logger.warning("local control plane: skipping a message on %s that is not JSON", msg.subject)
            return
        if isinstance(body, dict) and self._is_own(str(body.get("id", ""))):
            return
        try:
            incoming = models.parse_incoming_event(body)
        except models.ApiProblem as exc:
            logger.warning("local control plane: skipping an event on %s: %s", msg.subject, exc.message)
            return
        self._state.accept_event(incoming, from_nats=True)
        self.consumed += 1

    def _is_own(self, event_id: str) -> bool:
        with self._lock:
            return event_id in self._own

    def publish(self, event: dict[str, Any]) -> None:
        """Publish (from any thread; does not wait)."""
        with self._lock:
            self._own[str(event.get("id"))] = None
            while len(self._own) > _OWN_IDS:
                self._own.popitem(last=False)
        payload = json.dumps(structured(event), separators=(",", ":")).encode()
        future: Future[None] = asyncio.run_coroutine_threadsafe(self._publish(str(event["type"]), payload), self._loop)
        future.add_done_callback(_log_failure)

    async def _publish(self, subject: str, payload: bytes) -> None:
        if self._nc is None:
            raise errors.NatsError("the local control plane is not connected to NATS")
        await self._nc.publish(subject, payload)

    def stop(self) -> None:
        if self.publish in self._state.publishers:
            self._state.publishers.remove(self.publish)
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        if not self._thread.is_alive() and not self._loop.is_closed():
            self._loop.close()

    async def _close(self) -> None:
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._consumer
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()


def _log_failure(future: Future[None]) -> None:
    exc = future.exception()
    if exc is not None:
        logger.warning("local control plane: publishing to NATS failed: %s", exc)


def _reachable_or_say_so(url: str) -> None:
    """nats-py would retry the first connection for ever: find out at once whether a server listens."""
    parts = urlsplit(url if "://" in url else f"nats://{url}")
    host, port = parts.hostname or "127.0.0.1", parts.port or 4222
    try:
        socket.create_connection((host, port), timeout=2.0).close()
    except OSError as exc:
        raise errors.SettingsError(
            [f"--nats: cannot reach NATS at {url} ({exc.strerror or exc}); start nats-server "
             "(e.g. `nats-server -js -p 4222`) or leave out --nats"]  # fmt: skip
        ) from exc
