"""Digest subscriptions a manager binds to their Telegram chat with a one-time invite code."""

from __future__ import annotations

from sqlalchemy import update

from store.database import Database
from store.models import DeliveryChannel, Subscription, SubscriptionPurpose

INVITE_PREFIX = "mgr-"


def is_invite(argument: str | None) -> bool:
    """Whether a /start argument is a manager's invite code ("mgr-<code>") rather than a branch."""
    return bool(argument) and argument.strip().startswith(INVITE_PREFIX) and len(argument.strip()) > len(INVITE_PREFIX)


async def redeem_invite(db: Database, code: str, chat_id: int | str) -> Subscription | None:
    """Bind the Telegram chat to the digest subscription whose invite code this is; None for an unknown code.

    The bot calls it for "/start mgr-<code>" (with or without the prefix). The code is single-use: it is cleared
    in the same UPDATE that sets the address, so two chats racing for one code cannot both get it.
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
                Subscription.purpose == SubscriptionPurpose.DIGEST,
            )
            .values(address=str(chat_id), invite_code=None, is_active=True)
            .returning(Subscription.id)
        )
        subscription_id = result.scalar_one_or_none()
        if subscription_id is None:
            return None
        return await session.get(Subscription, subscription_id)
