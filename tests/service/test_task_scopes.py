"""Task tokens any replica can check through the ledger, valid exactly while the task runs."""

from __future__ import annotations

from jes.ledger import Claim, MemoryLedger, TaskRecord, TaskState
from jes.models import EventRef
from jes.service.taskscopes import LedgerScopes

REF = EventRef(id="ev-1", type="sh.keptn.event.test.triggered", keptn_context="ctx", project="p", stage="s",
               service="svc")  # fmt: skip


async def launched(store: MemoryLedger, scopes: LedgerScopes) -> tuple[Claim, str]:
    token, digest = scopes.mint_for(REF, 0, 1)
    claim = Claim(ref=REF, holder="jes-a")
    claim.set_task(0, 1, TaskRecord(TaskState.LAUNCHING, "job-1", token_digest=digest))
    assert await store.claim(claim) is not None
    return claim, token


async def test_another_replica_and_a_restarted_one_accept_the_token_while_the_task_runs() -> None:
    store = MemoryLedger()
    minting = LedgerScopes(store, cache_s=0)
    _, token = await launched(store, minting)
    for replica in (minting, LedgerScopes(store, cache_s=0)):
        scope = await replica.resolve(token)
        assert scope is not None
        assert (scope.keptn_context, scope.triggered_id, scope.task_name, scope.job_name) == ("ctx", "ev-1", "test", "job-1")
        assert (scope.project, scope.stage, scope.service) == ("p", "s", "svc")


async def test_the_token_ends_with_its_task() -> None:
    store = MemoryLedger()
    here, elsewhere = LedgerScopes(store, cache_s=0), LedgerScopes(store, cache_s=0)
    claim, token = await launched(store, here)
    here.ended("job-1")
    assert await here.resolve(token) is None  # at once where it ran
    assert await elsewhere.resolve(token) is not None  # until the claim says done
    claim.set_task(0, 1, TaskRecord(TaskState.DONE, "job-1", status="succeeded"))
    await store.save(claim)
    assert await elsewhere.resolve(token) is None
    assert "token_digest" not in store.records["ev-1"]  # a done record forgets it


async def test_wrong_or_forged_tokens_are_refused() -> None:
    store = MemoryLedger()
    scopes = LedgerScopes(store, cache_s=0)
    _, token = await launched(store, scopes)
    prefix, event, action, task, secret = token.split(".")
    for bad in (
        "",
        "not-a-token",
        f"{prefix}.{event}.{action}.{task}.{secret}x",  # wrong secret
        f"{prefix}.{event}.{action}.2.{secret}",  # another task of the event
        f"{prefix}.ZXYtMg.{action}.{task}.{secret}",  # another event
        f"{prefix}.!!!.{action}.{task}.{secret}",
        f"jes2.{event}.{action}.{task}.{secret}",
    ):
        assert await scopes.resolve(bad) is None, bad
    assert len(secret) >= 40 and token.count(".") == 4
