"""`closeloop staff ...`: add console users, list them, reset a password (which also unlocks the account)."""

from __future__ import annotations

import re
import sys
from datetime import datetime

import click

from config.digest_commands import SCOPE_FORM, _checked_scope, _with_database
from config.settings import Settings
from store.models import ActorKind, ScopeKind, StaffRole, StaffUser, utcnow
from store.staff import (
    Actor,
    DuplicateUserError,
    NewUser,
    canonical_username,
    create_user,
    find_user,
    list_users,
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
    kind, value = _checked_scope(settings, scope_text)
    if ScopeKind(kind) not in ROLE_SCOPES[StaffRole(role)]:
        allowed = " or ".join(sorted(ROLE_SCOPES[StaffRole(role)]))
        raise click.BadParameter(f"role {role} needs scope {allowed}", param_hint="'--scope'")
    if _with_database(settings, lambda database: find_user(database, username)) is not None:
        raise click.BadParameter(f"username {username!r} is taken", param_hint="'--username'")
    password_hash = hash_password(_new_password(password_stdin))
    new = NewUser(username, (display_name or "").strip() or username, StaffRole(role), ScopeKind(kind), value,
                  password_hash)  # fmt: skip

    async def _add(database) -> None:
        await create_user(database, new, actor=CLI)

    try:
        _with_database(settings, _add)
    except DuplicateUserError:  # added by someone else since the check above
        raise click.BadParameter(f"username {username!r} is taken", param_hint="'--username'") from None
    click.echo(f"added {username} ({role}, {kind}{f' {value}' if value else ''})")


@staff.command("list")
@click.pass_obj
def list_(settings: Settings) -> None:
    """Print every console user: username, role, scope, state and last sign-in."""
    users = _with_database(settings, list_users)
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

    if _with_database(settings, _reset) is None:
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
