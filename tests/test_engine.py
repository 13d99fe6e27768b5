"""The conversation engine on its own, over SQLite and PostgreSQL: paths, bad input, privacy, restarts."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from bot.engine import Engine
from bot.events import Incoming, Kind, Reply
from bot.flood import FloodGuard
from bot.script import Survey
from config.app import branch_specs, load_catalog
from config.files import parse_file
from config.settings import load_settings
from store import Database, sync_branches
from store.models import Answer, Conversation, ConversationStatus, Feedback, Respondent, SurveyStart

SALT = b"test-salt"


@pytest.fixture
def catalog():
    return load_catalog(load_settings({}))


@pytest.fixture
async def engine(db: Database, catalog) -> Engine:
    await sync_branches(db, branch_specs(catalog.branches))
    return Engine(db, catalog.survey, catalog.taxonomy, salt=SALT)


class Customer:
    """A customer in one channel, with helpers that read like what they do."""

    _ids: Iterator[int] = itertools.count(1)

    def __init__(self, engine: Engine, user: str = "1001", *, language: str = "en", channel: str = "telegram"):
        self.engine, self.user, self.language, self.channel = engine, user, language, channel
        self.last: list[Reply] = []

    async def send(self, kind: Kind, **fields) -> list[Reply]:
        fields.setdefault("event_id", f"e{next(self._ids)}")
        event = Incoming(self.channel, self.user, kind, language=self.language, **fields)
        self.last = await self.engine.handle(event)
        return self.last

    async def command(self, name: str, argument: str = "") -> list[Reply]:
        return await self.send(Kind.COMMAND, command=name, text=argument)

    async def says(self, words: str) -> list[Reply]:
        return await self.send(Kind.TEXT, text=words)

    async def presses(self, label: str) -> list[Reply]:
        """Press the button labelled `label` in the latest replies."""
        for reply in reversed(self.last):
            for row in reply.buttons:
                for button in row:
                    if button.label == label:
                        return await self.send(Kind.CHOICE, choice=button.data)
        raise AssertionError(f"no button {label!r} in {[r.text for r in self.last]}")

    @property
    def texts(self) -> list[str]:
        return [r.text for r in self.last]


async def count(db: Database, model) -> int:
    async with db.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model))


async def only_feedback(db: Database) -> Feedback:
    async with db.sessions() as session:
        return (await session.scalars(select(Feedback))).one()


async def test_happy_customer_is_thanked_and_feedback_is_stored(engine, db):
    alice = Customer(engine)
    await alice.command("start", "MAIN-C1")
    assert alice.texts[0].startswith("Hi! We'd love to hear about your visit")
    await alice.presses("Yes")
    assert alice.texts == [
        "Overall, how satisfied are you with today's visit? (1 = very dissatisfied, 5 = very satisfied)"
    ]
    await alice.presses("5")
    assert alice.texts == ["Great to hear! What went well?"]
    await alice.says("The teller was friendly and explained the fees clearly")
    # The comment names its subject, so the follow-up is skipped and the survey ends.
    assert alice.texts == ["Thank you! Your feedback goes to the branch team, and we review every comment each week."]
    feedback = await only_feedback(db)
    assert (feedback.csat, feedback.language, feedback.callback_requested) == (5, "en", False)
    assert feedback.comment == "The teller was friendly and explained the fees clearly"
    assert feedback.analysis_status == "pending"
    assert feedback.counter_id is not None


async def test_unhappy_chinese_customer_gets_followup_and_callback(engine, db):
    wang = Customer(engine, "2002", language="zh-hans")
    await wang.command("start", "EAST")
    assert "可以开始吗" in wang.texts[0]
    await wang.presses("是")
    await wang.presses("2")
    assert wang.texts == ["很抱歉给您带来不好的体验。请问哪里做得不好？"]
    await wang.says("太差了")
    assert wang.texts == ["谢谢。主要是关于以下哪个方面？"], "a vague comment gets the follow-up"
    await wang.presses("等候时间")
    assert wang.texts == ["需要我们的工作人员给您回电吗？"]
    await wang.presses("是")
    assert wang.last[0].ask_contact
    await wang.send(Kind.CONTACT, text="+86 138 0013 8000")
    assert wang.texts == ["谢谢您！工作人员通常会在一个工作日内给您回电。"]
    assert wang.last[0].clear_keyboard
    feedback = await only_feedback(db)
    assert (feedback.csat, feedback.language, feedback.customer_category) == (2, "zh", "waiting_time")
    assert (feedback.callback_requested, feedback.contact_phone) == (True, "+8613800138000")


async def test_declining_consent_stores_nothing_about_the_person(engine, db):
    bob = Customer(engine, "3003")
    await bob.command("start", "MAIN")
    await bob.presses("No")
    assert bob.texts == ["No problem, nothing has been stored. Have a good day!"]
    assert [await count(db, m) for m in (Respondent, Conversation, Answer, Feedback)] == [0, 0, 0, 0]
    async with db.sessions() as session:
        assert await session.scalar(select(SurveyStart.count)) == 1, "only the anonymous start is counted"


async def test_unknown_branch_link_is_explained(engine):
    eve = Customer(engine)
    await eve.command("start", "NOPE-XYZ")
    assert eve.texts == ["Sorry, I don't recognise that branch link. Please scan the QR code at the branch again."]


async def test_start_without_a_link_offers_the_branches(engine):
    eve = Customer(engine)
    await eve.command("start")
    assert [b.label for row in eve.last[0].buttons for b in row] == ["East Lake Branch", "Main Street Branch"]
    await eve.presses("Main Street Branch")
    assert eve.texts[0].startswith("Hi! We'd love")


async def test_stale_and_forged_buttons_keep_the_state(engine, db):
    carol = Customer(engine)
    await carol.command("start", "MAIN")
    await carol.presses("Yes")
    rating_buttons = carol.last
    await carol.presses("4")
    carol.last = rating_buttons
    await carol.presses("1")
    assert carol.texts == [
        "That button belongs to an earlier question. Here is the current one:",
        "Great to hear! What went well?",
    ]
    for forged in ["a|zz|csat|99", "k|y|../../etc|en", "x" * 200, "", "a|1|what_went_well|DROP TABLE"]:
        await carol.send(Kind.CHOICE, choice=forged)
        assert carol.texts[0] in {
            "Sorry, I couldn't read that button.",
            "That button belongs to an earlier question. Here is the current one:",
        }
        assert carol.texts[-1] == "Great to hear! What went well?"
    async with db.sessions() as session:
        assert await session.scalar(select(Answer.value).where(Answer.step == "csat")) == 4


async def test_media_where_text_is_expected_gets_a_hint(engine):
    dan = Customer(engine)
    await dan.command("start", "MAIN")
    await dan.presses("Yes")
    await dan.presses("3")
    await dan.send(Kind.UNSUPPORTED)
    assert dan.texts == [
        "I can only read text here — please type your answer.",
        "Sorry it wasn't better. What went wrong?",
    ]
    await dan.send(Kind.EDITED, text="changed")
    assert dan.texts[0].startswith("I saw you edited a message")
    await dan.says("The queue was far too long and only one counter was open")
    assert dan.texts == ["Thank you! Your feedback goes to the branch team, and we review every comment each week."]


async def test_huge_message_is_truncated_with_a_notice(engine, db):
    fay = Customer(engine)
    await fay.command("start", "MAIN")
    await fay.presses("Yes")
    await fay.presses("3")
    await fay.says("waiting " * 12_500)  # 100,000 characters
    assert fay.texts[0] == "Your message was long, so I kept the first 2000 characters."
    feedback = await only_feedback(db)
    assert len(feedback.comment) <= 2000


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("", "empty"),
        ("   \n\t ", "empty"),
        ("\x00\x07\x1b[31m", "stored"),
        ("\u200b\u202e", "empty"),
        ("😡😡😡", "stored"),
    ],
    ids=["empty", "whitespace", "control-chars", "invisible", "emoji-only"],
)
async def test_empty_or_strange_text(engine, db, message, expected):
    gus = Customer(engine)
    await gus.command("start", "MAIN")
    await gus.presses("Yes")
    await gus.presses("3")
    await gus.says(message)
    if expected == "empty":
        assert gus.texts[0] == "That message looks empty. Could you tell me in a few words?"
        assert await count(db, Answer) == 2, "consent and rating only"
    else:
        assert gus.texts[0] != "That message looks empty. Could you tell me in a few words?"
        async with db.sessions() as session:
            stored = await session.scalar(select(Answer.value).where(Answer.step == "what_went_wrong"))
        assert "\x00" not in stored
        assert "\x1b" not in stored


async def test_card_and_phone_numbers_are_masked_before_storage(engine, db):
    hal = Customer(engine)
    await hal.command("start", "MAIN")
    await hal.presses("Yes")
    await hal.presses("4")
    await hal.says("My card 4111 1111 1111 1111 was fine, call me on 13800138000 or mail a@b.cn about the staff")
    async with db.sessions() as session:
        stored = await session.scalar(select(Answer.value).where(Answer.step == "what_went_well"))
    assert "4111" not in stored
    assert "13800138000" not in stored
    assert "a@b.cn" not in stored
    assert "[CARD]" in stored
    assert "[PHONE]" in stored


async def test_typed_answers_work_where_buttons_are_offered(engine):
    ivy = Customer(engine)
    await ivy.command("start", "MAIN")
    await ivy.presses("Yes")
    await ivy.says("9")
    assert ivy.texts[0] == "Please answer with a number from 1 to 5, or use the buttons."
    await ivy.says("4")
    assert ivy.texts == ["Great to hear! What went well?"]


async def test_redelivered_event_is_handled_once(engine, db):
    jay = Customer(engine)
    await jay.command("start", "MAIN")
    await jay.presses("Yes")
    event = Incoming("telegram", jay.user, Kind.TEXT, text="2", event_id="update-77")
    assert await engine.handle(event)
    assert await engine.handle(event) == []
    async with db.sessions() as session:
        assert await session.scalar(select(func.count()).where(Answer.step == "csat")) == 1
        assert await session.scalar(select(Conversation.step)) == "what_went_wrong"


async def test_start_in_the_middle_continues_the_survey(engine):
    kim = Customer(engine)
    await kim.command("start", "MAIN")
    await kim.presses("Yes")
    await kim.command("start", "EAST")
    assert kim.texts[0].startswith("You have a survey in progress")
    assert kim.texts[1].startswith("Overall, how satisfied")


async def test_one_completed_survey_per_branch_per_window(engine):
    lee = Customer(engine)
    await lee.command("start", "MAIN")
    await lee.presses("Yes")
    await lee.presses("5")
    await lee.presses("Skip")
    await lee.presses("Something else")
    await lee.command("start", "MAIN-C2")
    assert lee.texts == ["You've already shared feedback about this branch recently. Thank you — we're on it!"]
    await lee.command("start", "EAST")
    assert lee.texts[0].startswith("Hi!"), "another branch is fine"


async def test_cancel_mydata_and_forget(engine, db):
    may = Customer(engine)
    await may.command("start", "MAIN")
    await may.presses("Yes")
    await may.presses("2")
    await may.says("Rude staff, call me 13912345678")
    await may.command("mydata")
    assert "Rude staff, call me [PHONE]" in may.texts[0]
    await may.command("cancel")
    assert may.texts == ["OK, I've stopped the survey. Thank you for your time."]
    await may.command("forget")
    await may.presses("Yes")
    assert may.texts == ["Done: your data has been erased."]
    assert [await count(db, m) for m in (Respondent, Answer)] == [0, 0]
    await may.command("mydata")
    assert may.texts == ["We hold no data about you."]


async def test_forget_keeps_ratings_but_not_words(engine, db):
    ned = Customer(engine)
    await ned.command("start", "MAIN")
    await ned.presses("Yes")
    await ned.presses("5")
    await ned.says("Excellent advice from the wealth manager, very clear explanation")
    await ned.command("forget")
    await ned.presses("Yes")
    feedback = await only_feedback(db)
    assert (feedback.csat, feedback.comment, feedback.respondent_id) == (5, None, None)


async def test_language_can_be_switched(engine):
    oli = Customer(engine)
    await oli.command("start", "MAIN")
    await oli.presses("中文")
    assert oli.texts[0] == "好的，之后我会用中文。"
    assert "可以开始吗" in oli.texts[1]
    await oli.presses("是")
    assert oli.texts[0].startswith("总体来说")


async def test_a_new_engine_resumes_at_the_same_step(engine, db, catalog, database_url):
    pam = Customer(engine)
    await pam.command("start", "MAIN")
    await pam.presses("Yes")
    await pam.presses("1")
    restarted = Database(database_url)
    try:
        pam.engine = Engine(restarted, catalog.survey, catalog.taxonomy, salt=SALT)
        await pam.says("hmm")
        assert pam.texts[0] == "Thanks. Which of these was it mostly about?"
    finally:
        await restarted.dispose()


async def test_flood_gets_one_warning_then_silence(db, catalog):
    engine = Engine(
        db, catalog.survey, catalog.taxonomy, salt=SALT, flood=FloodGuard(limit=3, seconds=10, clock=lambda: 0.0)
    )
    await sync_branches(db, branch_specs(catalog.branches))
    rex = Customer(engine)
    replies = [await rex.command("help") for _ in range(5)]
    assert [len(r) for r in replies] == [1, 1, 1, 1, 0]
    assert replies[3][0].text.startswith("You're sending messages very quickly")


async def test_conversation_state_is_written_at_every_step(engine, db):
    quin = Customer(engine)
    await quin.command("start", "MAIN")
    await quin.presses("Yes")
    async with db.sessions() as session:
        conversation = (await session.scalars(select(Conversation))).one()
    assert (conversation.step, conversation.status) == ("csat", ConversationStatus.ACTIVE)
    await quin.presses("3")
    async with db.sessions() as session:
        assert await session.scalar(select(Conversation.step)) == "what_went_wrong"


async def test_an_abandoned_conversation_expires_and_a_new_one_can_start(db, catalog):
    now = [datetime(2026, 11, 24, 9, 0, tzinfo=UTC)]
    await sync_branches(db, branch_specs(catalog.branches))
    engine = Engine(db, catalog.survey, catalog.taxonomy, salt=SALT, clock=lambda: now[0])
    ray = Customer(engine)
    await ray.command("start", "MAIN")
    await ray.presses("Yes")
    now[0] += timedelta(hours=25)
    view = await engine.view("telegram", ray.user)
    assert not view.is_active
    async with db.sessions() as session:
        assert await session.scalar(select(Conversation.status)) == ConversationStatus.ACTIVE, "a view changes nothing"
    await ray.command("start", "MAIN")
    assert ray.texts[0].startswith("Hi! We'd love")
    async with db.sessions() as session:
        assert await session.scalar(select(Conversation.status)) == ConversationStatus.EXPIRED


CUSTOM_SURVEY = """
start = "consent"
repeat_window_days = 0
[[steps]]
id = "consent"
type = "yes_no"
text = { en = "OK?", zh = "好吗？" }
next = "visit"
[[steps]]
id = "visit"
type = "choice"
text = { en = "What brought you in?", zh = "您来办理什么业务？" }
options = [
  { id = "cash", label = { en = "Cash", zh = "现金" } },
  { id = "loan", label = { en = "A loan", zh = "贷款" } },
]
branches = [{ equals = "loan", goto = "effort" }]
next = "nps"
[[steps]]
id = "effort"
type = "rating"
scale = "ces"
text = { en = "How easy was it?", zh = "办理是否方便？" }
next = "nps"
[[steps]]
id = "nps"
type = "rating"
scale = "nps"
text = { en = "Would you recommend us?", zh = "您会推荐我们吗？" }
branches = [{ min = 9, goto = "bye" }, { step = "visit", equals = "loan", goto = "why" }]
next = "bye"
[[steps]]
id = "why"
type = "text"
text = { en = "Why?", zh = "为什么？" }
next = "bye"
[[steps]]
id = "bye"
type = "message"
text = { en = "Bye!", zh = "再见！" }
"""


@pytest.mark.parametrize(
    ("visit", "effort", "nps", "path"),
    [
        ("Cash", None, "10", ["What brought you in?", "Would you recommend us?", "Bye!"]),
        ("A loan", "6", "3", ["What brought you in?", "How easy was it?", "Would you recommend us?", "Why?", "Bye!"]),
        ("A loan", "2", "9", ["What brought you in?", "How easy was it?", "Would you recommend us?", "Bye!"]),
    ],
    ids=["cash-promoter", "loan-detractor", "loan-promoter"],
)
async def test_choice_nps_ces_and_branching_on_another_steps_answer(db, catalog, tmp_path, visit, effort, nps, path):
    survey_file = tmp_path / "survey.toml"
    survey_file.write_text(CUSTOM_SURVEY, encoding="utf-8")
    survey = parse_file(Survey, survey_file)
    await sync_branches(db, branch_specs(catalog.branches))
    engine = Engine(db, survey, catalog.taxonomy, salt=SALT)
    tia = Customer(engine)
    await tia.command("start", "MAIN")
    seen = []
    await tia.presses("Yes")
    seen += tia.texts
    await tia.presses(visit)
    seen += tia.texts
    if effort:
        await tia.presses(effort)
        seen += tia.texts
    assert len(tia.last[0].buttons) == 2, "NPS 0-10 comes as two rows"
    await tia.presses(nps)
    seen += tia.texts
    if seen[-1] == "Why?":
        await tia.says("Too much paperwork for the loan")
        seen += tia.texts
    assert seen == path
    feedback = await only_feedback(db)
    assert (feedback.nps, feedback.ces, feedback.csat) == (int(nps), int(effort) if effort else None, None)
