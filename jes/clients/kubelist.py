"""Lists of Kubernetes objects a page at a time (``limit`` and ``continue``), so that no answer
holds ten thousand objects at once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from jes import errors

Obj = dict[str, Any]

PAGE = 500
"""Objects per page (``limit``)."""
MAX_RESTARTS = 3
"""Times a list starts again when its continue token expired, before the error is raised."""


async def pages(
    list_once: Callable[[Mapping[str, str]], Awaitable[Obj]], query: Mapping[str, str]
) -> AsyncIterator[list[Obj]]:
    """The items ``list_once(query)`` finds, :data:`PAGE` at a time. A continue token the API server
    no longer honours (410 Gone: etcd compacted its revision) starts the list again, as the API's
    documentation tells clients to: a page may then repeat objects already given (callers must
    not mind)."""
    token, restarts = "", 0
    while True:
        paged = {**query, "limit": str(PAGE)} | ({"continue": token} if token else {})
        try:
            answer = await list_once(paged)
        except errors.KubeError as exc:
            if not token or exc.status != 410 or restarts >= MAX_RESTARTS:
                raise
            token, restarts = "", restarts + 1
            continue
        yield list(answer.get("items") or [])
        token = str((answer.get("metadata") or {}).get("continue") or "")
        if not token:
            return
