"""What a report covers (the bank, a region, a branch or a counter) and the organisation map that resolves it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import ColumnElement, select, true

from store import Database
from store.models import Branch, Counter, ScopeKind, StaffUser

Dimension = Literal["all", "region", "branch", "counter"]
DIMENSIONS: tuple[Dimension, ...] = ("all", "region", "branch", "counter")


class ReportingError(Exception):
    """A report was asked about something that does not exist: an unknown branch, counter or region."""


@dataclass(frozen=True, slots=True)
class Scope:
    """A part of the organisation; codes are the operator's branch and counter codes."""

    kind: Dimension
    region: str | None = None
    branch: str | None = None
    counter: str | None = None

    @classmethod
    def bank(cls) -> Scope:
        return cls("all")

    @classmethod
    def of_region(cls, region: str) -> Scope:
        return cls("region", region=region)

    @classmethod
    def of_branch(cls, branch: str) -> Scope:
        return cls("branch", branch=branch)

    @classmethod
    def of_counter(cls, branch: str, counter: str) -> Scope:
        return cls("counter", branch=branch, counter=counter)

    @property
    def label(self) -> str:
        """A short name for tables and logs: all, a region, BRANCH or BRANCH/COUNTER."""
        if self.kind == "all":
            return "all"
        if self.kind == "region":
            return self.region or ""
        return f"{self.branch}/{self.counter}" if self.kind == "counter" else self.branch or ""


@dataclass(frozen=True, slots=True)
class ScopeFilter:
    """A scope in database ids: which branches (None: all), and which counter by id and by code."""

    branch_ids: tuple[int, ...] | None = None
    counter_id: int | None = None
    counter_code: str | None = None


@dataclass(frozen=True, slots=True)
class Org:
    """Branch codes, regions and counters by id: a few hundred rows, read once per report."""

    branch_codes: dict[int, str]
    branch_regions: dict[int, str | None]
    counters: dict[int, tuple[int, str]]  # counter id -> (branch id, counter code)

    def filter_for(self, scope: Scope) -> ScopeFilter:
        """Translate a scope into ids.

        Raises:
            ReportingError: the branch, counter or region is unknown.
        """
        if scope.kind == "all":
            return ScopeFilter()
        if scope.kind == "region":
            ids = tuple(sorted(i for i, region in self.branch_regions.items() if region == scope.region))
            if not ids:
                known = sorted({r for r in self.branch_regions.values() if r})
                raise ReportingError(f"unknown region {scope.region!r} (known: {_listing(known)})")
            return ScopeFilter(branch_ids=ids)
        branch_id = self.branch_id(scope.branch or "")
        if scope.kind == "branch":
            return ScopeFilter(branch_ids=(branch_id,))
        counter_id = self.counter_id(branch_id, scope.counter or "")
        return ScopeFilter(branch_ids=(branch_id,), counter_id=counter_id, counter_code=scope.counter)

    def branch_id(self, code: str) -> int:
        for branch_id, known in self.branch_codes.items():
            if known == code:
                return branch_id
        raise ReportingError(f"unknown branch {code!r} (known: {_listing(sorted(self.branch_codes.values()))})")

    def counter_id(self, branch_id: int, code: str) -> int:
        for counter_id, (owner, known) in self.counters.items():
            if owner == branch_id and known == code:
                return counter_id
        codes = sorted(c for owner, c in self.counters.values() if owner == branch_id)
        branch = self.branch_codes[branch_id]
        raise ReportingError(f"unknown counter {code!r} in branch {branch} (its counters: {_listing(codes)})")

    def scope_of(self, dimension: Dimension, branch_id: int | None, counter_id: int | None) -> Scope | None:
        """The scope a grouped row belongs to; None for a row outside every group of the dimension.

        A branch without a region belongs to no region; feedback left at branch level belongs to no counter.
        """
        if dimension == "all":
            return Scope.bank()
        if branch_id is None or branch_id not in self.branch_codes:
            return None
        if dimension == "branch":
            return Scope.of_branch(self.branch_codes[branch_id])
        if dimension == "region":
            region = self.branch_regions[branch_id]
            return Scope.of_region(region) if region else None
        if counter_id is None or counter_id not in self.counters:
            return None
        return Scope.of_counter(self.branch_codes[branch_id], self.counters[counter_id][1])


async def load_org(db: Database) -> Org:
    """Read every branch and counter (inactive ones too: old feedback still refers to them)."""
    async with db.sessions() as session:
        branches = (await session.execute(select(Branch.id, Branch.code, Branch.region))).all()
        counters = (await session.execute(select(Counter.id, Counter.branch_id, Counter.code))).all()
    return Org(
        branch_codes={row.id: row.code for row in branches},
        branch_regions={row.id: row.region for row in branches},
        counters={row.id: (row.branch_id, row.code) for row in counters},
    )


def _listing(names: list[str], limit: int = 10) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def staff_covers(user: StaffUser, branch: Branch) -> bool:
    """Whether a staff user's scope (everything, their region, their branch) takes in this branch."""
    return (
        user.scope_kind == ScopeKind.ALL
        or (user.scope_kind == ScopeKind.REGION and user.scope_value == branch.region)
        or (user.scope_kind == ScopeKind.BRANCH and user.scope_value == branch.code)
    )


def staff_branches(user: StaffUser) -> ColumnElement[bool]:
    """The SQL condition on `branches` that `staff_covers` states in Python: scope enforced in the query itself.

    Join `Branch` into any statement that lists cases, tickets or feedback for a user and add this condition,
    so a changed id in a URL or API call finds nothing rather than relying on a page hiding a link.
    """
    if user.scope_kind == ScopeKind.ALL:
        return true()
    if user.scope_kind == ScopeKind.REGION:
        return Branch.region == (user.scope_value or "")
    return Branch.code == (user.scope_value or "")
