"""Did an event arrive? Asked of the mongodb-datastore before an event whose POST may have
reached the server (:class:`.httperrors.EventMaybeDeliveredError`) is sent again.

The datastore lags behind an accepted event, so "not found" means "not yet" for a while; how long
to wait before trusting it is the caller's decision (``JES_DATASTORE_SETTLE_S``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from jes.util import retry

if TYPE_CHECKING:
    from jes.clients.keptn.client import KeptnClient


def matches_report(
    event: Mapping[str, Any],
    *,
    event_type: str,
    triggered_id: str,
    source: str,
    marker: Mapping[str, Any] | None = None,
) -> bool:
    """Whether a stored event is the report described (type + triggeredid + source [+ marker])."""
    if event.get("type") != event_type or event.get("triggeredid") != triggered_id:
        return False
    if event.get("source") != source:
        return False
    if marker is None:
        return True
    data = event.get("data")
    jes_data = data.get("jes") if isinstance(data, dict) else None
    executor = jes_data.get("executor") if isinstance(jes_data, dict) else None
    return executor is not None and executor == marker.get("executor")


async def delivered(
    client: KeptnClient,
    *,
    keptn_context: str,
    event_type: str,
    triggered_id: str,
    source: str,
    marker: Mapping[str, Any] | None = None,
    backoff: retry.Backoff | None = None,
) -> bool:
    """Whether the datastore holds the event described (see :func:`matches_report`).

    ``marker`` is the ``data.jes`` object jes put in its report; when given, the stored event's
    ``data.jes.executor`` must equal ``marker["executor"]`` (another replica or location sends
    the same type, triggeredid and source).
    """
    events = await client.find_events(keptn_context=keptn_context, event_type=event_type, backoff=backoff)
    return any(
        matches_report(e, event_type=event_type, triggered_id=triggered_id, source=source, marker=marker)
        for e in events
    )
