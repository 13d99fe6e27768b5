"""Staff accounts and console sessions: create and find users, sign-in bookkeeping, and the audit trail it leaves.

Every change here writes its AuditEntry in the same transaction, so the trail cannot miss an action that happened
or show one that rolled back. Passwords never reach this module, only their argon2 hashes, and no hash or token
is ever written into the audit log.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from store.audit import audit_entry
from store.database import Database
from store.errors import StoreError
from store.models import ActorKind, ApiToken, AuditEntry, ScopeKind, StaffRole, StaffSession, StaffUser

TARGET = "staff_user"
# last_seen_at is written at most this often: idle expiry is a minute coarse, and a page view is not a write.
SLIDE_EVERY = timedelta(minutes=1)


class DuplicateUserError(StoreError):
    """Raise when a username is taken (usernames are unique, whatever their case)."""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who does an audited action, and from which address (None from the command line)."""

    kind: ActorKind
    id: int | None = None
    remote_addr: str | None = None


@dataclass(frozen=True, slots=True)
class NewUser:
    username: str
    display_name: str
    role: StaffRole
    scope_kind: ScopeKind
    scope_value: str | None
    password_hash: str


@dataclass(frozen=True, slots=True)
class IssuedSession:
    """A new session as the browser gets it: the token goes into the cookie and is stored nowhere."""

    token: str
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A live session and its (active) user."""

    user: StaffUser
    session: StaffSession


def canonical_username(text: str) -> str:
    """The form a username is stored and looked up in: trimmed and lower-case, so "Alice" signs in as "alice"."""
    return text.strip().lower()


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def count_users(db: Database) -> int:
    async with db.sessions() as session:
        return await session.scalar(select(func.count()).select_from(StaffUser)) or 0


async def find_user(db: Database, username: str) -> StaffUser | None:
    async with db.sessions() as session:
        return await session.scalar(select(StaffUser).where(StaffUser.username == canonical_username(username)))


async def list_users(db: Database) -> list[StaffUser]:
    async with db.sessions() as session:
        return list(await session.scalars(select(StaffUser).order_by(StaffUser.username)))


async def create_user(db: Database, new: NewUser, *, actor: Actor) -> StaffUser:
    """Add a user.

    Raises:
        DuplicateUserError: the username is taken (also when another process added it a moment ago).
    """
    user = StaffUser(
        username=canonical_username(new.username),
        display_name=new.display_name,
        role=new.role,
        scope_kind=new.scope_kind,
        scope_value=new.scope_value,
        password_hash=new.password_hash,
    )
    try:
        async with db.writing(), db.sessions() as session, session.begin():
            session.add(user)
            await session.flush()
            _audit(session, actor, "staff.created", user.id, after=_profile(user))
    except IntegrityError as exc:
        raise DuplicateUserError(f"username {user.username!r} is taken") from exc
    return user


async def set_password(db: Database, username: str, password_hash: str, *, actor: Actor) -> StaffUser | None:
    """Replace a user's password, unlock the account and end its sessions; None for an unknown username."""
    async with db.writing(), db.sessions() as session, session.begin():
        user = await session.scalar(select(StaffUser).where(StaffUser.username == canonical_username(username)))
        if user is None:
            return None
        before = {"failed_logins": user.failed_logins, "locked_until": _iso(user.locked_until)}
        user.password_hash, user.failed_logins, user.locked_until = password_hash, 0, None
        ended = await session.execute(delete(StaffSession).where(StaffSession.user_id == user.id))
        after = {"failed_logins": 0, "locked_until": None, "sessions_ended": ended.rowcount}
        _audit(session, actor, "staff.password_reset", user.id, before=before, after=after)
    return user


async def record_failed_sign_in(
    db: Database, user_id: int, *, now: datetime, max_failures: int, lock_for: timedelta, remote_addr: str | None
) -> datetime | None:
    """Count a wrong password; at ``max_failures`` in a row lock the account. Return the lock's end if it locked.

    The count goes up in the database (not read, add, write back), so parallel guesses cannot undercount. Locking
    starts the count again, so after the lock ends the next guesses are counted from zero.
    """
    system = Actor(ActorKind.SYSTEM, remote_addr=remote_addr)
    async with db.writing(), db.sessions() as session, session.begin():
        failures = await session.scalar(
            update(StaffUser)
            .where(StaffUser.id == user_id)
            .values(failed_logins=StaffUser.failed_logins + 1)
            .returning(StaffUser.failed_logins)
        )
        _audit(session, system, "staff.sign_in_failed", user_id, after={"reason": "wrong_password"})
        if failures is None or failures < max_failures:
            return None
        until = now + lock_for
        await session.execute(
            update(StaffUser).where(StaffUser.id == user_id).values(failed_logins=0, locked_until=until)
        )
        _audit(session, system, "staff.locked_out", user_id, before={"locked_until": None},
               after={"locked_until": until.isoformat(), "failures": failures})  # fmt: skip
    return until


async def record_refused_sign_in(db: Database, user_id: int | None, *, reason: str, remote_addr: str | None) -> None:
    """Audit a sign-in refused before any password check counted: unknown user, inactive or locked account.

    An unknown username is not written down: people type their password into the username box.
    """
    async with db.writing(), db.sessions() as session, session.begin():
        actor = Actor(ActorKind.SYSTEM, remote_addr=remote_addr)
        _audit(session, actor, "staff.sign_in_failed", user_id, after={"reason": reason})


async def start_session(
    db: Database,
    user_id: int,
    *,
    now: datetime,
    lifetime: timedelta,
    idle: timedelta,
    remote_addr: str | None,
    replaces: str | None = None,
    new_password_hash: str | None = None,
) -> IssuedSession:
    """Sign a user in: a brand-new session, the failure count reset, and the session the browser came with gone.

    Also drops this user's expired sessions, so the table holds about one row per browser in use. A new
    password hash (argon2 parameters raised since it was made) replaces the old one in the same transaction.
    """
    issued = IssuedSession(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now + lifetime)
    values: dict[str, Any] = {"failed_logins": 0, "locked_until": None, "last_login_at": now}
    if new_password_hash is not None:
        values["password_hash"] = new_password_hash
    async with db.writing(), db.sessions() as session, session.begin():
        stale = [StaffSession.expires_at <= now, StaffSession.last_seen_at <= now - idle]
        await session.execute(delete(StaffSession).where(StaffSession.user_id == user_id, or_(*stale)))
        if replaces:
            await session.execute(delete(StaffSession).where(StaffSession.id == hash_token(replaces)))
        await session.execute(update(StaffUser).where(StaffUser.id == user_id).values(**values))
        session.add(StaffSession(id=hash_token(issued.token), user_id=user_id, csrf_token=issued.csrf_token,
                                 created_at=now, last_seen_at=now, expires_at=issued.expires_at,
                                 remote_addr=remote_addr))  # fmt: skip
        actor = Actor(ActorKind.STAFF, user_id, remote_addr)
        _audit(session, actor, "staff.sign_in", user_id, after={"rehashed": new_password_hash is not None})
    return issued


async def find_session(db: Database, token: str, *, now: datetime, idle: timedelta) -> SignedIn | None:
    """The live session of this cookie token and its user; None when unknown, expired, idle too long or the user
    is inactive. Using a session moves its idle deadline on (sliding expiry); the absolute one never moves."""
    session_id = hash_token(token)
    async with db.sessions() as session:
        row = (
            await session.execute(
                select(StaffSession, StaffUser)
                .join(StaffUser, StaffUser.id == StaffSession.user_id)
                .where(StaffSession.id == session_id)
            )
        ).first()
    if row is None:
        return None
    found, user = row
    if found.expires_at <= now or found.last_seen_at + idle <= now:
        await _delete_sessions(db, StaffSession.id == session_id)
        return None
    if not user.is_active:
        await end_user_sessions(db, user.id)
        return None
    if now - found.last_seen_at >= SLIDE_EVERY:
        async with db.writing(), db.sessions() as session, session.begin():
            await session.execute(update(StaffSession).where(StaffSession.id == session_id).values(last_seen_at=now))
        found.last_seen_at = now
    return SignedIn(user, found)


async def end_session(db: Database, token: str, *, remote_addr: str | None) -> bool:
    """Sign out: delete the session of this token. Return whether there was one."""
    async with db.writing(), db.sessions() as session, session.begin():
        user_id = await session.scalar(
            delete(StaffSession).where(StaffSession.id == hash_token(token)).returning(StaffSession.user_id)
        )
        if user_id is None:
            return False
        _audit(session, Actor(ActorKind.STAFF, user_id, remote_addr), "staff.sign_out", user_id)
    return True


async def end_user_sessions(db: Database, user_id: int) -> int:
    """Sign a user out everywhere; return how many sessions ended."""
    return await _delete_sessions(db, StaffSession.user_id == user_id)


async def _delete_sessions(db: Database, where: Any) -> int:
    async with db.writing(), db.sessions() as session, session.begin():
        return (await session.execute(delete(StaffSession).where(where))).rowcount


def _audit(
    session: AsyncSession,
    actor: Actor,
    action: str,
    user_id: int | None,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditEntry(
            actor_kind=actor.kind,
            actor_id=actor.id,
            action=action,
            target_type=TARGET,
            target_id=None if user_id is None else str(user_id),
            before=before,
            after=after,
            remote_addr=(actor.remote_addr or "")[:45] or None,
        )
    )


def _profile(user: StaffUser) -> dict[str, Any]:
    return {
        "username": user.username,
        "display_name": user.display_name,
        "role": str(user.role),
        "scope_kind": str(user.scope_kind),
        "scope_value": user.scope_value,
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


# -- API tokens ---------------------------------------------------------------------------------------------------

TOKEN_PREFIX = 8  # characters of a token kept in clear: enough to tell tokens apart, far too few to guess the rest
TOKEN_NAME_LIMIT = 100


class TokenNotFoundError(StoreError):
    """Raise when no API token has the id given."""


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new API token as its owner gets it, once: the token itself is stored nowhere, only its hash."""

    token: str
    record: ApiToken


@dataclass(frozen=True, slots=True)
class TokenHolder:
    """The live token of an API request and its (active) user."""

    user: StaffUser
    token: ApiToken


async def create_token(
    db: Database, user_id: int, name: str, *, now: datetime, expires_at: datetime | None, actor: Actor
) -> IssuedToken:
    """Issue an API token that acts as the user, with its audit entry; ``expires_at`` None: valid until revoked."""
    token = secrets.token_urlsafe(32)
    record = ApiToken(user_id=user_id, name=name.strip()[:TOKEN_NAME_LIMIT], token_hash=hash_token(token),
                      prefix=token[:TOKEN_PREFIX], created_at=now, expires_at=expires_at)  # fmt: skip
    async with db.writing(), db.sessions() as session, session.begin():
        session.add(record)
        await session.flush()
        after = {"user_id": user_id, "name": record.name, "prefix": record.prefix, "expires_at": _iso(expires_at)}
        session.add(_token_audit(actor, "api_token.created", record.id, after=after))
    return IssuedToken(token, record)


async def list_tokens(db: Database, *, user_id: int | None = None) -> list[tuple[ApiToken, str]]:
    """Every API token (or one user's), oldest first, with its user's username."""
    statement = select(ApiToken, StaffUser.username).join(StaffUser, StaffUser.id == ApiToken.user_id)
    if user_id is not None:
        statement = statement.where(ApiToken.user_id == user_id)
    async with db.sessions() as session:
        return [(token, username) for token, username in await session.execute(statement.order_by(ApiToken.id))]


async def revoke_token(db: Database, token_id: int, *, now: datetime, actor: Actor) -> bool:
    """End an API token at once; return False when it was revoked already (nothing changes then).

    Raises:
        TokenNotFoundError: no token has this id.
    """
    async with db.writing(), db.sessions() as session, session.begin():
        record = await session.get(ApiToken, token_id)
        if record is None:
            raise TokenNotFoundError(f"no API token {token_id}")
        if record.revoked_at is not None:
            return False
        record.revoked_at = now
        after = {"user_id": record.user_id, "name": record.name, "prefix": record.prefix, "revoked_at": _iso(now)}
        session.add(_token_audit(actor, "api_token.revoked", token_id, before={"revoked_at": None}, after=after))
    return True


async def find_token(db: Database, token: str, *, now: datetime) -> TokenHolder | None:
    """The live API token of this bearer token and its user; None when unknown, revoked, expired or the user is
    inactive. Use is noted in last_used_at, at most once a minute (a read is not a write)."""
    async with db.sessions() as session:
        row = (
            await session.execute(
                select(ApiToken, StaffUser)
                .join(StaffUser, StaffUser.id == ApiToken.user_id)
                .where(ApiToken.token_hash == hash_token(token))
            )
        ).first()
    if row is None:
        return None
    record, user = row
    is_expired = record.expires_at is not None and record.expires_at <= now
    if record.revoked_at is not None or is_expired or not user.is_active:
        return None
    if record.last_used_at is None or now - record.last_used_at >= SLIDE_EVERY:
        async with db.writing(), db.sessions() as session, session.begin():
            await session.execute(update(ApiToken).where(ApiToken.id == record.id).values(last_used_at=now))
        record.last_used_at = now
    return TokenHolder(user, record)


def _token_audit(
    actor: Actor,
    action: str,
    token_id: int,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEntry:
    return audit_entry(actor_kind=actor.kind, actor_id=actor.id, action=action, target_type="api_token",
                       target_id=token_id, before=before, after=after, remote_addr=actor.remote_addr)  # fmt: skip
