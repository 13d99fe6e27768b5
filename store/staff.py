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

from store.database import Database
from store.errors import StoreError
from store.models import ActorKind, AuditEntry, ScopeKind, StaffRole, StaffSession, StaffUser

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
