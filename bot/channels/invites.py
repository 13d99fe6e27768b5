"""Manager invites: "/start mgr-<code>" binds a chat to its subscription instead of starting a survey.

A digest invite binds a private chat only (a digest is one manager's reading); a case-alert invite binds a private
chat or a group, so a branch's staff group is told of new cases together. The conversation engine never sees these
updates: a manager is not a customer, and nothing about them is kept beyond the subscription's address (the chat
id).
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import SQLAlchemyError

from bot import records
from bot.engine import ConversationUnavailableError
from bot.events import Reply
from bot.texts import text
from store import Database
from store.models import ScopeKind, Subscription, SubscriptionPurpose, utcnow
from store.subscriptions import is_invite, pending_invite, redeem_invite

log = logging.getLogger(__name__)

ACCEPTED = {SubscriptionPurpose.DIGEST: "invite_accepted", SubscriptionPurpose.CASE_ALERT: "invite_alerts_accepted"}
GROUP_PURPOSES = (SubscriptionPurpose.CASE_ALERT,)


def invite_code_of(command: tuple[str, str] | None) -> str | None:
    """The invite code of a ("start", "mgr-<code>") command; None for any other command or none."""
    if command is None:
        return None
    name, argument = command
    return argument if name == "start" and is_invite(argument) else None


class Invites:
    """Redeem managers' invite codes arriving on one channel."""

    def __init__(self, database: Database, channel: str) -> None:
        self._db = database
        self._channel = channel

    async def redeem(
        self, code: str, *, event_id: str, chat: int, language: str, is_group: bool = False
    ) -> list[Reply]:
        """Claim the event, then redeem the code for `chat`; return the replies (none for an event handled before).

        The claim commits first, on its own: a redelivered update finds it and says nothing, where redeeming
        first would answer the redelivery "already used". A failure after the claim leaves the code unused, so
        the manager only has to open the link again. A group redeems case-alert invites only; a digest invite
        sent there stays unused, for the manager's private chat.

        Raises:
            ConversationUnavailableError: the claim failed; nothing changed, so the update may be handled again.
        """
        try:
            async with self._db.writing(), self._db.sessions() as session, session.begin():
                if not await records.claim_event(session, self._channel, event_id, utcnow()):
                    return []
        except SQLAlchemyError as exc:
            raise ConversationUnavailableError("the database is unavailable") from exc
        purposes = GROUP_PURPOSES if is_group else tuple(SubscriptionPurpose)
        try:
            subscription = await redeem_invite(self._db, code, chat, purposes=purposes)
            # Still pending after a group's try: a valid invite of a purpose groups may not take (a digest).
            is_private_only = subscription is None and is_group and await pending_invite(self._db, code) is not None
        except SQLAlchemyError:
            log.warning("%s: an invite could not be redeemed, the database failed", self._channel, exc_info=True)
            return [Reply(text("invite_failure", language))]
        if is_private_only:
            log.info("%s: a digest invite was refused in a group chat", self._channel)
            return [Reply(text("invite_digest_private_only", language))]
        if subscription is None:
            log.info("%s: an unknown or used invite code was refused", self._channel)
            return [Reply(text("invite_invalid", language))]
        log.info("%s: %s subscription %s bound to its chat", self._channel, subscription.purpose, subscription.id)
        scope = _scope_label(subscription, language)
        return [Reply(text(ACCEPTED[subscription.purpose], language, scope=scope))]


def _scope_label(subscription: Subscription, language: str) -> str:
    """Name the scope for the manager: "branch MAIN", "region North" or "the whole bank", in `language`."""
    if subscription.scope_kind == ScopeKind.ALL:
        return text("scope_all", language)
    key = "scope_branch" if subscription.scope_kind == ScopeKind.BRANCH else "scope_region"
    return text(key, language, value=subscription.scope_value)
