"""`closeloop digest` and `closeloop manager ...`: a weekly digest on demand; who receives digests and case alerts."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click

from config.app import category_names, load_catalog, open_database
from config.settings import Settings
from config.subscriptions import PURPOSES, SCOPE_FORM, is_email_address, parse_scope
from store.models import ActorKind, DeliveryChannel, ScopeKind, Subscription
from store.staff import Actor
from store.subscriptions import (
    FROM_CLI,
    FROM_INVITE,
    INVITE_PREFIX,
    FileSubscriptionError,
    NewSubscription,
    SubscriptionNotFoundError,
    add_subscription,
    list_subscriptions,
    remove_subscription,
)

T = TypeVar("T")


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
        content = with_database(settings, _build)
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
    """Choose who receives the weekly digest and the case alerts of a branch, a region or the whole bank."""


def _purpose_option(command: Callable[..., None]) -> Callable[..., None]:
    return click.option("--purpose", type=click.Choice(sorted(PURPOSES)), default="digest", show_default=True,
                        help="The weekly digest, or case alerts (new cases at once; region and all also get "
                             "escalations).")(command)  # fmt: skip


@manager.command("invite")
@click.option("--scope", "scope_text", required=True, help=f"What the subscription covers: {SCOPE_FORM}.")
@_purpose_option
@click.option("--language", type=click.Choice(["en", "zh"]), default="en", show_default=True)
@click.pass_obj
def invite(settings: Settings, scope_text: str, purpose: str, language: str) -> None:
    """Create a Telegram subscription and print the link that binds a chat to it (for alerts, a group chat too)."""
    kind, value = checked_scope(settings, scope_text)
    code = secrets.token_urlsafe(12)
    new = NewSubscription(PURPOSES[purpose], DeliveryChannel.TELEGRAM, kind, value, language, invite_code=code)
    _subscribe(settings, new, source=FROM_INVITE)
    username = (settings.telegram.username or "").lstrip("@")
    if username:
        click.echo(f"https://t.me/{username}?start={INVITE_PREFIX}{code}")
        if purpose == "alerts":
            # startgroup: Telegram adds the bot to a group the user picks and sends "/start@bot mgr-..." there.
            click.echo(f"for the staff group: https://t.me/{username}?startgroup={INVITE_PREFIX}{code} "
                       f"(or send /start@{username} {INVITE_PREFIX}{code} in the group)")  # fmt: skip
    else:
        where = "in a private chat or the staff group" if purpose == "alerts" else "in a private chat"
        click.echo(f"invite code: {INVITE_PREFIX}{code}")
        click.echo(f"the manager sends the bot, {where}: /start {INVITE_PREFIX}{code}")
        click.echo("closeloop: no Telegram username (CLOSELOOP_TELEGRAM_USERNAME): no link to print", err=True)


@manager.command("add-email")
@click.option("--scope", "scope_text", required=True, help=f"What the subscription covers: {SCOPE_FORM}.")
@click.option("--email", required=True, help="The e-mail address.")
@_purpose_option
@click.option("--language", type=click.Choice(["en", "zh"]), default="en", show_default=True)
@click.pass_obj
def add_email(settings: Settings, scope_text: str, email: str, purpose: str, language: str) -> None:
    """Send the weekly digest or the case alerts of a scope to an e-mail address."""
    address = email.strip()
    if not is_email_address(address):
        raise click.BadParameter(f"not an e-mail address: {email!r}", param_hint="'--email'")
    kind, value = checked_scope(settings, scope_text)
    new = NewSubscription(PURPOSES[purpose], DeliveryChannel.EMAIL, kind, value, language, address=address)
    subscription_id = _subscribe(settings, new, source=FROM_CLI)
    what = "the weekly digest" if purpose == "digest" else "case alerts"
    click.echo(f"subscription {subscription_id}: {address} gets {what} of {_scope_text(kind, value)}")


@manager.command("list")
@click.pass_obj
def list_(settings: Settings) -> None:
    """Print every subscription: purpose, channel, address (or a pending invite), scope, language, state, source."""
    rows = with_database(settings, list_subscriptions)
    if not rows:
        click.echo("no subscriptions yet (closeloop manager invite / add-email, or the subscriptions file)")
        return
    table = [("ID", "PURPOSE", "CHANNEL", "ADDRESS", "SCOPE", "LANG", "STATE", "SOURCE")]
    for row in rows:
        purpose = next(name for name, value in PURPOSES.items() if value == row.purpose)
        table.append((str(row.id), purpose, str(row.channel), _address_text(row), _scope_text(row.scope_kind,
                      row.scope_value), row.language, _state_text(row), row.source))  # fmt: skip
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


@manager.command("remove")
@click.argument("subscription_id", type=int)
@click.pass_obj
def remove(settings: Settings, subscription_id: int) -> None:
    """Stop a subscription made with `closeloop manager` (it is kept, inactive; the audit log records who and when)."""

    async def _remove(database) -> bool:
        return await remove_subscription(database, subscription_id, actor=Actor(ActorKind.CLI))

    try:
        changed = with_database(settings, _remove)
    except SubscriptionNotFoundError:
        raise click.BadParameter(f"no subscription {subscription_id}", param_hint="'SUBSCRIPTION_ID'") from None
    except FileSubscriptionError:
        raise click.BadParameter(
            f"subscription {subscription_id} comes from {settings.files.subscriptions}: remove its entry there",
            param_hint="'SUBSCRIPTION_ID'",
        ) from None
    click.echo(f"subscription {subscription_id} {'removed' if changed else 'was inactive already'}")


def checked_scope(settings: Settings, text: str) -> tuple[ScopeKind, str | None]:
    """Parse a --scope and check its branch or region is in the database (synchronised from the branches file)."""
    from reporting.scope import ReportingError, Scope, load_org

    try:
        kind, value = parse_scope(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--scope'") from None
    scope = Scope.bank() if kind == ScopeKind.ALL else Scope.of_branch(value) if kind == ScopeKind.BRANCH else (
        Scope.of_region(value))  # fmt: skip

    async def _check(database) -> None:
        (await load_org(database)).filter_for(scope)

    try:
        with_database(settings, _check)
    except ReportingError as exc:
        raise click.BadParameter(str(exc), param_hint="'--scope'") from None
    return kind, value


def _subscribe(settings: Settings, new: NewSubscription, *, source: str) -> int:
    async def _add(database) -> int:
        return await add_subscription(database, new, source=source, actor=Actor(ActorKind.CLI))

    return with_database(settings, _add)


def _scope_text(kind: ScopeKind, value: str | None) -> str:
    return "all" if kind == ScopeKind.ALL else f"{kind}:{value}"


def _address_text(row: Subscription) -> str:
    """Staff need to see where a subscription goes: the address itself, a Telegram chat named private or group."""
    if row.address is None:
        return "(invite pending)"
    if row.channel == DeliveryChannel.TELEGRAM:
        return f"{row.address} ({'group' if row.address.startswith('-') else 'chat'})"
    return row.address


def _state_text(row: Subscription) -> str:
    if not row.is_active:
        return "inactive"
    return "pending" if row.address is None else "active"


def with_database(settings: Settings, work: Callable[..., Awaitable[T]]) -> T:
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
