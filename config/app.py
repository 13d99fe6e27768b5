"""The composition root: load the operator's files, open resources in order, build the aiohttp app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from importlib.metadata import version
from typing import TYPE_CHECKING

from aiohttp import web

from bot.channels.keys import ENGINE, PUBLIC_URL
from bot.channels.telegram import CHANNEL as TELEGRAM_CHANNEL
from bot.channels.telegram import TELEGRAM, TelegramChannel, TelegramOptions, webhook_handler
from bot.channels.webchat import add_webchat_routes
from bot.engine import Engine
from bot.script import Survey
from config.branches import BranchList, load_branches
from config.errors import ConfigError
from config.files import parse_file
from config.settings import Settings
from config.subscriptions import load_subscriptions, sync_subscriptions
from config.worker import AnalysisWorker
from nlp.flags import FlagRules
from nlp.taxonomy import Taxonomy
from reporting.alerts import AlertOptions
from reporting.cases import run_case_jobs
from reporting.contact import ContactDispatcher, ContactOptions
from reporting.delivery import (
    DeliveryError,
    Mailer,
    Notifier,
    OutboxDispatcher,
    SmtpOptions,
    TelegramSender,
    WebhookOptions,
    WebhookSender,
)
from store import BranchSpec, CounterSpec, Database, sync_branches, upgrade
from web.api import add_api_routes
from web.app import create_web_app
from web.console import add_console_routes
from web.keys import DATABASE
from web.options import ConsoleOptions

if TYPE_CHECKING:
    from reporting.ticket_jobs import TicketJobOptions

log = logging.getLogger(__name__)

VERSION = version("closeloop")
WEBHOOK_PATH = "/telegram/webhook"
NOTIFIER = web.AppKey("notifier", Notifier)
ANALYSIS_WORKER = web.AppKey("analysis_worker", AnalysisWorker)


@dataclass(frozen=True, slots=True)
class Catalog:
    """The operator-editable files, validated."""

    branches: BranchList
    survey: Survey
    taxonomy: Taxonomy
    flags: FlagRules


def load_catalog(settings: Settings) -> Catalog:
    """Read and validate every operator file; raises ConfigError naming the first wrong one."""
    return Catalog(
        branches=load_branches(settings.files.branches),
        survey=parse_file(Survey, settings.files.survey),
        taxonomy=parse_file(Taxonomy, settings.files.taxonomy),
        flags=parse_file(FlagRules, settings.files.flags),
    )


def branch_specs(branches: BranchList) -> list[BranchSpec]:
    return [
        BranchSpec(
            code=b.code,
            name_en=b.name.en,
            name_zh=b.name.zh,
            region=b.region,
            counters=tuple(CounterSpec(code=c.code, name_en=c.name.en, name_zh=c.name.zh) for c in b.counters),
        )
        for b in branches.branches
    ]


def open_database(settings: Settings) -> Database:
    return Database(settings.database_url, connect_timeout=settings.database.connect_timeout)


async def prepare_database(database: Database, settings: Settings, catalog: Catalog) -> None:
    """Check the database answers, apply migrations when allowed, and bring branches in line with the file."""
    await database.ping()
    if settings.database.auto_upgrade:
        await upgrade(database)
    result = await sync_branches(database, branch_specs(catalog.branches))
    log.info("branches synchronised from %s: %s", settings.files.branches, result)


def load_salt(settings: Settings) -> bytes:
    """The key customer ids are hashed with: from settings, else generated once and kept in the data dir.

    Every process serving the same database must use the same key, or returning customers look new.
    """
    if settings.privacy.salt is not None:
        return settings.privacy.salt.get_secret_value().encode()
    path = settings.data_dir / "secret.key"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    try:
        # O_EXCL: when two processes start together, one writes and the other reads what it wrote.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


async def _database_context(settings: Settings, catalog: Catalog, app: web.Application) -> AsyncIterator[None]:
    # Read first: a wrong subscriptions file stops the start (exit 2) before the database is touched.
    subscriptions = load_subscriptions(settings.files.subscriptions, catalog.branches)
    database = open_database(settings)
    try:
        await prepare_database(database, settings, catalog)
        await sync_subscriptions(database, subscriptions, settings.files.subscriptions)
        app[DATABASE] = database
        yield
    finally:
        await database.dispose()


async def _engine_context(settings: Settings, catalog: Catalog, app: web.Application) -> AsyncIterator[None]:
    # Telegram keeps a chat staff can write to later; the web chat does not, so its customers are never asked.
    app[ENGINE] = Engine(
        app[DATABASE], catalog.survey, catalog.taxonomy, salt=load_salt(settings), reply_channels=(TELEGRAM_CHANNEL,)
    )
    yield


async def _telegram_context(settings: Settings, app: web.Application) -> AsyncIterator[None]:
    telegram = settings.telegram
    if telegram.token is None:
        log.info("no Telegram token configured: web chat only")
        yield
        return
    options = TelegramOptions(
        token=telegram.token.get_secret_value(),
        api_url=telegram.api_url,
        webhook_url=telegram.webhook_url,
        webhook_secret=telegram.webhook_secret.get_secret_value() if telegram.webhook_secret else None,
        max_messages_per_second=telegram.max_messages_per_second,
        # SQLite has one writer: a few lanes keep it busy; more would only queue for its lock.
        lanes=4 if app[DATABASE].dialect == "sqlite" else 8,
    )
    channel = TelegramChannel(app[ENGINE], options, database=app[DATABASE])
    await channel.start()
    app[TELEGRAM] = channel
    try:
        yield
    finally:
        await channel.stop()


async def _delivery_context(settings: Settings, app: web.Application) -> AsyncIterator[None]:
    """E-mail and Telegram for alerts and digests, and the signed-webhook outbox for integrations."""
    async with contextlib.AsyncExitStack() as stack:
        smtp, webhook = settings.smtp, settings.webhook
        mailer = None
        if smtp.host:
            password = smtp.password.get_secret_value() if smtp.password else None
            mailer = Mailer(SmtpOptions(host=smtp.host, sender=str(smtp.sender), port=smtp.port, security=smtp.security,
                                        username=smtp.username, password=password, timeout=smtp.timeout))  # fmt: skip
        telegram = None
        if settings.telegram.token is not None:
            sender = TelegramSender(settings.telegram.token.get_secret_value(), api_url=settings.telegram.api_url)
            try:
                telegram = await stack.enter_async_context(sender)
            except DeliveryError as exc:  # alerts wait; the survey must still start
                log.error("Telegram alerts and digests are off until a restart: %s", exc)
        app[NOTIFIER] = Notifier(app[DATABASE], mailer=mailer, telegram=telegram)
        if telegram is not None:  # staff messages to customers who agreed, through the same bot
            stop_contact = asyncio.Event()
            contact = ContactDispatcher(app[DATABASE], telegram, ContactOptions(timezone=settings.timezone))
            sending = asyncio.create_task(contact.run(stop_contact), name="customer-messages")
            stack.push_async_callback(partial(_stop_task, stop_contact, sending))
        if webhook.url and webhook.secret:
            options = WebhookOptions(webhook.url, webhook.secret.get_secret_value(), webhook.timeout,
                                     webhook.max_attempts)  # fmt: skip
            poster = await stack.enter_async_context(WebhookSender(options))
            stop = asyncio.Event()
            task = asyncio.create_task(OutboxDispatcher(app[DATABASE], poster).run(stop), name="webhook-outbox")
            stack.push_async_callback(partial(_stop_task, stop, task))
        yield


async def _stop_task(stop: asyncio.Event, task: asyncio.Task) -> None:
    stop.set()
    await asyncio.gather(task, return_exceptions=True)


def category_names(catalog: Catalog) -> dict[str, dict[str, str]]:
    """Category ids to their English and Chinese names, from the taxonomy file."""
    return {c.id: {"en": c.name.en, "zh": c.name.zh} for c in catalog.taxonomy.categories}


def flag_names(catalog: Catalog) -> dict[str, dict[str, str]]:
    """Flag ids to their English and Chinese names, from the flag rules file."""
    return {f.id: {"en": f.name.en, "zh": f.name.zh} for f in catalog.flags.flags}


def console_options(settings: Settings, catalog: Catalog) -> ConsoleOptions:
    """What the console shows by: the time zone, the minimum responses and the operator's names."""
    return ConsoleOptions(
        timezone=settings.timezone,
        min_responses=settings.reporting.min_responses,
        category_names=category_names(catalog),
        flag_names=flag_names(catalog),
        departments={c.id: c.department for c in catalog.taxonomy.categories},
        department_names={d.id: {"en": d.name.en, "zh": d.name.zh} for d in catalog.taxonomy.departments},
    )


def alert_options(settings: Settings, catalog: Catalog) -> AlertOptions:
    """How case alerts read: the time zone, the console's address and the operator's names in both languages."""
    return AlertOptions(
        timezone=settings.timezone,
        public_url=settings.public_url,
        channels=frozenset(settings.reporting.case_alert_channels),
        category_names=category_names(catalog),
        flag_names=flag_names(catalog),
    )


async def _case_jobs_context(settings: Settings, catalog: Catalog, app: web.Application) -> AsyncIterator[None]:
    """Escalate cases past their SLA and send staff alerts, in the background."""
    stop = asyncio.Event()
    jobs = run_case_jobs(app[DATABASE], app[NOTIFIER], alert_options(settings, catalog), stop)
    task = asyncio.create_task(jobs, name="case-jobs")
    try:
        yield
    finally:
        await _stop_task(stop, task)


async def _digest_jobs_context(settings: Settings, catalog: Catalog, app: web.Application) -> AsyncIterator[None]:
    """Send the weekly digests at the configured local weekday and time, in the background."""
    # Imported here: the renderer loads matplotlib, fpdf2 and pandas, which the other commands never need.
    from reporting.digest_send import DigestOptions, run_digest_jobs

    reporting = settings.reporting
    options = DigestOptions(
        timezone=settings.timezone,
        weekday=reporting.digest_weekday,
        at=reporting.digest_time,
        min_responses=reporting.min_responses,
        category_names=category_names(catalog),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(run_digest_jobs(app[DATABASE], app[NOTIFIER], options, stop), name="digest-jobs")
    try:
        yield
    finally:
        await _stop_task(stop, task)


def ticket_job_options(settings: Settings, catalog: Catalog) -> TicketJobOptions:
    """The [tickets] settings as the rules of a pass, with the taxonomy's owning departments and English names."""
    # Imported here: scikit-learn (the clustering) loads for the ticket pass only, not with every CLI command.
    from reporting.complaints import TicketRules
    from reporting.ticket_jobs import TicketJobOptions

    tickets = settings.tickets
    rules = TicketRules(
        window=timedelta(days=tickets.window_days),
        min_complaints=tickets.min_complaints,
        negative_share=tickets.negative_share,
        cluster_distance=tickets.cluster_distance,
    )
    return TicketJobOptions(
        rules=rules,
        departments={c.id: c.department for c in catalog.taxonomy.categories},
        category_names={c.id: c.name.en for c in catalog.taxonomy.categories},
        interval=60.0 * tickets.interval_minutes,
    )


async def _ticket_jobs_context(settings: Settings, catalog: Catalog, app: web.Application) -> AsyncIterator[None]:
    """Group complaints into improvement tickets and check resolved ones, in the background, with the worker's model."""
    worker = app.get(ANALYSIS_WORKER)
    if worker is None:
        log.info("no analysis worker in this process: ticket passes need `closeloop tickets run`")
        yield
        return

    async def embed_provider():
        analyzer = worker.analyzer
        return analyzer.embed if analyzer is not None else None

    from reporting.ticket_jobs import run_ticket_jobs

    stop = asyncio.Event()
    jobs = run_ticket_jobs(app[DATABASE], embed_provider, ticket_job_options(settings, catalog), stop)
    task = asyncio.create_task(jobs, name="ticket-jobs")
    try:
        yield
    finally:
        await _stop_task(stop, task)


def load_analysis(settings: Settings, catalog: Catalog, *, category_set: str | None = None):
    """The NLP analyzer for these settings (imports torch: call it off the event loop).

    A model, head or category set that cannot be loaded is a ConfigError: its message names what is missing and
    the command that makes it, and every command reports it as bad settings (exit 2).
    """
    from nlp.errors import ModelLoadError
    from nlp.loading import load_analyzer

    try:
        return load_analyzer(
            model=settings.nlp.model,
            data_dir=settings.data_dir,
            taxonomy=catalog.taxonomy,
            flags=catalog.flags,
            category_set=category_set if category_set is not None else settings.nlp.categories,
            threads=settings.nlp.threads,
        )
    except ModelLoadError as exc:
        raise ConfigError(str(exc)) from None


async def _worker_context(settings: Settings, catalog: Catalog, app: web.Application) -> AsyncIterator[None]:
    if not settings.nlp.worker:
        yield
        return
    engine = app[ENGINE]

    def load():
        analyzer = load_analysis(settings, catalog)
        if settings.nlp.categories is None:
            engine.use_ranker(analyzer)  # the follow-up question now ranks categories with the model
        return analyzer

    worker = AnalysisWorker(app[DATABASE], load, batch_size=settings.nlp.batch_size)
    app[ANALYSIS_WORKER] = worker
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop), name="analysis-worker")
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)


def create_app(settings: Settings, catalog: Catalog) -> web.Application:
    """Build the application; resources open when it starts and close in reverse order when it stops."""
    app = create_web_app(version=VERSION)
    app[PUBLIC_URL] = settings.public_url
    contexts: list[Callable[[web.Application], AsyncIterator[None]]] = [
        partial(_database_context, settings, catalog),
        partial(_engine_context, settings, catalog),
        partial(_telegram_context, settings),
        partial(_delivery_context, settings),
        partial(_case_jobs_context, settings, catalog),
        partial(_digest_jobs_context, settings, catalog),
        partial(_worker_context, settings, catalog),
        partial(_ticket_jobs_context, settings, catalog),
    ]
    app.router.add_post(WEBHOOK_PATH, webhook_handler)
    add_webchat_routes(app)
    secure = settings.public_url.startswith("https://")
    add_console_routes(app, secure_cookies=secure, options=console_options(settings, catalog))
    add_api_routes(app)
    app.cleanup_ctx.extend(contexts)
    return app
