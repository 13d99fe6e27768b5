"""Who receives digests and case alerts: rows the CLI adds, invites a Telegram chat redeems, and the file sync.

A subscription has a source. "file" rows mirror the operator's subscriptions file and belong to
``sync_file_subscriptions`` alone; "cli" (``closeloop manager add-email``) and "invite" (``closeloop manager
invite``) rows are the CLI's, and the sync never touches them.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.database import Database
from store.errors import StoreError
from store.models import AuditEntry, DeliveryChannel, ScopeKind, Subscription, SubscriptionPurpose
from store.staff import Actor

INVITE_PREFIX = "mgr-"
FROM_FILE, FROM_CLI, FROM_INVITE = "file", "cli", "invite"
TARGET = "subscription"
# Any fixed 64-bit number, the same in every process: two servers starting together must not both add a row.
SYNC_LOCK_KEY = 0x636C2D7375627331


class SubscriptionNotFoundError(StoreError):
    """Raise when no subscription has the id asked for."""


class FileSubscriptionError(StoreError):
    """Raise when the CLI would change a row the subscriptions file owns (the next start would undo it)."""


@dataclass(frozen=True, slots=True)
class NewSubscription:
    """A subscription as the CLI adds it: an e-mail address, or a Telegram invite code waiting for its chat."""

    purpose: SubscriptionPurpose
    channel: DeliveryChannel
    scope_kind: ScopeKind
    scope_value: str | None
    language: str
    address: str | None = None
    invite_code: str | None = None


@dataclass(frozen=True, slots=True)
class EmailSpec:
    """One e-mail entry of the subscriptions file."""

    address: str
    purpose: SubscriptionPurpose
    scope_kind: ScopeKind
    scope_value: str | None
    language: str

    @property
    def key(self) -> tuple[str, str, str, str]:
        # Addresses match whatever their case: mail systems treat them so, and operators retype them.
        return self.address.lower(), self.purpose.value, self.scope_kind.value, self.scope_value or ""


@dataclass(frozen=True, slots=True)
class SubscriptionSyncResult:
    added: int = 0
    updated: int = 0
    reactivated: int = 0
    deactivated: int = 0


def is_invite(argument: str | None) -> bool:
    """Whether a /start argument is a manager's invite code ("mgr-<code>") rather than a branch."""
    return bool(argument) and argument.strip().startswith(INVITE_PREFIX) and len(argument.strip()) > len(INVITE_PREFIX)


async def add_subscription(db: Database, new: NewSubscription, *, source: str, actor: Actor) -> int:
    """Add a subscription and its audit entry in one transaction; return its id."""
    async with db.writing(), db.sessions() as session, session.begin():
        row = Subscription(purpose=new.purpose, channel=new.channel, address=new.address, scope_kind=new.scope_kind,
                           scope_value=new.scope_value, language=new.language, invite_code=new.invite_code,
                           source=source)  # fmt: skip
        session.add(row)
        await session.flush()
        _audit(session, actor, "subscription.added", row.id, after=_state(row))
        return row.id


async def redeem_invite(
    db: Database,
    code: str,
    chat_id: int | str,
    *,
    purposes: Collection[SubscriptionPurpose] = tuple(SubscriptionPurpose),
) -> Subscription | None:
    """Bind the Telegram chat to the subscription whose invite code this is; None for an unknown code.

    The bot calls it for "/start mgr-<code>" (with or without the prefix). Only a subscription for one of
    ``purposes`` is bound, so a group chat can take an alert invite and leave a digest invite for a private chat.
    The code is single-use: it is cleared in the same UPDATE that sets the address, so two chats racing for one
    code cannot both get it.
    """
    code = code.strip().removeprefix(INVITE_PREFIX)
    if not code:
        return None
    async with db.writing(), db.sessions() as session, session.begin():
        result = await session.execute(
            update(Subscription)
            .where(
                Subscription.invite_code == code,
                Subscription.channel == DeliveryChannel.TELEGRAM,
                Subscription.purpose.in_(list(purposes)),
            )
            .values(address=str(chat_id), invite_code=None, is_active=True)
            .returning(Subscription.id)
        )
        subscription_id = result.scalar_one_or_none()
        if subscription_id is None:
            return None
        return await session.get(Subscription, subscription_id)


async def pending_invite(db: Database, code: str) -> Subscription | None:
    """The Telegram subscription still waiting for this invite code; None when unknown or already redeemed."""
    code = code.strip().removeprefix(INVITE_PREFIX)
    if not code:
        return None
    query = select(Subscription).where(
        Subscription.invite_code == code, Subscription.channel == DeliveryChannel.TELEGRAM
    )
    async with db.sessions() as session:
        return await session.scalar(query)


async def list_subscriptions(db: Database) -> list[Subscription]:
    """Every subscription, active or not, oldest first."""
    async with db.sessions() as session:
        return list(await session.scalars(select(Subscription).order_by(Subscription.id)))


async def remove_subscription(db: Database, subscription_id: int, *, actor: Actor) -> bool:
    """Deactivate a CLI or invite subscription; return False when it was inactive already (nothing is written).

    The row stays (the audit trail and past sends refer to it); an unredeemed invite loses its code too, so the
    link stops working.

    Raises:
        SubscriptionNotFoundError: no such id.
        FileSubscriptionError: the row comes from the subscriptions file; it is removed there.
    """
    async with db.writing(), db.sessions() as session, session.begin():
        row = await session.get(Subscription, subscription_id)
        if row is None:
            raise SubscriptionNotFoundError(f"no subscription {subscription_id}")
        if row.source == FROM_FILE:
            raise FileSubscriptionError(f"subscription {subscription_id} comes from the subscriptions file")
        if not row.is_active and row.invite_code is None:
            return False
        before = _state(row)
        row.is_active, row.invite_code = False, None
        _audit(session, actor, "subscription.removed", row.id, before=before, after=_state(row))
        return True


async def sync_file_subscriptions(db: Database, entries: Sequence[EmailSpec]) -> SubscriptionSyncResult:
    """Make the "file" rows match ``entries``: add new ones, update languages, reactivate, deactivate the rest.

    Rows match by address (any case), purpose and scope; rows of other sources are never read or changed.
    A row is deactivated rather than deleted, so its history stays and re-adding the entry brings it back.

    Raises:
        StoreError: two entries share address, purpose and scope.
    """
    keys = [entry.key for entry in entries]
    if len(set(keys)) != len(keys):
        raise StoreError("duplicate entries in the subscriptions file")
    added = updated = reactivated = deactivated = 0
    async with db.writing(), db.sessions() as session, session.begin():
        if db.dialect == "postgresql":
            await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SYNC_LOCK_KEY})
        existing = await _file_rows(session)
        for entry in entries:
            row = existing.pop(entry.key, None)
            if row is None:
                session.add(_new_file_row(entry))
                added += 1
                continue
            if not row.is_active:
                row.is_active = True
                reactivated += 1
            if (row.address, row.language) != (entry.address, entry.language):
                row.address, row.language = entry.address, entry.language
                updated += 1
        for row in existing.values():
            if row.is_active:
                row.is_active = False
                deactivated += 1
    return SubscriptionSyncResult(added=added, updated=updated, reactivated=reactivated, deactivated=deactivated)


async def _file_rows(session: AsyncSession) -> dict[tuple[str, str, str, str], Subscription]:
    """The file's rows by key; should two share one (edited by hand), the newest wins and the others go inactive."""
    rows = await session.scalars(select(Subscription).where(Subscription.source == FROM_FILE).order_by(Subscription.id))
    by_key: dict[tuple[str, str, str, str], Subscription] = {}
    for row in rows:
        key = ((row.address or "").lower(), row.purpose.value, row.scope_kind.value, row.scope_value or "")
        if key in by_key:
            by_key[key].is_active = False
        by_key[key] = row
    return by_key


def _new_file_row(entry: EmailSpec) -> Subscription:
    return Subscription(purpose=entry.purpose, channel=DeliveryChannel.EMAIL, address=entry.address,
                        scope_kind=entry.scope_kind, scope_value=entry.scope_value, language=entry.language,
                        source=FROM_FILE)  # fmt: skip


def _state(row: Subscription) -> dict[str, object]:
    """What the audit log keeps of a row: no invite code (it is a credential until redeemed), only whether one is."""
    return {
        "purpose": str(row.purpose),
        "channel": str(row.channel),
        "address": row.address,
        "scope_kind": str(row.scope_kind),
        "scope_value": row.scope_value,
        "language": row.language,
        "is_active": row.is_active,
        "invite_pending": row.invite_code is not None,
        "source": row.source,
    }


def _audit(
    session: AsyncSession,
    actor: Actor,
    action: str,
    subscription_id: int,
    *,
    before: dict[str, object] | None = None,
    after: dict[str, object] | None = None,
) -> None:
    entry = AuditEntry(actor_kind=actor.kind, actor_id=actor.id, action=action, target_type=TARGET,
                       target_id=str(subscription_id), before=before, after=after,
                       remote_addr=(actor.remote_addr or "")[:45] or None)  # fmt: skip
    session.add(entry)
