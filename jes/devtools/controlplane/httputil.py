"""Small HTTP helpers shared by the routes: strict JSON bodies, paging parameters, gin's 404."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from jes.devtools.controlplane import models


def not_found() -> Response:
    """What gin answers for a path no route matches."""
    return PlainTextResponse("404 page not found", status_code=404)


def _refuse_constant(constant: str) -> Any:
    raise ValueError(f"invalid JSON literal {constant}")


#: ``json.loads(..., parse_constant=...)`` builds a decoder per call; this one is built once.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def json_loads(body: bytes) -> Any:
    """Strict JSON as Go decodes it: UTF-8 only, no NaN or Infinity; ``ValueError`` otherwise
    (with ``json.loads``'s messages)."""
    text = body.decode("utf-8")
    if text.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    return _DECODER.decode(text)


async def read_json(request: Request) -> Any:
    """The request body as JSON; 400 when it is not JSON."""
    body = await request.body()
    try:
        return json_loads(body)
    except ValueError as exc:
        raise models.ApiProblem(400, f"Invalid request format: {exc}") from None


def page_params(request: Request, *, default_size: int = 20) -> tuple[int, int]:
    """(pageSize, offset) from ``pageSize`` / ``nextPageKey``; 400 when they are not numbers."""
    values = []
    for name, default in (("pageSize", default_size), ("nextPageKey", 0)):
        raw = request.query_params.get(name) or ""
        if not raw:
            values.append(default)
            continue
        if not raw.isdigit():
            raise models.ApiProblem(400, f"invalid {name} {raw!r}: expected a non-negative integer")
        values.append(int(raw))
    size, offset = values
    return size or default_size, offset


def query(request: Request, name: str) -> str | None:
    """A query parameter, ``None`` when absent or empty (as gin's filters treat "")."""
    return request.query_params.get(name) or None
