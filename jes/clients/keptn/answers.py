"""Reading the control plane's answers: JSON bodies, event and resource lists, page keys.

An answer that is not the JSON the contract promises raises :func:`httperrors.bad_answer` (a
temporary error), so a proxy's error page or a truncated body is retried rather than a crash.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, TypeVar

import httpx
import pydantic
from pydantic import BaseModel

from jes.clients.keptn.httperrors import BODY_EXCERPT_CHARS, bad_answer
from jes.clients.keptn.wire import Json, Resource

M = TypeVar("M", bound=BaseModel)


def json_body(response: httpx.Response) -> Any:
    """The JSON body, whatever its type."""
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_answer(response, f"invalid JSON: {response.text[:BODY_EXCERPT_CHARS]!r}") from exc


def json_object(response: httpx.Response) -> Json:
    """The JSON body, which must be an object."""
    body = json_body(response)
    if not isinstance(body, dict):
        raise bad_answer(response, f"a JSON {type(body).__name__} where an object was expected")
    return body


def parse_model(cls: type[M], response: httpx.Response, value: Any) -> M:
    """``value`` (from ``response``) read as a ``cls``."""
    try:
        return cls.model_validate(value)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise bad_answer(response, f"an unexpected {cls.__name__} ({where}: {first['msg']})") from exc


def event_list(response: httpx.Response, body: Json) -> list[Json]:
    """The ``events`` of a page (none when ``null``)."""
    events = body.get("events")
    if events is None:
        return []
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise bad_answer(response, "'events' that is not a list of objects")
    return events


def next_page_key(body: Json) -> str:
    """The key of the next page; "" (or "0") when this was the last."""
    key = body.get("nextPageKey")
    return "" if key is None else str(key)


def event_key(event: Json) -> str:
    """What makes an event unique in a paginated list: its id."""
    return str(event.get("id", ""))


def resource_list(response: httpx.Response, body: Json) -> list[Json]:
    """The ``resources`` of a page (none when ``null``)."""
    resources = body.get("resources")
    if resources is None:
        return []
    if not isinstance(resources, list) or not all(isinstance(r, dict) for r in resources):
        raise bad_answer(response, "'resources' that is not a list of objects")
    return resources


def resource_of(response: httpx.Response, body: Json, uri: str) -> Resource:
    """One file of the resource service: its base64 content decoded, with the commit it was read at."""
    content = body.get("resourceContent")
    if not isinstance(content, str):
        raise bad_answer(response, "no resourceContent")
    try:
        data = base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise bad_answer(response, "resourceContent that is not base64") from exc
    metadata = body.get("metadata")
    version = metadata.get("version", "") if isinstance(metadata, dict) else ""
    return Resource(uri=uri.lstrip("/"), content=data, version=str(version or ""))
