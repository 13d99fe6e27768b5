"""Benchmark: the all-branch weekly digest over a year of feedback (default 1,000,000 rows, 200 branches).

For each backend a scratch database is filled in SQL (bench/fill.py: generate_series on PostgreSQL, a recursive
CTE on SQLite; identical rows on both, timed apart), then each step runs in a fresh child process, so the peak
memory it reports (VmHWM: the child's RSS high-water, imports included) is its own and not the fill's:

    digest   build_digest for the whole bank (Scope.bank()) and the latest full week, 2026-W09 in Asia/Shanghai
    render   render_digest of that digest in English and Chinese (charts, HTML, text, Telegram, PDF)
    naive    the anchor (bench/naive_digest.py): ORM objects loaded into pandas, the same figures computed there
    tickets  one ticket grouping pass (run_grouping, the hashing embed stand-in of bench/reporting_tickets.py)

It prints seconds and peak MB per step, the digest's speed-up over the naive version, and whether the two
agree on every figure the digest shows (headlines this week and last, the CSAT and NPS trend, the movers'
category shares, each branch's category counts). Goal at 1M rows: the digest under 10 s and 1.5 GB, and at
least 5x the naive version. The scratch PostgreSQL database is dropped and the SQLite folder removed afterwards.

    .venv/bin/python bench/reporting_digest.py [--backend sqlite|postgresql|both] [--rows 1000000]
                                               [--url postgresql://postgres@127.0.0.1:5432/test] [--repeat 1]

Smoke run (a few seconds per backend): --rows 20000. --repeat N runs digest and naive N times (median, max peak).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fill import NOW, TIMEZONE, fill, latest_full_week, scratch_database  # noqa: E402
from naive_digest import naive_figures  # noqa: E402

from reporting.digest import DigestData, build_digest, trend_periods  # noqa: E402
from reporting.periods import week_period  # noqa: E402
from reporting.scope import Scope  # noqa: E402
from store import Database, upgrade  # noqa: E402

DATABASE_ENV = "CLOSELOOP_BENCH_DATABASE"  # the child's database URL: kept out of argv, which `ps` shows
MIN_RESPONSES = 10
TOLERANCE = 1e-6
GOAL_ROWS, GOAL_SECONDS, GOAL_MB, GOAL_SPEEDUP = 1_000_000, 10.0, 1536.0, 5.0
STEPS = ("digest", "render", "naive", "tickets")
REPEATED = ("digest", "naive")  # the others change nothing worth repeating, or change the data (tickets)
# Imported by the children that need them only: matplotlib and fpdf would swell the other children's memory.
STEP_IMPORTS = {"render": ("reporting.render",), "tickets": ("reporting_tickets", "reporting.tickets")}


@dataclass(slots=True)
class Measured:
    """One step's runs: seconds each, the highest peak, the child's size before the step, and what it returned."""

    seconds: list[float] = field(default_factory=list)
    peak_mb: float = 0.0
    base_mb: float = 0.0
    output: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


# -- the parent: fill, run the children, print ----------------------------------------------------------------


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--rows", type=int, default=1_000_000, help="feedback rows (plus 480 planted complaints)")
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test", help="PostgreSQL admin URL")
    parser.add_argument("--repeat", type=int, default=1, help="runs of the digest and naive steps")
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)  # set in a child process
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step:
        return await child(args.step, args.workdir)
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    print(f"weekly digest benchmark: {args.rows:,} feedback rows, week {latest_full_week()} ({TIMEZONE})")
    for backend in backends:
        await bench_backend(backend, args)
    return 0


async def bench_backend(backend: str, args: argparse.Namespace) -> None:
    async with scratch_database(backend, args.url) as url:
        db = Database(url)
        try:
            await upgrade(db)
            filled = await fill(db, args.rows)
        finally:
            await db.dispose()
        print(f"\n[{backend}] filled {filled.feedback:,} feedback, {filled.conversations:,} conversations, "
              f"{filled.cases:,} cases, {filled.survey_starts:,} survey_starts in {filled.seconds:.1f} s; "
              f"load {_load()}")  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="closeloop-digest-") as folder:
            measured = {
                step: measure(step, url, Path(folder), args.repeat if step in REPEATED else 1) for step in STEPS
            }
        print_table(backend, measured, args.rows)
        print(f"[{backend}] load after: {_load()}")


def measure(step: str, url: str, workdir: Path, repeat: int) -> Measured:
    """Run a step `repeat` times, each in a fresh child process; keep every time and the highest peak."""
    result = Measured()
    for _ in range(repeat):
        command = [sys.executable, str(Path(__file__).resolve()), "--step", step, "--workdir", str(workdir)]
        subprocess.run(command, check=True, env=os.environ | {DATABASE_ENV: url})  # noqa: S603 - our own script
        run = json.loads((workdir / f"{step}.json").read_text())
        result.seconds.append(run["seconds"])
        result.peak_mb = max(result.peak_mb, run["peak_mb"])
        result.base_mb, result.output = run["base_mb"], run["output"]
    return result


def print_table(backend: str, measured: dict[str, Measured], rows: int) -> None:
    print(f"{'backend':<11}{'step':<9}{'seconds':>9}{'peak MB':>9}{'base MB':>9}  note")
    for step, m in measured.items():
        runs = f"runs {', '.join(f'{s:.2f}' for s in m.seconds)}; " if len(m.seconds) > 1 else ""
        print(f"{backend:<11}{step:<9}{m.median:>9.2f}{m.peak_mb:>9.0f}{m.base_mb:>9.0f}  {runs}{m.output['note']}")
    digest, naive = measured["digest"], measured["naive"]
    speedup = naive.median / digest.median
    print(f"{backend:<11}speed-up of digest over naive: {speedup:.1f}x")
    print(f"{backend:<11}check: {agreement(digest.output['figures'], naive.output['figures'])}")
    if rows < GOAL_ROWS:
        print(f"{backend:<11}goal: judged at {GOAL_ROWS:,} rows")
        return
    goals = [digest.median < GOAL_SECONDS, digest.peak_mb < GOAL_MB, speedup >= GOAL_SPEEDUP]
    marks = ["met" if ok else "MISSED" for ok in goals]
    print(f"{backend:<11}goal: < {GOAL_SECONDS:g} s {marks[0]}, < {GOAL_MB:g} MB {marks[1]}, "
          f">= {GOAL_SPEEDUP:g}x naive {marks[2]}")  # fmt: skip


def agreement(digest: dict[str, float | None], naive: dict[str, float | None]) -> str:
    """Compare every figure the digest shows with the naive value of the same name (branch counts both ways)."""
    names = set(digest) | {name for name in naive if name.startswith("branch.")}
    wrong = []
    for name in sorted(names):
        ours, theirs = digest.get(name), naive.get(name, "missing")
        same = ours is None and theirs is None
        if isinstance(ours, int | float) and isinstance(theirs, int | float):
            same = abs(ours - theirs) <= TOLERANCE * max(1.0, abs(theirs))
        if not same:
            wrong.append(f"{name}: digest {ours} naive {theirs}")
    if wrong:
        return f"MISMATCH in {len(wrong)} of {len(names)} figures: " + "; ".join(wrong[:10])
    shown = sum(value is not None for value in digest.values())
    return f"{len(names)} figures equal within {TOLERANCE:g} ({shown} shown, the rest hidden on both sides)"


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


# -- the children: one step each ------------------------------------------------------------------------------


async def child(step: str, workdir: Path) -> int:
    """Run one step against the database named in the environment and write its figures to workdir/STEP.json."""
    for module in STEP_IMPORTS.get(step, ()):
        importlib.import_module(module)  # before the clock starts: a running app has them loaded
    db = Database(os.environ[DATABASE_ENV])
    try:
        await db.ping()  # a warm connection, as a running app has
        base_mb = _status_mb("VmRSS")
        started = time.perf_counter()
        output = await CHILD_STEPS[step](db, workdir)
        seconds = time.perf_counter() - started - output.pop("untimed", 0.0)
    finally:
        await db.dispose()
    result = {"seconds": seconds, "peak_mb": _status_mb("VmHWM"), "base_mb": base_mb, "output": output}
    (workdir / f"{step}.json").write_text(json.dumps(result))
    return 0


def _status_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (the high-water) of this process, in MB.

    Not ru_maxrss: Linux carries that across fork and exec, so a child would report the parent's fill.
    VmHWM belongs to the address space exec created.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status (Linux only)")


async def run_digest(db: Database, workdir: Path) -> dict[str, Any]:
    week = week_period(latest_full_week(), TIMEZONE)
    digest = await build_digest(
        db, Scope.bank(), week, min_responses=MIN_RESPONSES, category_names=category_names(), now=NOW
    )
    started = time.perf_counter()
    (workdir / "digest.pickle").write_bytes(pickle.dumps(digest))
    note = f"{digest.responses:,} responses, {len(digest.branches)} branches, movers {len(digest.movers)}"
    return {"figures": digest_figures(digest), "note": note, "untimed": time.perf_counter() - started}


async def run_render(db: Database, workdir: Path) -> dict[str, Any]:
    from reporting.render import render_digest  # imported before the clock: STEP_IMPORTS

    digest = pickle.loads((workdir / "digest.pickle").read_bytes())  # noqa: S301 - written by our digest child
    sizes = []
    for language in ("en", "zh"):
        rendered = render_digest(digest, language)
        sizes.append(f"{language}: html {len(rendered.html) // 1024} KB, pdf {len(rendered.pdf) // 1024} KB, "
                     f"{len(rendered.images)} charts")  # fmt: skip
    return {"note": "; ".join(sizes)}


async def run_naive(db: Database, workdir: Path) -> dict[str, Any]:
    weeks = trend_periods(week_period(latest_full_week(), TIMEZONE))
    figures = await naive_figures(db, weeks, min_responses=MIN_RESPONSES)
    return {"figures": figures, "note": "Feedback (8 weeks), Analysis, Conversation, SurveyStart (2 weeks) in pandas"}


async def run_tickets(db: Database, workdir: Path) -> dict[str, Any]:
    from reporting_tickets import embed  # imported before the clock: STEP_IMPORTS

    from reporting.tickets import TicketRules, run_grouping

    departments = {c["id"]: c["department"] for c in _taxonomy()["categories"]}
    result = await run_grouping(db, departments, embed, now=NOW, rules=TicketRules(cluster_distance=0.5))
    return {"note": f"grouping pass: opened {result.opened}, updated {result.updated}, reopened {result.reopened}"}


CHILD_STEPS: dict[str, Callable[[Database, Path], Awaitable[dict[str, Any]]]] = {
    "digest": run_digest,
    "render": run_render,
    "naive": run_naive,
    "tickets": run_tickets,
}


def digest_figures(digest: DigestData) -> dict[str, float | None]:
    """The digest's figures under the naive version's names (None: hidden for too few responses)."""
    now, before = digest.period.label, digest.previous.label
    figures: dict[str, float | None] = {f"responses@{now}": digest.responses}
    figures[f"responses@{before}"] = digest.previous_responses
    for headline in digest.headlines:
        figures[f"{headline.name}@{now}"] = headline.change.current.value
        figures[f"{headline.name}@{before}"] = headline.change.previous.value
    for point in digest.trend:
        figures |= {f"csat@{point.week}": point.csat.value, f"nps@{point.week}": point.nps.value}
    for move in digest.movers:
        figures[f"category.{move.category}@{now}"] = move.change.current.value
        figures[f"category.{move.category}@{before}"] = move.change.previous.value
    for row in digest.branches:
        figures |= {f"branch.{row.branch}.{category}@{now}": count for category, count in row.counts.items()}
    return figures


def category_names() -> dict[str, dict[str, str]]:
    return {c["id"]: dict(c["name"]) for c in _taxonomy()["categories"]}


def _taxonomy() -> dict[str, Any]:
    return tomllib.loads((ROOT / "config" / "taxonomy.toml").read_text(encoding="utf-8"))


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
