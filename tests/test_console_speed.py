"""What keeps the console's busiest pages fast: shared results renewed behind the page, counts fetched by part,
statements built once per scope. Each must leave what a page shows exactly as it was."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select
from test_metrics import NOW, WEEK, seed

from reporting.metrics import metrics_by, metrics_for
from reporting.scope import staff_branches
from store import Database
from store.models import Branch, ScopeKind, StaffRole, StaffUser
from web.scoped_statements import per_scope
from web.shared_results import SharedResults


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Computation:
    """Counts its runs and finishes each only when the test lets it (or at once when `gated` is off)."""

    def __init__(self, *, gated: bool = False) -> None:
        self.runs = 0
        self.gate = asyncio.Event()
        if not gated:
            self.gate.set()
        self.fail_next = False

    async def __call__(self) -> int:
        self.runs += 1
        run = self.runs
        await self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("database went away")
        return run


async def settle() -> None:
    for _ in range(5):  # let background tasks run to their end
        await asyncio.sleep(0)


async def test_a_stale_result_is_answered_at_once_while_one_request_renews_it():
    clock, compute = Clock(), Computation()
    results = SharedResults(ttl=300, size=4, stale_for=600, clock=clock)
    first, first_at = await results.get("MAIN", compute)
    compute.gate.clear()
    clock.now = 301.0

    answers = await asyncio.gather(*(results.get("MAIN", compute) for _ in range(5)))

    assert answers == [(first, first_at)] * 5  # nobody waited for the renewal
    assert compute.runs == 2  # one renewal for all five
    compute.gate.set()
    await settle()
    renewed, renewed_at = await results.get("MAIN", compute)
    assert (renewed, compute.runs) == (2, 2)
    assert renewed_at > first_at


async def test_a_failed_renewal_keeps_the_stale_result_and_the_next_request_tries_again(caplog):
    clock, compute = Clock(), Computation()
    results = SharedResults(ttl=300, size=4, stale_for=600, clock=clock)
    await results.get("MAIN", compute)
    clock.now = 301.0
    compute.fail_next = True

    assert (await results.get("MAIN", compute))[0] == 1
    await settle()
    assert "renewing a shared result failed" in caplog.text
    assert (await results.get("MAIN", compute))[0] == 1  # still the old one, while the retry runs
    await settle()
    assert (await results.get("MAIN", compute))[0] == 3
    assert compute.runs == 3


async def test_a_result_too_old_to_show_is_computed_again_before_answering():
    clock, compute = Clock(), Computation()
    results = SharedResults(ttl=300, size=4, stale_for=600, clock=clock)
    await results.get("MAIN", compute)
    clock.now = 900.0

    assert (await results.get("MAIN", compute))[0] == 2


async def test_closing_cancels_the_computations_still_running():
    clock, compute = Clock(), Computation(gated=True)
    results = SharedResults(ttl=300, size=4, stale_for=600, clock=clock)
    waiting = asyncio.ensure_future(results.get("MAIN", compute))
    await settle()

    await results.close()

    with pytest.raises(asyncio.CancelledError):
        await waiting


@pytest.fixture
async def seeded(db: Database) -> Database:
    await seed(db)
    return db


async def test_counts_fetched_by_part_give_the_figures_of_the_full_reports(seeded):
    full = await metrics_for(seeded, ["all", "branch"], WEEK, min_responses=3, now=NOW)
    without_comments = await metrics_for(
        seeded, ["all", "branch"], WEEK, min_responses=3, now=NOW, parts={"ratings", "starts", "conversations", "cases"}
    )
    comments = await metrics_by(seeded, "all", WEEK, min_responses=3, now=NOW, parts={"comments"})
    ratings = await metrics_by(seeded, "all", WEEK, min_responses=3, now=NOW, parts={"ratings"})

    for dimension, reports in full.items():
        for whole, part in zip(reports, without_comments[dimension], strict=True):
            assert (part.scope, part.responses, part.csat, part.nps, part.ces) == (
                whole.scope, whole.responses, whole.csat, whole.nps, whole.ces
            )  # fmt: skip
            assert (part.completion_rate, part.cases) == (whole.completion_rate, whole.cases)
            assert part.analysed == 0
            assert all(f.value is None for f in part.sentiment.values())
    bank = full["all"][0]
    assert (comments[0].analysed, comments[0].sentiment, comments[0].categories) == (
        bank.analysed, bank.sentiment, bank.categories
    )  # fmt: skip
    assert comments[0].responses == 0
    assert (ratings[0].responses, ratings[0].csat, ratings[0].nps) == (bank.responses, bank.csat, bank.nps)
    assert ratings[0].conversations_started == 0


async def test_unknown_parts_are_refused(seeded):
    with pytest.raises(ValueError, match="unknown parts"):
        await metrics_by(seeded, "all", WEEK, parts={"ratings", "moods"})


def staff(kind: ScopeKind, value: str | None, name: str = "someone") -> StaffUser:
    return StaffUser(username=name, display_name=name, role=StaffRole.STAFF, scope_kind=kind, scope_value=value)


def test_a_statement_is_built_once_per_scope_and_never_shared_across_scopes():
    built: list[tuple[ScopeKind, str | None]] = []

    @per_scope
    def branches(user: StaffUser, language: str) -> object:
        built.append((user.scope_kind, user.scope_value))
        return select(Branch.code).where(staff_branches(user))

    north = branches(staff(ScopeKind.REGION, "North", "ann"), "en")
    assert branches(staff(ScopeKind.REGION, "North", "bob"), "en") is north
    south = branches(staff(ScopeKind.REGION, "South"), "en")
    branch = branches(staff(ScopeKind.BRANCH, "North"), "en")  # a branch coded like a region is another scope
    assert branches(staff(ScopeKind.REGION, "North"), "zh") is not north
    assert built == [(ScopeKind.REGION, "North"), (ScopeKind.REGION, "South"), (ScopeKind.BRANCH, "North"),
                     (ScopeKind.REGION, "North")]  # fmt: skip
    assert "North" in str(north.compile(compile_kwargs={"literal_binds": True}))
    assert "South" in str(south.compile(compile_kwargs={"literal_binds": True}))
    assert "branches.code" in str(branch.compile())
