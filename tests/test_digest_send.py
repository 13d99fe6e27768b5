"""Weekly digests on schedule: the run times across DST, then real sends over SMTP and the Bot API stand-in.

The seeded data (tests/digest_data.py) has MAIN with two weeks of feedback and QUIET with none; QUIET's digest
renders without charts in a fraction of a second, so the delivery tests use it and only the content test renders
MAIN. Every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from digest_data import TZ, seed_digest_data
from sqlalchemy import select, text
from test_delivery_mail import Inbox, accept_only, silent_server, smtp_server

from reporting.delivery import Backoff, Mailer, Notifier, SmtpOptions
from reporting.digest_send import DigestOptions, run_digest_jobs, send_due_digests
from reporting.schedule import due_week, last_run, next_run
from store import Database
from store.models import Digest, DigestStatus, ScopeKind, Subscription, SubscriptionPurpose, utcnow

NAMES = {"waiting_time": {"en": "Waiting time", "zh": "等候时间"}, "staff": {"en": "Staff", "zh": "员工服务"}}
OPTIONS = DigestOptions(
    timezone=TZ, weekday="monday", at=time(8), category_names=NAMES, backoff=Backoff(first=timedelta(minutes=1))
)
RUN = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # Monday of 2026-W48, 08:00 in London (GMT): 2026-W47 is due
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ESCAPED = "&lt;script&gt;alert("
NO_DATA = "No feedback was received this week."


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# the schedule


def test_the_next_run_is_strictly_after_even_exactly_at_the_run_time():
    assert next_run(RUN - timedelta(seconds=1), "monday", time(8), TZ) == RUN
    assert next_run(RUN, "monday", time(8), TZ) == RUN + timedelta(weeks=1)
    assert last_run(RUN, "monday", time(8), TZ) == RUN
    assert last_run(RUN - timedelta(seconds=1), "monday", time(8), TZ) == RUN - timedelta(weeks=1)


def test_the_run_follows_the_local_clock_across_london_summer_time():
    before, after = utc(2026, 3, 23, 8), utc(2026, 3, 30, 7)  # clocks go forward on Sunday 29 March
    assert next_run(before, "monday", time(8), TZ) == after
    assert next_run(utc(2026, 10, 26, 7), "monday", time(8), TZ) == utc(2026, 10, 26, 8)  # back on 25 October


def test_a_run_time_the_clocks_skip_fires_when_the_gap_ends():
    # New York skips 02:00-03:00 on Sunday 8 March 2026: 02:30 fires at 03:00 EDT, 07:00 UTC.
    assert next_run(utc(2026, 3, 7), "sunday", time(2, 30), "America/New_York") == utc(2026, 3, 8, 7)
    assert next_run(utc(2026, 3, 28), "sunday", time(1, 30), TZ) == utc(2026, 3, 29, 1)  # London: 02:00 BST
    # Samoa skipped the whole of Friday 30 December 2011.
    assert next_run(utc(2011, 12, 28), "friday", time(9), "Pacific/Apia") == utc(2011, 12, 30, 10)


def test_a_run_time_that_happens_twice_fires_once_at_the_first():
    first = next_run(utc(2026, 10, 31), "sunday", time(1, 30), "America/New_York")
    assert first == utc(2026, 11, 1, 5, 30)  # 01:30 EDT; 01:30 EST an hour later is not a run
    assert next_run(first, "sunday", time(1, 30), "America/New_York") == utc(2026, 11, 8, 6, 30)
    assert next_run(utc(2026, 10, 24), "sunday", time(1, 30), TZ) == utc(2026, 10, 25, 0, 30)  # 01:30 BST


def test_shanghai_runs_eight_hours_ahead_of_utc_and_covers_its_own_week():
    run = next_run(utc(2026, 11, 22, 12), "monday", time(8), "Asia/Shanghai")
    assert run == utc(2026, 11, 23, 0)
    week = due_week(run, "monday", time(8), "Asia/Shanghai")
    assert (week.label, week.start, week.end) == ("2026-W47", utc(2026, 11, 15, 16), utc(2026, 11, 22, 16))


def test_the_due_week_is_the_one_before_the_run_and_is_sent_late_for_six_days_only():
    assert due_week(RUN, "monday", time(8), TZ).label == "2026-W47"
    assert due_week(RUN + timedelta(days=5), "monday", time(8), TZ).label == "2026-W47"
    assert due_week(RUN + timedelta(days=6, hours=1), "monday", time(8), TZ) is None
    assert due_week(utc(2027, 1, 4, 9), "friday", time(8), TZ).label == "2026-W52"  # Friday 1 Jan ran
    assert due_week(utc(2027, 1, 4, 9), "monday", time(8), TZ).label == "2026-W53"


# sending


@pytest.fixture
async def seeded(db: Database) -> Database:
    await seed_digest_data(db)
    return db


@pytest.fixture
async def inbox() -> AsyncIterator[tuple[Inbox, int]]:
    handler = Inbox()
    async with smtp_server(handler) as port:
        yield handler, port


def mailer(port: int, **changes: Any) -> Mailer:
    options: dict[str, Any] = {"security": "none", "timeout": 5.0} | changes
    return Mailer(SmtpOptions(host="127.0.0.1", port=port, sender="closeloop@bank.example", **options))


async def subscribe(
    db: Database, address: str, *, scope: str = "branch:QUIET", channel: str = "email", language: str = "en"
) -> int:
    kind, _, value = scope.partition(":")
    async with db.writing(), db.sessions() as session, session.begin():
        row = Subscription(purpose=SubscriptionPurpose.DIGEST, channel=channel, address=address,
                           scope_kind=ScopeKind(kind), scope_value=value or None, language=language)  # fmt: skip
        session.add(row)
        await session.flush()
        return row.id


async def digests(db: Database) -> list[Digest]:
    async with db.sessions() as session:
        return list(await session.scalars(select(Digest).order_by(Digest.id)))


async def add_row(
    db: Database,
    recipients: list[dict[str, Any]],
    *,
    status: DigestStatus = DigestStatus.PENDING,
    attempts: int = 0,
    leased_at: datetime | None = None,
) -> None:
    """Insert QUIET's e-mail digest of 2026-W47 in English as an earlier round left it."""
    artefacts = {"leased_at": leased_at.isoformat()} if leased_at else {}
    async with db.writing(), db.sessions() as session, session.begin():
        session.add(Digest(scope_kind="branch", scope_value="QUIET", period_start=date(2026, 11, 16),
                           period_end=date(2026, 11, 22), channel="email", language="en", status=status,
                           attempts=attempts, artefacts=artefacts, recipients=recipients))  # fmt: skip


def statuses(row: Digest) -> dict[int, str]:
    return {r["subscription"]: r["status"] for r in row.recipients}


async def test_managers_get_the_week_by_email_and_telegram_in_their_language_once(seeded, inbox, api, telegram):
    handler, port = inbox
    await subscribe(seeded, "ana@bank.example", scope="branch:MAIN")
    await subscribe(seeded, "li@bank.example", scope="branch:MAIN", language="zh")
    await subscribe(seeded, "7007", scope="branch:MAIN", channel="telegram")
    notifier = Notifier(seeded, mailer=mailer(port), telegram=telegram)

    summary = await send_due_digests(seeded, notifier, OPTIONS, RUN)

    assert (summary.week, summary.created, summary.sent, summary.delivered) == ("2026-W47", 3, 3, 3)
    english, chinese = sorted(handler.messages(), key=lambda m: m["To"])
    assert english["Subject"] == "Weekly digest: Main Street (MAIN), 2026-W47"
    assert chinese["Subject"] == "每周摘要：总行营业部（MAIN），2026-W47"
    html = english.get_body(("html",)).get_content()
    assert ESCAPED in html  # the customer's markup is inert text
    assert "<script>" not in html
    assert 'src="cid:trend"' in html
    images = [part for part in english.walk() if part.get_content_type() == "image/png"]
    assert [i["Content-ID"] for i in images] == ["<trend>", "<categories>"]
    assert all(i.get_content().startswith(PNG_MAGIC) for i in images)
    [pdf] = list(english.iter_attachments())
    assert (pdf.get_content_type(), pdf.get_filename()) == ("application/pdf", "digest.pdf")
    assert pdf.get_content().startswith(b"%PDF")
    assert "等候时间" in chinese.get_body(("html",)).get_content()
    photo, document = await api.wait_for_messages(7007, 2)
    assert (photo.method, photo.file_name, document.method, document.file_name) == (
        "sendPhoto", "trend.png", "sendDocument", "digest.pdf"
    )  # fmt: skip
    assert photo.text.startswith("<b>Weekly digest: Main Street (MAIN)</b>")  # the chart's caption
    assert ESCAPED in photo.text
    assert "<script>" not in photo.text
    rows = await digests(seeded)
    assert [(r.status, r.attempts, r.period_start, r.period_end) for r in rows] == [
        (DigestStatus.SENT, 1, date(2026, 11, 16), date(2026, 11, 22))
    ] * 3
    assert all(r.sent_at is not None and set(statuses(r).values()) == {"sent"} for r in rows)

    again = await send_due_digests(seeded, notifier, OPTIONS, RUN)
    later = await send_due_digests(seeded, notifier, OPTIONS, RUN + timedelta(days=2))

    assert (again.created, again.delivered, later.created, later.delivered) == (0, 0, 0, 0)
    assert len(handler.envelopes) == 2
    assert len([m for m in api.sent if m.chat_id == 7007]) == 2


async def test_a_week_without_feedback_still_sends_a_digest_that_says_so(seeded, inbox):
    handler, port = inbox
    await subscribe(seeded, "quiet@bank.example")

    summary = await send_due_digests(seeded, Notifier(seeded, mailer=mailer(port)), OPTIONS, RUN)

    assert (summary.created, summary.sent) == (1, 1)  # MAIN and EAST have no subscriber: no row
    [message] = handler.messages()
    assert message["Subject"] == "Weekly digest: Quiet Lane (QUIET), 2026-W47"
    assert NO_DATA in message.get_body(("plain",)).get_content()
    assert NO_DATA in message.get_body(("html",)).get_content()
    assert [p.get_filename() for p in message.iter_attachments()] == ["digest.pdf"]
    [row] = await digests(seeded)
    assert (row.scope_kind, row.scope_value, row.channel, row.language) == ("branch", "QUIET", "email", "en")


async def test_a_restart_mid_way_sends_only_to_those_not_yet_served(seeded, inbox):
    handler, port = inbox
    ids = [await subscribe(seeded, f"{name}@bank.example") for name in ("ana", "bo", "cy")]
    leased_at = RUN + timedelta(minutes=5)
    recipients = [
        {"subscription": ids[0], "status": "sent"},
        *({"subscription": i, "status": "pending"} for i in ids[1:]),
    ]
    await add_row(seeded, recipients, status=DigestStatus.SENDING, attempts=1, leased_at=leased_at)
    notifier = Notifier(seeded, mailer=mailer(port))

    held = await send_due_digests(seeded, notifier, OPTIONS, RUN + timedelta(minutes=10))
    assert (held.delivered, held.due_again_at) == (0, leased_at + OPTIONS.lease)  # its sender may still be alive
    taken = await send_due_digests(seeded, notifier, OPTIONS, leased_at + OPTIONS.lease)

    assert (taken.created, taken.sent, taken.delivered) == (0, 1, 2)
    assert sorted(e.rcpt_tos[0] for e in handler.envelopes) == ["bo@bank.example", "cy@bank.example"]
    [row] = await digests(seeded)
    assert (row.status, row.attempts, set(statuses(row).values())) == (DigestStatus.SENT, 2, {"sent"})


async def test_two_processes_at_once_send_the_digest_once(seeded, database_url, inbox):
    handler, port = inbox
    await subscribe(seeded, "ana@bank.example")
    other = Database(database_url)  # a second engine, as a second process would have
    try:
        rounds = await asyncio.gather(*(send_due_digests(d, Notifier(d, mailer=mailer(port)), OPTIONS, RUN)
                                        for d in (seeded, other)))  # fmt: skip
    finally:
        await other.dispose()

    assert [sum(r.created for r in rounds), sum(r.sent for r in rounds)] == [1, 1]
    assert [e.rcpt_tos for e in handler.envelopes] == [["ana@bank.example"]]


@pytest.mark.postgres
async def test_two_processes_racing_for_one_row_send_it_once(seeded, database_url, inbox):
    """Both read the row as pending before either leases it: the conditional UPDATE lets only one through."""
    handler, port = inbox
    ana = await subscribe(seeded, "ana@bank.example")
    await add_row(seeded, [{"subscription": ana, "status": "pending"}])
    other = Database(database_url)
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    try:
        async with seeded.engine.connect() as holder:
            await holder.execute(text("SELECT id FROM digests FOR UPDATE"))  # both leases wait behind this lock
            rounds = [asyncio.create_task(send_due_digests(d, Notifier(d, mailer=mailer(port)), OPTIONS, RUN))
                      for d in (seeded, other)]  # fmt: skip
            async with seeded.engine.connect() as probe, asyncio.timeout(60):
                while (await probe.scalar(waiting)) < 2:
                    await asyncio.sleep(0.05)
            await holder.commit()
        summaries = await asyncio.gather(*rounds)
    finally:
        await other.dispose()

    assert sorted(s.sent for s in summaries) == [0, 1]
    assert [e.rcpt_tos for e in handler.envelopes] == [["ana@bank.example"]]


async def test_a_refusing_server_is_retried_after_the_back_off_with_whoever_joined_meanwhile(seeded):
    handler = Inbox(refuse_rcpt={"busy@bank.example": "450 4.2.1 mailbox busy, try later"})
    ok, busy = await subscribe(seeded, "ok@bank.example"), await subscribe(seeded, "busy@bank.example")
    async with smtp_server(handler) as port:
        notifier = Notifier(seeded, mailer=mailer(port))
        first = await send_due_digests(seeded, notifier, OPTIONS, RUN)
        [row] = await digests(seeded)
        assert (row.status, statuses(row)) == (DigestStatus.FAILED, {ok: "sent", busy: "pending"})
        assert "450 4.2.1" in row.last_error
        retry_at = datetime.fromisoformat(row.artefacts["next_attempt_at"])
        assert RUN + timedelta(minutes=1) <= retry_at < RUN + timedelta(minutes=1, seconds=30)
        assert first.due_again_at is not None
        assert first.due_again_at >= retry_at

        joined = await subscribe(seeded, "new@bank.example")
        early = await send_due_digests(seeded, notifier, OPTIONS, RUN + timedelta(seconds=30))
        handler.refuse_rcpt = {}
        late = await send_due_digests(seeded, notifier, OPTIONS, retry_at)

    assert (first.retrying, early.delivered, late.sent, late.delivered) == (1, 0, 1, 2)
    assert [e.rcpt_tos for e in handler.envelopes] == [["ok@bank.example"], ["busy@bank.example"], ["new@bank.example"]]
    [row] = await digests(seeded)
    assert (row.status, row.attempts) == (DigestStatus.SENT, 2)
    assert statuses(row) == {ok: "sent", busy: "sent", joined: "sent"}


async def test_a_refused_address_fails_for_good_and_the_others_still_get_theirs(seeded):
    handler = Inbox(refuse_rcpt={"gone@bank.example": "550 5.1.1 no such user"})
    gone, ana = await subscribe(seeded, "gone@bank.example"), await subscribe(seeded, "ana@bank.example")
    async with smtp_server(handler) as port:
        notifier = Notifier(seeded, mailer=mailer(port))
        summary = await send_due_digests(seeded, notifier, OPTIONS, RUN)
        later = await send_due_digests(seeded, notifier, OPTIONS, RUN + timedelta(hours=2))

    assert (summary.sent, summary.delivered, later.delivered) == (1, 1, 0)
    assert [e.rcpt_tos for e in handler.envelopes] == [["ana@bank.example"]]
    [row] = await digests(seeded)
    assert (row.status, statuses(row)) == (DigestStatus.SENT, {gone: "failed", ana: "sent"})
    assert "550 5.1.1" in row.last_error


async def test_a_server_that_never_answers_is_retried_until_the_last_attempt(seeded):
    await subscribe(seeded, "ana@bank.example")
    options = DigestOptions(timezone=TZ, max_attempts=2, backoff=OPTIONS.backoff)
    async with silent_server() as port:
        notifier = Notifier(seeded, mailer=mailer(port, timeout=0.3))
        first = await send_due_digests(seeded, notifier, options, RUN)
        [row] = await digests(seeded)
        assert (row.status, row.artefacts.get("gave_up")) == (DigestStatus.FAILED, None)
        assert "no answer within 0.3 s" in row.last_error
        second = await send_due_digests(seeded, notifier, options, RUN + timedelta(minutes=2))
        third = await send_due_digests(seeded, notifier, options, RUN + timedelta(hours=5))

    assert (first.retrying, second.failed, third.failed, third.due_again_at) == (1, 1, 0, None)
    [row] = await digests(seeded)
    assert (row.status, row.attempts, row.artefacts["gave_up"]) == (DigestStatus.FAILED, 2, True)
    assert row.last_error.startswith("gave up after 2 attempt(s):")


async def test_a_refused_login_never_puts_the_password_in_the_error(seeded):
    handler = Inbox()
    await subscribe(seeded, "ana@bank.example")
    authenticator = accept_only(b"closeloop", b"right-pass", handler.logins)
    async with smtp_server(handler, authenticator=authenticator, auth_require_tls=False) as port:
        notifier = Notifier(seeded, mailer=mailer(port, username="closeloop", password="wrong-pass-8731"))
        await send_due_digests(seeded, notifier, OPTIONS, RUN)

    [row] = await digests(seeded)
    assert (row.status, row.artefacts["gave_up"]) == (DigestStatus.FAILED, True)  # reached nobody
    assert "login refused: 535" in row.last_error
    assert "wrong-pass-8731" not in row.last_error + str(row.recipients)


async def test_a_manager_who_blocked_the_bot_is_unsubscribed_and_the_rest_are_served(seeded, api, telegram):
    blocked = await subscribe(seeded, "7007", channel="telegram")
    fine = await subscribe(seeded, "7008", channel="telegram")
    api.block(7007)

    summary = await send_due_digests(seeded, Notifier(seeded, telegram=telegram), OPTIONS, RUN)

    assert (summary.sent, summary.delivered) == (1, 1)
    message, document = await api.wait_for_messages(7008, 2)  # no chart to caption: the text, then the PDF
    assert (message.method, document.method) == ("sendMessage", "sendDocument")
    assert NO_DATA in message.text
    [row] = await digests(seeded)
    assert (row.status, statuses(row)) == (DigestStatus.SENT, {blocked: "gone", fine: "sent"})
    async with seeded.sessions() as session:
        assert (await session.get_one(Subscription, blocked)).is_active is False


async def test_a_scope_that_no_longer_exists_fails_once_with_a_clear_error(seeded, inbox):
    handler, port = inbox
    await subscribe(seeded, "ana@bank.example", scope="branch:CLOSED")
    await subscribe(seeded, "bo@bank.example", scope="region:Atlantis")
    await subscribe(seeded, "cy@bank.example", scope="region:South")
    notifier = Notifier(seeded, mailer=mailer(port))

    summary = await send_due_digests(seeded, notifier, OPTIONS, RUN)
    again = await send_due_digests(seeded, notifier, OPTIONS, RUN + timedelta(hours=3))

    assert (summary.sent, summary.failed, again.failed, again.due_again_at) == (1, 2, 0, None)
    assert [e.rcpt_tos for e in handler.envelopes] == [["cy@bank.example"]]
    closed, atlantis, _ = await digests(seeded)
    assert closed.last_error.startswith("cannot build the digest: unknown branch 'CLOSED'")
    assert atlantis.last_error.startswith("cannot build the digest: unknown region 'Atlantis'")
    assert closed.artefacts["gave_up"] is True


async def test_after_an_outage_only_the_latest_week_goes_out_and_only_while_it_is_recent(seeded, inbox):
    handler, port = inbox
    await subscribe(seeded, "ana@bank.example")
    notifier = Notifier(seeded, mailer=mailer(port))

    thursday = await send_due_digests(seeded, notifier, OPTIONS, RUN + timedelta(days=3))
    too_late = await send_due_digests(seeded, notifier, OPTIONS, utc(2026, 12, 6, 20))  # W48's run was 6.5 days ago
    weeks_later = await send_due_digests(seeded, notifier, OPTIONS, utc(2026, 12, 14, 9))

    assert (thursday.week, thursday.sent) == ("2026-W47", 1)
    assert (too_late.week, too_late.created) == (None, 0)
    assert (weeks_later.week, weeks_later.sent) == ("2026-W50", 1)
    assert [r.period_start for r in await digests(seeded)] == [date(2026, 11, 16), date(2026, 12, 7)]
    assert [m["Subject"][-8:] for m in handler.messages()] == ["2026-W47", "2026-W50"]


async def test_the_job_loop_survives_a_database_failure_and_stops_when_asked(seeded, caplog):
    await subscribe(seeded, "ana@bank.example")
    async with seeded.writing(), seeded.engine.begin() as conn:
        await conn.run_sync(lambda sync: Digest.__table__.drop(sync))  # every round now fails in the database
    stop = asyncio.Event()
    with caplog.at_level(logging.ERROR, logger="reporting.digest_send"):
        task = asyncio.create_task(run_digest_jobs(seeded, Notifier(seeded), OPTIONS, stop, clock=lambda: RUN))
        async with asyncio.timeout(10):
            while "digests: a round failed" not in caplog.text:
                await asyncio.sleep(0.05)
        assert not task.done()
        stop.set()
        async with asyncio.timeout(2):
            await task


async def test_the_running_app_sends_the_digest_due_since_this_mornings_run(aiohttp_client, db, database_url, tmp_path):
    """`closeloop run` wires the digest jobs: with a run at 00:00 today, last week's digest goes out at start."""
    from config.app import create_app, load_catalog
    from config.settings import load_settings

    handler = Inbox()
    await subscribe(db, "board@bank.example", scope="all")
    now = utcnow()
    async with smtp_server(handler) as port:
        settings = load_settings({
            "CLOSELOOP_DATABASE_URL": database_url,
            "CLOSELOOP_DATA_DIR": str(tmp_path / "data"),
            "CLOSELOOP_NLP_WORKER": "false",
            "CLOSELOOP_SMTP_HOST": "127.0.0.1",
            "CLOSELOOP_SMTP_PORT": str(port),
            "CLOSELOOP_SMTP_SECURITY": "none",
            "CLOSELOOP_SMTP_SENDER": "closeloop@bank.example",
            "CLOSELOOP_REPORTING_DIGEST_WEEKDAY": f"{now:%A}",
            "CLOSELOOP_REPORTING_DIGEST_TIME": "00:00",
        })  # fmt: skip
        await aiohttp_client(create_app(settings, load_catalog(settings)))
        async with asyncio.timeout(30):
            while not handler.envelopes:
                await asyncio.sleep(0.05)

    week = due_week(now, f"{now:%A}".lower(), time(0), "UTC")
    [message] = handler.messages()
    assert message["Subject"] == f"Weekly digest: All branches, {week.label}"
