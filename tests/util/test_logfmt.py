"""jes.util.logfmt.bind: fields on every record written inside the block (and tasks started in it)."""

from __future__ import annotations

import asyncio

from jes.util import logfmt


def test_nested_blocks_add_fields_and_a_later_name_wins_until_the_block_ends() -> None:
    assert logfmt.bound() == {}
    with logfmt.bind(event_id="e1", keptn_context="c1", empty=""):
        assert logfmt.bound() == {"event_id": "e1", "keptn_context": "c1"}  # (empty values are left out)
        with logfmt.bind(action="a", event_id="e2"):
            assert logfmt.bound() == {"event_id": "e2", "keptn_context": "c1", "action": "a"}
        assert logfmt.bound() == {"event_id": "e1", "keptn_context": "c1"}
    assert logfmt.bound() == {}


async def test_tasks_started_in_a_block_carry_its_fields() -> None:
    with logfmt.bind(event_id="e1"):
        inner = await asyncio.create_task(_bound_later())
    assert inner == {"event_id": "e1"} and logfmt.bound() == {}


async def _bound_later() -> dict[str, str]:
    await asyncio.sleep(0)
    return logfmt.bound()
