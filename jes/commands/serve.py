"""Process-level glue for ``jes serve`` and ``jes check``: logging, signals, exit codes."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import sys

from jes import errors
from jes.commands import signals
from jes.settings import Settings
from jes.util import logfmt

logger = logging.getLogger("jes")


def serve(settings: Settings, *, once: bool = False) -> int:
    logfmt.setup(fmt=settings.log_format, secrets=(settings.keptn_api_token, settings.oauth_client_secret))
    try:
        asyncio.run(_serve(settings, once=once))
    except errors.JesError as exc:
        logger.error("jes stopped: %s", exc)
        return 1
    return 0


async def _serve(settings: Settings, *, once: bool) -> None:
    stop = asyncio.Event()
    signals.on_stop(stop)
    from jes.service.core import Service

    service = Service(settings)
    # The ~80k objects of the libraries loaded by now live as long as the process: kept out of the
    # collector's reach, a full collection no longer walks them (~27 ms each, several a second
    # under a burst of events).
    gc.collect()  # (what is garbage now would never be collected once frozen)
    gc.freeze()
    if once:
        await service.run_once(stop)
        return
    await service.run(stop)


def check(settings: Settings) -> int:
    """Call the control plane with the configured credentials; print what it says."""
    return asyncio.run(_check(settings))


async def _check(settings: Settings) -> int:
    from jes.clients.keptn import auth
    from jes.clients.keptn import client as keptn_client

    async with auth.make_http_client(settings) as http:
        client = keptn_client.KeptnClient.from_settings(http, settings)
        try:
            metadata = await client.check()
        except errors.JesError as exc:
            print(f"jes check: {settings.keptn_api_endpoint}: FAILED: {exc}", file=sys.stderr)
            return 1
    print(f"jes check: {settings.keptn_api_endpoint}: OK ({auth.describe(settings)})")
    print(json.dumps(metadata, indent=2))
    return 0
