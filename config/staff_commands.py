"""`closeloop staff ...`: add console users, list them, reset a password (which also unlocks it); API tokens."""

from __future__ import annotations

import re
import sys
from datetime import datetime, timedelta

import click

from config.digest_commands import SCOPE_FORM, checked_scope, with_database
from config.settings import Settings
from store.models import ActorKind, ApiToken, ScopeKind, StaffRole, StaffUser, utcnow
from store.staff import (
    TOKEN_NAME_LIMIT,
    Actor,
    DuplicateUserError,
    NewUser,
    TokenNotFoundError,
    canonical_username,
    create_token,
    create_user,
    find_user,
    list_tokens,
    list_users,
    revoke_token,
    set_password,
)
from web.passwords import hash_password, password_problem

USERNAME = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}")
CLI = Actor(ActorKind.CLI)
# What each role may cover: an admin sees everything; staff work in one branch; a manager has branches or a region.
ROLE_SCOPES = {
    StaffRole.ADMIN: {ScopeKind.ALL},
    StaffRole.MANAGER: {ScopeKind.ALL, ScopeKind.REGION, ScopeKind.BRANCH},
    StaffRole.STAFF: {ScopeKind.BRANCH},
}
STDIN_HELP = "Read the password from the first line of standard input instead of prompting."


@click.group()
def staff() -> None:
    """Manage the users who sign in to the staff console."""


@staff.command("add")
@click.option("--username", required=True, help="Sign-in name: letters, digits and . _ @ - (stored lower-case).")
@click.option("--role", type=click.Choice([r.value for r in StaffRole]), required=True)
@click.option("--scope", "scope_text", required=True, help=f"What the user sees: {SCOPE_FORM}.")
@click.option("--name", "display_name", default=None, help="Name shown in the console; default: the username.")
@click.option("--password-stdin", is_flag=True, help=STDIN_HELP)
@click.pass_obj
def add(
    settings: Settings, username: str, role: str, scope_text: str, display_name: str | None, password_stdin: bool
) -> None:
    """Create a console user; the password is asked twice without echo (or read from standard input)."""
    username = _checked_username(username)
    kind, value = checked_scope(settings, scope_text)
    if ScopeKind(kind) not in ROLE_SCOPES[StaffRole(role)]:
        allowed = " or ".join(sorted(ROLE_SCOPES[StaffRole(role)]))
        raise click.BadParameter(f"role {role} needs scope {allowed}", param_hint="'--scope'")
    if with_database(settings, lambda database: find_user(database, username)) is not None:
        raise click.BadParameter(f"username {username!r} is taken", param_hint="'--username'")
    password_hash = hash_password(_new_password(password_stdin))
    new = NewUser(username, (display_name or "").strip() or username, StaffRole(role), ScopeKind(kind), value,
                  password_hash)  # fmt: skip

    async def _add(database) -> None:
        await create_user(database, new, actor=CLI)

    try:
        with_database(settings, _add)
    except DuplicateUserError:  # added by someone else since the check above
        raise click.BadParameter(f"username {username!r} is taken", param_hint="'--username'") from None
    click.echo(f"added {username} ({role}, {kind}{f' {value}' if value else ''})")


@staff.command("list")
@click.pass_obj
def list_(settings: Settings) -> None:
    """Print every console user: username, role, scope, state and last sign-in."""
    users = with_database(settings, list_users)
    if not users:
        click.echo("no staff users yet (`closeloop run` creates a first admin; or use `closeloop staff add`)")
    now = utcnow()
    for user in users:
        scope = f"{user.scope_kind}:{user.scope_value}" if user.scope_value else str(user.scope_kind)
        last = f"{user.last_login_at:%Y-%m-%d %H:%M} UTC" if user.last_login_at else "never signed in"
        # unstyle: a display name must not be able to send escape sequences to the operator's terminal.
        click.echo(
            f"{user.username}\t{user.role}\t{scope}\t{_state(user, now)}\t{last}\t{click.unstyle(user.display_name)}"
        )


@staff.command("reset-password")
@click.option("--username", required=True)
@click.option("--password-stdin", is_flag=True, help=STDIN_HELP)
@click.pass_obj
def reset_password(settings: Settings, username: str, password_stdin: bool) -> None:
    """Set a new password, unlock the account and sign it out everywhere."""
    password_hash = hash_password(_new_password(password_stdin))

    async def _reset(database):
        return await set_password(database, username, password_hash, actor=CLI)

    if with_database(settings, _reset) is None:
        raise click.BadParameter(f"no staff user {canonical_username(username)!r}", param_hint="'--username'")
    click.echo(f"password of {canonical_username(username)} replaced; the account is unlocked and signed out")


def _checked_username(text: str) -> str:
    username = canonical_username(text)
    if not USERNAME.fullmatch(username):
        raise click.BadParameter(
            f"{text!r}: use 1-64 letters, digits and . _ @ - (starting with a letter or digit)",
            param_hint="'--username'",
        )
    return username


def _new_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    problem = password_problem(password)
    if problem:
        raise click.BadParameter(problem, param_hint="'--password-stdin'" if from_stdin else "password")
    return password


def _state(user: StaffUser, now: datetime) -> str:
    if not user.is_active:
        return "inactive"
    if user.locked_until is not None and user.locked_until > now:
        return f"locked until {user.locked_until:%Y-%m-%d %H:%M} UTC"
    return "active"


# -- API tokens ---------------------------------------------------------------------------------------------------

MAX_TOKEN_DAYS = 3650


@staff.group("token")
def token() -> None:
    """Manage the bearer tokens of the JSON API: each acts as its user, with that user's role and scope."""


@token.command("create")
@click.option("--username", required=True, help="The user the token acts as.")
@click.option("--name", "token_name", required=True, help="What the token is for, e.g. 'ticket sync'.")
@click.option("--days", type=click.IntRange(1, MAX_TOKEN_DAYS), default=None,
              help="Days until the token expires; default: valid until revoked.")  # fmt: skip
@click.pass_obj
def create_token_command(settings: Settings, username: str, token_name: str, days: int | None) -> None:
    """Issue a token and print it once: only its hash is stored, so it cannot be shown again."""
    name = token_name.strip()
    if not name or len(name) > TOKEN_NAME_LIMIT:
        raise click.BadParameter(f"give a name of 1 to {TOKEN_NAME_LIMIT} characters", param_hint="'--name'")
    user = with_database(settings, lambda database: find_user(database, username))
    if user is None:
        raise click.BadParameter(f"no staff user {canonical_username(username)!r}", param_hint="'--username'")
    if not user.is_active:
        raise click.BadParameter(f"{user.username} is inactive", param_hint="'--username'")
    now = utcnow()
    expires_at = now + timedelta(days=days) if days else None

    async def _create(database):
        return await create_token(database, user.id, name, now=now, expires_at=expires_at, actor=CLI)

    issued = with_database(settings, _create)
    until = f"expires {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else "valid until revoked"
    click.echo(f"token {issued.record.id} for {user.username} ({until}); it is shown only now:")
    click.echo(issued.token)


@token.command("list")
@click.option("--username", default=None, help="Only this user's tokens.")
@click.pass_obj
def list_tokens_command(settings: Settings, username: str | None) -> None:
    """Print every token: id, user, name, prefix, state, created, last used (never the token)."""

    async def _list(database):
        if username is None:
            return await list_tokens(database)
        user = await find_user(database, username)
        if user is None:
            raise click.BadParameter(f"no staff user {canonical_username(username)!r}", param_hint="'--username'")
        return await list_tokens(database, user_id=user.id)

    rows = with_database(settings, _list)
    if not rows:
        click.echo("no API tokens yet (closeloop staff token create)")
        return
    now = utcnow()
    table = [("ID", "USER", "NAME", "PREFIX", "STATE", "CREATED", "LAST USED")]
    for record, owner in rows:
        used = _utc(record.last_used_at) if record.last_used_at else "never"
        # unstyle: a token's name must not be able to send escape sequences to the operator's terminal.
        table.append((str(record.id), owner, click.unstyle(record.name), record.prefix + "…",
                      _token_state(record, now), _utc(record.created_at), used))  # fmt: skip
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


@token.command("revoke")
@click.argument("token_id", type=click.IntRange(1))
@click.pass_obj
def revoke_token_command(settings: Settings, token_id: int) -> None:
    """End a token at once: requests with it are refused from now on."""

    async def _revoke(database):
        return await revoke_token(database, token_id, now=utcnow(), actor=CLI)

    try:
        changed = with_database(settings, _revoke)
    except TokenNotFoundError:
        raise click.BadParameter(f"no API token {token_id}", param_hint="'TOKEN_ID'") from None
    click.echo(f"token {token_id} {'revoked' if changed else 'was revoked already'}")


def _token_state(record: ApiToken, now: datetime) -> str:
    if record.revoked_at is not None:
        return f"revoked {_utc(record.revoked_at)}"
    if record.expires_at is not None and record.expires_at <= now:
        return f"expired {_utc(record.expires_at)}"
    return f"expires {_utc(record.expires_at)}" if record.expires_at else "active"


def _utc(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"
