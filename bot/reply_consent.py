"""Replies through the bot: the customer's yes to being written to later, kept with their feedback, and listed.

The engine knows no channel. It is told which channels keep an address staff could write to later (a chat, not
a web page's session), asks the script's reply-consent question only there, and after a yes records the
channel's user id as that address. /forget clears it with the rest of the customer's data.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.script import Survey
from store.models import Feedback, Respondent


def has_agreed(survey: Survey, answers: Mapping[str, Any]) -> bool:
    """Whether the conversation's answers hold a yes to a reply-consent question."""
    return any(answers.get(step.id) is True for step in survey.steps if step.reply_consent)


def record_consent(feedback: Feedback, address: str, now: datetime) -> None:
    """Keep where staff may write to the customer about this feedback, and when they agreed."""
    feedback.reply_chat = address
    feedback.reply_consent_at = now


async def consents_of(session: AsyncSession, respondent: Respondent) -> dict[int, datetime]:
    """Conversation id -> when the customer agreed to replies, for each of their feedback that still allows one."""
    rows = await session.execute(
        select(Feedback.conversation_id, Feedback.reply_consent_at).where(
            Feedback.respondent_id == respondent.id, Feedback.reply_chat.is_not(None)
        )
    )
    return {conversation_id: at for conversation_id, at in rows if at is not None}
