"""The claim record: the ``cancelled`` mark survives a round trip and old records read as before."""

from __future__ import annotations

from jes.ledger import Claim, EventRef

REF = EventRef(id="e1", type="sh.keptn.event.test.triggered", keptn_context="c1")


def test_a_cancelled_claim_reads_back_cancelled_and_done() -> None:
    claim = Claim(ref=REF, holder="jes-0")
    claim.cancelled = True
    claim.mark_done()

    again = Claim.loads(claim.dumps())

    assert again.cancelled and again.done


def test_a_record_without_the_mark_is_not_cancelled() -> None:
    record = Claim(ref=REF, holder="jes-0").to_json()

    assert "cancelled" not in record  # records of claims that were not cancelled are unchanged
    assert not Claim.from_json(record).cancelled
