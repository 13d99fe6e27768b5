"""Mirror the operator's branch list into the database: add, update and deactivate, never delete."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from store.database import Database
from store.errors import StoreError
from store.models import Branch, Counter


@dataclass(frozen=True, slots=True)
class CounterSpec:
    code: str
    name_en: str
    name_zh: str


@dataclass(frozen=True, slots=True)
class BranchSpec:
    code: str
    name_en: str
    name_zh: str
    region: str | None = None
    counters: tuple[CounterSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class SyncResult:
    """How many rows changed; branches and counters are counted together."""

    added: int = 0
    updated: int = 0
    deactivated: int = 0


@dataclass(slots=True)
class _Tally:
    added: int = 0
    updated: int = 0
    deactivated: int = 0


async def sync_branches(db: Database, branches: Sequence[BranchSpec]) -> SyncResult:
    """Make the branches and counters in the database match ``branches``, matching rows by code.

    Rows missing from ``branches`` are marked inactive, never deleted, because feedback refers to them;
    a row that comes back is reactivated. Everything happens in one transaction.

    Raises:
        StoreError: two branches, or two counters of one branch, share a code.
    """
    _reject_duplicates("branch", [b.code for b in branches])
    for spec in branches:
        _reject_duplicates(f"counter in branch {spec.code}", [c.code for c in spec.counters])
    tally = _Tally()
    async with db.sessions.begin() as session:
        existing = await _load_branches(session)
        for spec in branches:
            branch = existing.pop(spec.code, None)
            if branch is None:
                session.add(_new_branch(spec))
                tally.added += 1 + len(spec.counters)
            else:
                _update_branch(branch, spec, tally)
        for branch in existing.values():
            _deactivate(branch, branch.counters, tally)
    return SyncResult(added=tally.added, updated=tally.updated, deactivated=tally.deactivated)


async def _load_branches(session: AsyncSession) -> dict[str, Branch]:
    rows = await session.scalars(select(Branch).options(selectinload(Branch.counters)))
    return {branch.code: branch for branch in rows}


def _new_branch(spec: BranchSpec) -> Branch:
    counters = [_new_counter(c) for c in spec.counters]
    return Branch(code=spec.code, name_en=spec.name_en, name_zh=spec.name_zh, region=spec.region, counters=counters)


def _new_counter(spec: CounterSpec) -> Counter:
    return Counter(code=spec.code, name_en=spec.name_en, name_zh=spec.name_zh)


def _update_branch(branch: Branch, spec: BranchSpec, tally: _Tally) -> None:
    if _assign(branch, name_en=spec.name_en, name_zh=spec.name_zh, region=spec.region, is_active=True):
        tally.updated += 1
    counters = {counter.code: counter for counter in branch.counters}
    for counter_spec in spec.counters:
        counter = counters.pop(counter_spec.code, None)
        if counter is None:
            branch.counters.append(_new_counter(counter_spec))
            tally.added += 1
        elif _assign(counter, name_en=counter_spec.name_en, name_zh=counter_spec.name_zh, is_active=True):
            tally.updated += 1
    _deactivate(None, counters.values(), tally)


def _deactivate(branch: Branch | None, counters: Iterable[Counter], tally: _Tally) -> None:
    for row in [branch, *counters]:
        if row is not None and row.is_active:
            row.is_active = False
            tally.deactivated += 1


def _assign(row: Branch | Counter, **values: object) -> bool:
    """Set the attributes that differ; return whether any did."""
    changed = False
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    return changed


def _reject_duplicates(what: str, codes: Sequence[str]) -> None:
    seen: set[str] = set()
    duplicates: set[str] = set()
    for code in codes:
        (duplicates if code in seen else seen).add(code)
    if duplicates:
        raise StoreError(f"duplicate {what} code(s): {', '.join(sorted(duplicates))}")
