"""Contract: the branch list from the operator's file is mirrored into the database without losing rows."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from store import BranchSpec, CounterSpec, Database, StoreError, SyncResult, sync_branches
from store.models import Branch

MAIN = BranchSpec(
    "MAIN",
    "Main Street Branch",
    "中央大街支行",
    region="central",
    counters=(CounterSpec("C1", "Counter 1", "1号窗口"), CounterSpec("VIP", "Wealth desk", "理财专柜")),
)
EAST = BranchSpec(
    "EAST", "East Lake Branch", "东湖支行", region="east", counters=(CounterSpec("C1", "Counter 1", "1号窗口"),)
)


async def _snapshot(db: Database) -> dict[str, tuple[bool, str, dict[str, tuple[bool, str]]]]:
    async with db.sessions() as session:
        branches = await session.scalars(select(Branch).options(selectinload(Branch.counters)))
        return {
            b.code: (b.is_active, b.name_en, {c.code: (c.is_active, c.name_en) for c in b.counters}) for b in branches
        }


async def test_first_sync_adds_every_branch_and_counter(db: Database) -> None:
    assert await sync_branches(db, [MAIN, EAST]) == SyncResult(added=5, updated=0, deactivated=0)
    assert await _snapshot(db) == {
        "MAIN": (True, "Main Street Branch", {"C1": (True, "Counter 1"), "VIP": (True, "Wealth desk")}),
        "EAST": (True, "East Lake Branch", {"C1": (True, "Counter 1")}),
    }


async def test_same_list_again_changes_nothing(db: Database) -> None:
    await sync_branches(db, [MAIN, EAST])
    assert await sync_branches(db, [MAIN, EAST]) == SyncResult()


async def test_renames_update_and_removals_deactivate(db: Database) -> None:
    await sync_branches(db, [MAIN, EAST])
    desk = CounterSpec("C1", "Desk 1", "1号窗口")
    renamed = BranchSpec("MAIN", "Main St.", "中央大街支行", region="central", counters=(desk,))
    assert await sync_branches(db, [renamed]) == SyncResult(added=0, updated=2, deactivated=3)
    assert await _snapshot(db) == {
        "MAIN": (True, "Main St.", {"C1": (True, "Desk 1"), "VIP": (False, "Wealth desk")}),
        "EAST": (False, "East Lake Branch", {"C1": (False, "Counter 1")}),
    }


async def test_a_branch_back_in_the_file_is_reactivated(db: Database) -> None:
    await sync_branches(db, [MAIN, EAST])
    await sync_branches(db, [MAIN])
    assert await sync_branches(db, [MAIN, EAST]) == SyncResult(added=0, updated=2, deactivated=0)
    assert (await _snapshot(db))["EAST"] == (True, "East Lake Branch", {"C1": (True, "Counter 1")})


async def test_duplicate_codes_are_refused(db: Database) -> None:
    with pytest.raises(StoreError, match="duplicate branch code"):
        await sync_branches(db, [MAIN, MAIN])
    twice = BranchSpec("X", "X", "X", counters=(CounterSpec("C1", "a", "a"), CounterSpec("C1", "b", "b")))
    with pytest.raises(StoreError, match="duplicate counter in branch X code"):
        await sync_branches(db, [twice])
