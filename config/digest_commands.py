"""`closeloop digest` and `closeloop manager ...`: render a weekly digest on demand, subscribe managers to it."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Awaitable, Callable
from email.utils import parseaddr
from pathlib import Path
from typing import TypeVar

import click

from config.app import category_names, load_catalog, open_database
from config.settings import Settings

T = TypeVar("T")
SCOPE_FORM = "branch:CODE, region:NAME or all"
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@click.command("digest")
@click.option("--week", required=True, help="The ISO week, e.g. 2026-W47 (local weeks of CLOSELOOP_TIMEZONE).")
@click.option("--branch", default=None, help="A branch code: that branch's digest.")
@click.option("--region", default=None, help="A region: the digest of its branches together.")
@click.option("--language", type=click.Choice(["en", "zh"]), default="en", show_default=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Directory for the HTML page and its charts, the PDF and the Telegram text.")  # fmt: skip
@click.pass_obj
def digest(settings: Settings, week: str, branch: str | None, region: str | None, language: str, out_dir: Path) -> None:
    """Render a weekly digest (the whole bank, a region or a branch) into files, without sending anything."""
    # Imported here so that matplotlib and fpdf2 load for this command only, not at every start of the server.
    from reporting.digest import build_digest
    from reporting.periods import week_period
    from reporting.render import render_charts, render_html, render_pdf, render_telegram, render_text
    from reporting.scope import ReportingError, Scope

    if branch and region:
        raise click.UsageError("give --branch or --region, not both")
    try:
        period = week_period(week, settings.timezone)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--week'") from None
    scope = Scope.of_branch(branch) if branch else Scope.of_region(region) if region else Scope.bank()
    names = category_names(load_catalog(settings))

    async def _build(database):
        return await build_digest(database, scope, period, min_responses=settings.reporting.min_responses,
                                  category_names=names)  # fmt: skip

    try:
        content = _with_database(settings, _build)
    except ReportingError as exc:
        raise click.BadParameter(str(exc), param_hint="'--region'" if region else "'--branch'") from None
    stem = f"digest-{scope.label}-{period.label}-{language}"
    charts = render_charts(content, language, font=_font())
    files = {f"{stem}-{cid}.png": data for cid, data in charts.items() if data}
    sources = {cid: f"{stem}-{cid}.png" for cid, data in charts.items() if data}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (out_dir / name).write_bytes(data)
        (out_dir / f"{stem}.html").write_text(render_html(content, language, sources), encoding="utf-8")
        (out_dir / f"{stem}.txt").write_text(render_text(content, language), encoding="utf-8")
        (out_dir / f"{stem}.pdf").write_bytes(render_pdf(content, language, charts, font=_font()))
        (out_dir / f"{stem}-telegram.html").write_text(render_telegram(content, language), encoding="utf-8")
    except OSError as exc:
        raise click.BadParameter(f"cannot write into {out_dir}: {exc.strerror or exc}", param_hint="'--out'") from None
    click.echo(f"{period.label} ({period.timezone}), {scope.label}: {content.responses} responses")
    for name in sorted([*files, f"{stem}.html", f"{stem}.txt", f"{stem}.pdf", f"{stem}-telegram.html"]):
        click.echo(f"wrote {out_dir / name}")
    if _font() is None and language == "zh":
        click.echo("closeloop: no CJK font found (install fonts-wqy-microhei): Chinese shown as '?'", err=True)


@click.group()
def manager() -> None:
    """Subscribe managers to the weekly digest of a branch, a region or the whole bank."""


@manager.command("invite")
@click.option("--scope", "scope_text", required=True, help=f"What the digest covers: {SCOPE_FORM}.")
@click.option("--language", type=click.Choice(["en", "zh"]), default="en", show_default=True)
@click.pass_obj
def invite(settings: Settings, scope_text: str, language: str) -> None:
    """Create a Telegram digest subscription and print the link that binds a manager's chat to it."""
    kind, value = _checked_scope(settings, scope_text)
    code = secrets.token_urlsafe(12)
    _subscribe(settings, "telegram", None, kind, value, language, invite_code=code)
    if settings.telegram.username:
        click.echo(f"https://t.me/{settings.telegram.username.lstrip('@')}?start=mgr-{code}")
    else:
        click.echo(f"invite code: mgr-{code}")
        click.echo(f"the manager sends the bot: /start mgr-{code}")
        click.echo("closeloop: no Telegram username (CLOSELOOP_TELEGRAM_USERNAME): no link to print", err=True)


@manager.command("add-email")
@click.option("--scope", "scope_text", required=True, help=f"What the digest covers: {SCOPE_FORM}.")
@click.option("--email", required=True, help="The manager's e-mail address.")
@click.option("--language", type=click.Choice(["en", "zh"]), default="en", show_default=True)
@click.pass_obj
def add_email(settings: Settings, scope_text: str, email: str, language: str) -> None:
    """Send the weekly digest of a scope to an e-mail address."""
    address = parseaddr(email)[1]
    if not EMAIL.fullmatch(address) or address != email.strip():
        raise click.BadParameter(f"not an e-mail address: {email!r}", param_hint="'--email'")
    kind, value = _checked_scope(settings, scope_text)
    subscription_id = _subscribe(settings, "email", address, kind, value, language)
    click.echo(f"subscription {subscription_id}: the {kind} digest{f' of {value}' if value else ''} goes to {address}")


def parse_scope(text: str) -> tuple[str, str | None]:
    """Split "branch:MAIN", "region:North" or "all" into a kind and a value.

    Raises:
        click.BadParameter: any other form.
    """
    kind, _, value = text.strip().partition(":")
    if kind == "all" and not value:
        return "all", None
    if kind in ("branch", "region") and value.strip():
        return kind, value.strip()
    raise click.BadParameter(f"{text!r}: expected {SCOPE_FORM}", param_hint="'--scope'")


def _checked_scope(settings: Settings, text: str) -> tuple[str, str | None]:
    from reporting.scope import ReportingError, Scope, load_org

    kind, value = parse_scope(text)
    scope = Scope.bank() if kind == "all" else Scope.of_branch(value) if kind == "branch" else Scope.of_region(value)

    async def _check(database) -> None:
        (await load_org(database)).filter_for(scope)

    try:
        _with_database(settings, _check)
    except ReportingError as exc:
        raise click.BadParameter(str(exc), param_hint="'--scope'") from None
    return kind, value


def _subscribe(
    settings: Settings, channel: str, address: str | None, kind: str, value: str | None, language: str, **extra
) -> int:
    from store.models import Subscription, SubscriptionPurpose

    async def _add(database) -> int:
        async with database.writing(), database.sessions() as session, session.begin():
            row = Subscription(purpose=SubscriptionPurpose.DIGEST, channel=channel, address=address, scope_kind=kind,
                               scope_value=value, language=language, **extra)  # fmt: skip
            session.add(row)
            await session.flush()
            return row.id

    return _with_database(settings, _add)


def _with_database(settings: Settings, work: Callable[..., Awaitable[T]]) -> T:
    async def _run() -> T:
        database = open_database(settings)
        try:
            await database.ping()
            return await work(database)
        finally:
            await database.dispose()

    return asyncio.run(_run())


def _font():
    from reporting.charts import find_cjk_font

    return find_cjk_font()
