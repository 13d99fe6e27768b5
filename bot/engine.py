"""The conversation engine: an event and the stored state go in; replies and the new state come out.

It knows no channel. Every event is handled in one database transaction that writes the answer and the new
step together, so a process killed at any moment resumes at the step it last confirmed; an event id that was
already handled (a redelivered webhook) changes nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import weakref
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from bot import buttons, records, reply_consent
from bot.events import Button, Incoming, Kind, Reply
from bot.flood import FloodGuard, Verdict
from bot.followup import CategoryRanker, KeywordRanker, decide_followup
from bot.script import Step, StepType, Survey
from bot.steps import Accepted, interpret, prompt
from bot.texts import pick_language, text
from bot.transcript import Exchange, exchanges
from nlp.taxonomy import Taxonomy
from store import Database
from store.models import Conversation, ConversationStatus, Respondent, utcnow

log = logging.getLogger(__name__)

RETRIES = 3
PLACE_CACHE_SECONDS = 60.0


class ConversationUnavailableError(Exception):
    """The database failed mid-way; nothing of this event was stored, so the channel may retry it."""


@dataclass
class Turn:
    """One event being handled: the session it runs in and what we know about the customer."""

    session: AsyncSession
    event: Incoming
    user_hash: str
    respondent: Respondent | None
    conversation: Conversation | None
    language: str
    now: datetime


@dataclass(frozen=True, slots=True)
class View:
    """What a page shows: the conversation so far and the current question."""

    language: str
    exchanges: list[Exchange]
    prompt: list[Reply]
    is_active: bool


class Engine:
    def __init__(
        self,
        database: Database,
        survey: Survey,
        taxonomy: Taxonomy,
        *,
        salt: bytes,
        ranker: CategoryRanker | None = None,
        flood: FloodGuard | None = None,
        clock: Callable[[], datetime] = utcnow,
        conversation_ttl: timedelta = timedelta(hours=24),
        reply_channels: Collection[str] = (),
    ) -> None:
        self._db = database
        self.survey = survey
        self.taxonomy = taxonomy
        self._salt = salt
        self._ranker = ranker or KeywordRanker(taxonomy)
        self._flood = flood or FloodGuard()
        self._clock = clock
        self._ttl = conversation_ttl
        # Channels whose user id is an address staff can write to later; elsewhere reply consent is never asked.
        self._reply_channels = frozenset(reply_channels)
        # One customer's events run one at a time in this process; PostgreSQL row locks cover other processes.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._places: dict[str, tuple[float, records.Place | None]] = {}

    def use_ranker(self, ranker: CategoryRanker) -> None:
        """Rank follow-up categories with `ranker` from now on (the NLP model, once it has loaded)."""
        self._ranker = ranker

    async def handle(self, event: Incoming) -> list[Reply]:
        """Handle one event and return the replies to send, after its effects are committed."""
        key = f"{event.channel}:{event.user}"
        verdict = self._flood.check(key)
        if verdict is Verdict.DROP:
            return []
        if verdict is Verdict.WARN:
            return [Reply(text("flood", _hint_language(event)))]
        lock = self._locks.get(key) or self._locks.setdefault(key, asyncio.Lock())
        started = time.perf_counter()
        async with lock:
            replies = await self._with_retries(event)
        log.info("%s event %s handled in %.1fms", event.channel, event.kind, (time.perf_counter() - started) * 1000)
        return replies

    async def accept(self, channel: str, event_id: str, payload: dict[str, Any]) -> bool:
        """Store a received event to handle right after; False for one received before (a redelivery)."""
        try:
            async with self._db.writing(), self._db.sessions() as session, session.begin():
                return await records.accept_event(session, channel, event_id, payload)
        except SQLAlchemyError as exc:
            raise ConversationUnavailableError("the database is unavailable") from exc

    async def discard(self, channel: str, event_id: str) -> None:
        """Mark a stored event handled without a conversation (a group message, an unreadable update)."""
        try:
            async with self._db.writing(), self._db.sessions() as session, session.begin():
                await records.claim_event(session, channel, event_id, self._clock())
        except SQLAlchemyError as exc:
            raise ConversationUnavailableError("the database is unavailable") from exc

    async def unhandled(self, channel: str, *, older_than: timedelta, limit: int = 500) -> list[tuple[str, Any]]:
        """Events stored but never handled (the process stopped in between): (event id, payload), oldest first."""
        try:
            async with self._db.sessions() as session:
                return await records.unhandled_events(session, channel, self._clock() - older_than, limit)
        except SQLAlchemyError as exc:
            raise ConversationUnavailableError("the database is unavailable") from exc

    async def view(self, channel: str, user: str, *, language_hint: str | None = None) -> View:
        """Read the conversation so far and the current question, changing nothing."""
        try:
            async with self._db.sessions() as session, session.begin():
                turn = await self._begin(
                    session, Incoming(channel, user, Kind.TEXT, language=language_hint), read_only=True
                )
                if turn.conversation is None:
                    return View(turn.language, [], [], is_active=False)
                answers = await records.answers_of(session, turn.conversation.id)
                shown = exchanges(self.survey, self.taxonomy, answers, turn.language)
                return View(turn.language, shown, [self._current_prompt(turn)], is_active=True)
        except SQLAlchemyError as exc:
            raise ConversationUnavailableError("the database is unavailable") from exc

    async def opening(
        self, channel: str, payload: str, *, language_hint: str | None, count_start: bool
    ) -> list[Reply] | None:
        """The consent question for a branch link, or None when the link names no known branch."""
        language = _hint_language(Incoming("", "", Kind.TEXT, language=language_hint))
        try:
            async with self._db.sessions() as session, session.begin():
                place = await self._resolve(session, payload)
                if place is None:
                    return None
                if count_start:
                    await records.count_start(session, place, channel, self._clock())
                return [self._consent_prompt(place.payload, language)]
        except SQLAlchemyError as exc:
            raise ConversationUnavailableError("the database is unavailable") from exc

    async def _with_retries(self, event: Incoming) -> list[Reply]:
        for attempt in range(1, RETRIES + 1):
            try:
                async with self._db.writing(), self._db.sessions() as session, session.begin():
                    if event.event_id and not await records.claim_event(
                        session, event.channel, event.event_id, self._clock()
                    ):
                        return []
                    turn = await self._begin(session, event)
                    return await self._dispatch(turn)
            except (IntegrityError, StaleDataError):
                # Another process changed the same conversation first; run the event again on fresh state.
                if attempt == RETRIES:
                    raise ConversationUnavailableError("conflicting updates did not settle") from None
            except SQLAlchemyError as exc:
                raise ConversationUnavailableError("the database is unavailable") from exc
        raise AssertionError("unreachable")

    async def _begin(self, session: AsyncSession, event: Incoming, *, read_only: bool = False) -> Turn:
        now = self._clock()
        user_hash = records.hash_user(self._salt, event.channel, event.user)
        # Most events belong to an active conversation: one query finds (and locks) it with its respondent.
        conversation = await records.active_conversation(session, event.channel, user_hash, lock=not read_only)
        if conversation is not None:
            respondent = await session.get(Respondent, conversation.respondent_id)
        else:
            respondent = await records.find_respondent(session, event.channel, user_hash)
        if conversation is not None and conversation.updated_at < now - self._ttl:
            if not read_only:
                conversation.status = ConversationStatus.EXPIRED
            conversation = None
        language = respondent.language if respondent and respondent.language else _hint_language(event)
        return Turn(session, event, user_hash, respondent, conversation, language, now)

    async def _dispatch(self, turn: Turn) -> list[Reply]:
        match turn.event.kind:
            case Kind.COMMAND:
                return await self._command(turn)
            case Kind.CHOICE:
                return await self._button(turn)
            case Kind.EDITED:
                return [Reply(text("edited", turn.language))]
            case _ if turn.conversation is None:
                return [Reply(text("no_survey", turn.language))]
            case _:
                return await self._answer(turn)

    async def _command(self, turn: Turn) -> list[Reply]:
        match turn.event.command:
            case "start":
                return await self._start(turn, (turn.event.text or "").strip())
            case "language":
                options = (Button("English", buttons.language("en")), Button("中文", buttons.language("zh")))
                return [Reply(text("choose_language", turn.language), buttons=(options,), expects="buttons")]
            case "cancel":
                if turn.conversation is None:
                    return [Reply(text("no_survey", turn.language))]
                turn.conversation.status = ConversationStatus.CANCELLED
                return [Reply(text("cancelled", turn.language), clear_keyboard=True)]
            case "mydata":
                return [await self._my_data(turn)]
            case "forget":
                if turn.respondent is None:
                    return [Reply(text("no_data", turn.language))]
                row = (
                    Button(text("yes", turn.language), buttons.forget(True)),
                    Button(text("no", turn.language), buttons.forget(False)),
                )
                return [Reply(text("forget_confirm", turn.language), buttons=(row,), expects="buttons")]
            case _:
                return [Reply(text("help", turn.language))]

    async def _start(self, turn: Turn, payload: str) -> list[Reply]:
        if turn.conversation is not None:
            return [Reply(text("in_progress", turn.language)), self._current_prompt(turn)]
        if not payload:
            branches = await records.active_branches(turn.session, limit=12)
            name = "name_zh" if turn.language == "zh" else "name_en"
            choices = [Button(getattr(b, name), buttons.pick_branch(b.code)) for b in branches]
            rows = tuple(tuple(choices[i : i + 2]) for i in range(0, len(choices), 2))
            return [Reply(text("choose_branch", turn.language), buttons=rows, expects="buttons")]
        place = await self._resolve(turn.session, payload)
        if place is None:
            return [Reply(text("unknown_branch", turn.language))]
        if await self._responded_recently(turn, place.branch.id):
            return [Reply(text("already_responded", turn.language))]
        await records.count_start(turn.session, place, turn.event.channel, turn.now)
        return [self._consent_prompt(place.payload, turn.language)]

    async def _button(self, turn: Turn) -> list[Reply]:
        try:
            parsed = buttons.parse(turn.event.choice or "")
        except buttons.BadButtonError:
            log.info("unreadable button data on %s", turn.event.channel)
            return self._with_current_prompt(turn, text("bad_button", turn.language))
        match parsed:
            case buttons.Consent():
                return await self._consent(turn, parsed)
            case buttons.Language():
                return await self._set_language(turn, parsed)
            case buttons.PickBranch():
                return await self._start(turn, parsed.payload)
            case buttons.Forget():
                return await self._forget(turn, parsed.confirmed)
            case buttons.Answer():
                conversation = turn.conversation
                if conversation is None or (conversation.id, conversation.step) != (
                    parsed.conversation_id,
                    parsed.step,
                ):
                    return self._with_current_prompt(turn, text("stale_button", turn.language))
                turn.event = dataclasses.replace(turn.event, choice=parsed.value)
                return await self._answer(turn)
        raise AssertionError(parsed)

    async def _consent(self, turn: Turn, consent: buttons.Consent) -> list[Reply]:
        if turn.conversation is not None:
            return [Reply(text("in_progress", turn.language)), self._current_prompt(turn)]
        turn.language = consent.language
        start = self.survey.step(self.survey.start)
        if not consent.agreed:
            # Nothing is stored without consent: not the customer, not the answer, not the branch.
            declined = self._next_step_id(start, {start.id: False})
            return [Reply(self.survey.step(declined).text.get(turn.language))] if declined else []
        place = await self._resolve(turn.session, consent.payload)
        if place is None:
            return [Reply(text("unknown_branch", turn.language))]
        if await self._responded_recently(turn, place.branch.id):
            return [Reply(text("already_responded", turn.language))]
        turn.respondent = await self._consenting_respondent(turn)
        conversation = Conversation(
            respondent_id=turn.respondent.id,
            channel=turn.event.channel,
            branch_id=place.branch.id,
            counter_id=place.counter.id if place.counter else None,
            source="link",
            step=start.id,
            state={},
            started_at=turn.now,
            updated_at=turn.now,
        )
        turn.session.add(conversation)
        await turn.session.flush()
        turn.conversation = conversation
        await self._save_answer(turn, start.id, True)
        return await self._advance(turn, start)

    async def _consenting_respondent(self, turn: Turn) -> Respondent:
        respondent = turn.respondent
        if respondent is None:
            respondent = Respondent(channel=turn.event.channel, user_hash=turn.user_hash)
            turn.session.add(respondent)
        respondent.language = turn.language
        respondent.consent_at = turn.now
        respondent.consent_version = str(self.survey.version)
        await turn.session.flush()
        return respondent

    async def _answer(self, turn: Turn) -> list[Reply]:
        conversation = turn.conversation
        assert conversation is not None
        step = self.survey.step(conversation.step)
        offered = tuple(conversation.state.get("offered", ()))
        result = interpret(step, turn.event, language=turn.language, offered=offered)
        if not isinstance(result, Accepted):
            return self._with_current_prompt(turn, result.notice or text("bad_button", turn.language))
        await self._save_answer(turn, step.id, result.value)
        replies = [Reply(notice) for notice in result.notices] + await self._advance(turn, step)
        if step.type is StepType.CONTACT and replies:
            replies[0] = dataclasses.replace(replies[0], clear_keyboard=True)
        return replies

    async def _advance(self, turn: Turn, step: Step) -> list[Reply]:
        """Move past `step`: say any message steps on the way, stop at the next question or finish."""
        conversation = turn.conversation
        assert conversation is not None
        answers = dict(conversation.state.get("answers", {}))
        replies: list[Reply] = []
        next_id = self._next_step_id(step, answers)
        while next_id is not None:
            current = self.survey.step(next_id)
            conversation.step = current.id
            conversation.updated_at = turn.now
            if current.type is StepType.MESSAGE:
                replies.append(Reply(current.text.get(turn.language)))
                next_id = current.next
                continue
            if current.reply_consent and conversation.channel not in self._reply_channels:
                # No address to write to on this channel: the question would promise nothing. Nothing is stored.
                next_id = self._next_step_id(current, answers)
                continue
            if current.type is StepType.FOLLOWUP:
                comment = _latest_comment(self.survey, answers)
                # A model ranks in a thread: its few milliseconds must not hold up other customers.
                ranked = await asyncio.to_thread(self._ranker.rank, comment)
                decision = decide_followup(ranked, self.taxonomy, comment)
                if not decision.ask:
                    await self._save_answer(turn, current.id, None)
                    answers[current.id] = None
                    next_id = self._next_step_id(current, answers)
                    continue
                conversation.state = {**conversation.state, "offered": list(decision.offered)}
            replies.append(self._current_prompt(turn))
            return replies
        await self._complete(turn, answers)
        return replies

    async def _save_answer(self, turn: Turn, step_id: str, value: Any) -> None:
        """Write the answer row and keep a copy in the conversation's state, which branching reads."""
        conversation = turn.conversation
        assert conversation is not None
        await records.save_answer(turn.session, conversation, step_id, value, turn.now)
        answers = {**conversation.state.get("answers", {}), step_id: value}
        conversation.state = {**conversation.state, "answers": answers}

    def _next_step_id(self, step: Step, answers: dict[str, Any]) -> str | None:
        for branch in step.branches:
            value = answers.get(branch.step or step.id)
            if _matches(branch, value):
                return branch.goto
        return step.next

    async def _complete(self, turn: Turn, answers: dict[str, Any]) -> None:
        conversation = turn.conversation
        assert conversation is not None
        conversation.status = ConversationStatus.COMPLETED
        conversation.completed_at = turn.now
        feedback = records.add_feedback(turn.session, self.survey, conversation, answers, turn.language, turn.now)
        if conversation.channel in self._reply_channels and reply_consent.has_agreed(self.survey, answers):
            reply_consent.record_consent(feedback, turn.event.user, turn.now)

    async def _set_language(self, turn: Turn, choice: buttons.Language) -> list[Reply]:
        turn.language = choice.language
        if turn.respondent is not None:
            turn.respondent.language = choice.language
        replies = [Reply(text("language_set", turn.language))]
        if turn.conversation is not None:
            replies.append(self._current_prompt(turn))
        elif choice.payload and await self._resolve(turn.session, choice.payload):
            replies.append(self._consent_prompt(choice.payload, turn.language))
        return replies

    async def _forget(self, turn: Turn, confirmed: bool) -> list[Reply]:
        if not confirmed:
            return [Reply(text("forget_kept", turn.language))]
        if turn.respondent is None:
            return [Reply(text("no_data", turn.language))]
        await records.erase_respondent(turn.session, turn.respondent)
        turn.respondent = turn.conversation = None
        return [Reply(text("forgotten", turn.language), clear_keyboard=True)]

    async def _my_data(self, turn: Turn) -> Reply:
        respondent = turn.respondent
        if respondent is None:
            return Reply(text("no_data", turn.language))
        lines = [text("mydata_header", turn.language)]
        consent_date = respondent.consent_at.date().isoformat() if respondent.consent_at else "—"
        lines.append(text("mydata_consent", turn.language, date=consent_date, lang=respondent.language or "—"))
        reply_consents = await reply_consent.consents_of(turn.session, respondent)
        for conversation, branch in await records.conversations_of(turn.session, respondent):
            branch_name = branch.name_zh if turn.language == "zh" else branch.name_en
            date = conversation.started_at.date().isoformat()
            status = text(f"status_{conversation.status}", turn.language)
            lines.append(text("mydata_conversation", turn.language, date=date, branch=branch_name, status=status))
            if conversation.id in reply_consents:
                agreed = reply_consents[conversation.id].date().isoformat()
                lines.append(text("mydata_reply", turn.language, date=agreed))
            answers = await records.answers_of(turn.session, conversation.id)
            lines.extend(
                f"   {e.question} → {e.answer}" for e in exchanges(self.survey, self.taxonomy, answers, turn.language)
            )
        return Reply("\n".join(lines))

    async def _responded_recently(self, turn: Turn, branch_id: int) -> bool:
        since = turn.now - timedelta(days=self.survey.repeat_window_days)
        return self.survey.repeat_window_days > 0 and await records.responded_recently(
            turn.session, turn.respondent, branch_id, since
        )

    async def _resolve(self, session: AsyncSession, payload: str) -> records.Place | None:
        """Look a deep-link payload up, remembering the answer for a minute (branches change at restarts)."""
        cached = self._places.get(payload)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        place = await records.resolve_payload(session, payload)
        if len(self._places) > 10_000:
            self._places.clear()  # forged payloads must not grow this without bound
        self._places[payload] = (time.monotonic() + PLACE_CACHE_SECONDS, place)
        return place

    def _consent_prompt(self, payload: str, language: str) -> Reply:
        start = self.survey.step(self.survey.start)
        other = "en" if language == "zh" else "zh"
        answer_row = (
            Button(text("yes", language), buttons.consent(True, payload, language)),
            Button(text("no", language), buttons.consent(False, payload, language)),
        )
        language_row = (Button(text("switch_language", language), buttons.language(other, payload)),)
        return Reply(start.text.get(language), buttons=(answer_row, language_row), expects="buttons")

    def _current_prompt(self, turn: Turn) -> Reply:
        conversation = turn.conversation
        assert conversation is not None
        return prompt(
            self.survey.step(conversation.step),
            conversation_id=conversation.id,
            language=turn.language,
            offered=tuple(conversation.state.get("offered", ())),
            taxonomy=self.taxonomy,
        )

    def _with_current_prompt(self, turn: Turn, notice: str) -> list[Reply]:
        replies = [Reply(notice)]
        if turn.conversation is not None:
            replies.append(self._current_prompt(turn))
        return replies


def _matches(branch: Any, value: Any) -> bool:
    if branch.equals is not None:
        expected = {"yes": True, "no": False}.get(branch.equals, branch.equals)
        if value != expected:
            return False
    if branch.min is not None or branch.max is not None:
        if not isinstance(value, int) or isinstance(value, bool):
            return False
        if branch.min is not None and value < branch.min:
            return False
        if branch.max is not None and value > branch.max:
            return False
    return True


def _latest_comment(survey: Survey, answers: dict[str, Any]) -> str:
    texts = [answers[s.id] for s in survey.steps if s.type is StepType.TEXT and isinstance(answers.get(s.id), str)]
    return texts[-1] if texts else ""


def _hint_language(event: Incoming) -> str:
    return pick_language(event.language)
