"""The web chat through the real app factory: plain form posts and JSON, both languages, both databases."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

import pytest
from sqlalchemy import func, select

from bot.channels.keys import ENGINE
from bot.engine import ConversationUnavailableError
from config.app import create_app, load_catalog
from config.settings import load_settings
from store import Database
from store.models import Answer, Feedback, SurveyStart

BRANCH_PAGE = "/c/MAIN/C1"
ZH = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}
JSON = {"Accept": "application/json"}


@dataclass
class ParsedForm:
    action: str
    hidden: dict[str, str] = field(default_factory=dict)
    buttons: list[tuple[str, str, str]] = field(default_factory=list)  # label, name, value
    fields: list[str] = field(default_factory=list)  # names of visible inputs and textareas


class PageParser(HTMLParser):
    """Just enough of the page: its forms, their buttons and the chat bubbles' texts."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[ParsedForm] = []
        self.bubbles: list[str] = []
        self.lang = ""
        self._button: dict[str, str] | None = None
        self._bubble: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        if tag == "html":
            self.lang = attrs.get("lang", "")
        elif tag == "form":
            self.forms.append(ParsedForm(attrs["action"]))
        elif tag == "input" and attrs.get("type") == "hidden":
            self.forms[-1].hidden[attrs["name"]] = attrs["value"]
        elif tag in ("input", "textarea"):
            self.forms[-1].fields.append(attrs["name"])
        elif tag == "button":
            self._button = {"name": attrs.get("name", ""), "value": attrs.get("value", ""), "label": ""}
        elif tag == "li" and "bubble" in attrs.get("class", ""):
            self._bubble = []

    def handle_data(self, data):
        if self._button is not None:
            self._button["label"] += data
        if self._bubble is not None:
            self._bubble.append(data)

    def handle_endtag(self, tag):
        if tag == "button" and self._button is not None:
            b = self._button
            self.forms[-1].buttons.append((b["label"].strip(), b["name"], b["value"]))
            self._button = None
        elif tag == "li" and self._bubble is not None:
            self.bubbles.append("".join(self._bubble))
            self._bubble = None


def bubbles_of(html: str) -> list[str]:
    parser = PageParser()
    parser.feed(html)
    return parser.bubbles


@dataclass
class Visitor:
    """A browser without scripts: it loads the page and posts its forms as they are."""

    client: object
    path: str = BRANCH_PAGE
    headers: dict[str, str] = field(default_factory=dict)
    html: str = ""
    status: int = 0

    @property
    def page(self) -> PageParser:
        parser = PageParser()
        parser.feed(self.html)
        return parser

    async def open(self, path: str | None = None) -> Visitor:
        self.path = path or self.path
        response = await self.client.get(self.path, headers=self.headers)
        self.status, self.html = response.status, await response.text()
        return self

    async def post(self, fields: dict[str, str], *, form: ParsedForm | None = None) -> Visitor:
        form = form or self.page.forms[0]
        response = await self.client.post(form.action, data={**form.hidden, **fields}, headers=self.headers)
        self.status, self.html = response.status, await response.text()
        return self

    async def press(self, label: str) -> Visitor:
        for form in self.page.forms:
            for text, name, value in form.buttons:
                if text == label:
                    return await self.post({name: value}, form=form)
        raise AssertionError(f"no button {label!r} on the page; bubbles: {self.page.bubbles}")

    async def type(self, text: str) -> Visitor:
        return await self.post({"text": text})

    async def share_phone(self, number: str) -> Visitor:
        return await self.post({"phone": number})

    def button_labels(self) -> list[str]:
        return [label for form in self.page.forms for label, _, _ in form.buttons]

    def says(self, text: str) -> bool:
        return any(text in bubble for bubble in self.page.bubbles)


@pytest.fixture
def settings(database_url, tmp_path):
    return load_settings(
        {
            "CLOSELOOP_DATABASE_URL": database_url,
            "CLOSELOOP_DATA_DIR": str(tmp_path / "data"),
            "CLOSELOOP_NLP_WORKER": "false",  # these tests need no model
        }
    )


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(settings, load_catalog(settings)))


@pytest.fixture
def visitor(client) -> Visitor:
    return Visitor(client)


async def count(database_url: str, model, *where) -> int:
    database = Database(database_url)
    try:
        async with database.sessions() as session:
            return await session.scalar(select(func.count()).select_from(model).where(*where))
    finally:
        await database.dispose()


async def only_feedback(database_url: str) -> Feedback:
    database = Database(database_url)
    try:
        async with database.sessions() as session:
            return (await session.scalars(select(Feedback))).one()
    finally:
        await database.dispose()


async def starts(database_url: str) -> int:
    database = Database(database_url)
    try:
        async with database.sessions() as session:
            return await session.scalar(select(func.coalesce(func.sum(SurveyStart.count), 0))) or 0
    finally:
        await database.dispose()


async def answer_followup_if_asked(visitor: Visitor, other: str) -> None:
    if other in visitor.button_labels():
        await visitor.press(other)


async def test_whole_survey_in_english_as_plain_forms_stores_feedback(visitor, database_url):
    await visitor.open()
    assert visitor.status == 200
    assert visitor.page.lang == "en"
    assert visitor.says("OK to continue?")
    await visitor.press("Yes")
    assert visitor.says("how satisfied are you")
    await visitor.press("1")
    await visitor.type("The queue was slow and nobody explained anything")
    await answer_followup_if_asked(visitor, "Something else")
    assert visitor.says("call you back")
    await visitor.press("Yes")
    assert "phone" in visitor.page.forms[0].fields
    await visitor.share_phone("+86 138 0013 8000")
    assert visitor.status == 200
    assert visitor.says("A member of staff will call you back")
    assert visitor.says("+8613800138000"), "the last answer stays in the transcript"
    feedback = await only_feedback(database_url)
    assert (feedback.csat, feedback.callback_requested, feedback.contact_phone) == (1, True, "+8613800138000")
    assert feedback.language == "en"
    assert feedback.comment == "The queue was slow and nobody explained anything"


async def test_whole_survey_in_chinese_follows_the_browser_language(client, database_url):
    visitor = Visitor(client, headers=ZH)
    await visitor.open()
    assert visitor.page.lang == "zh-CN"
    assert visitor.says("可以开始吗")
    await visitor.press("是")
    await visitor.press("5")
    await visitor.type("柜员服务很耐心，办理很快")
    await answer_followup_if_asked(visitor, "其他")
    assert visitor.says("谢谢您！您的意见会转给网点团队")
    assert visitor.page.lang == "zh-CN"
    feedback = await only_feedback(database_url)
    assert (feedback.csat, feedback.language, feedback.comment) == (5, "zh", "柜员服务很耐心，办理很快")


async def test_language_switch_in_the_footer_is_remembered_before_consent(visitor):
    await visitor.open()
    await visitor.press("中文")
    assert visitor.page.lang == "zh-CN"
    assert visitor.says("好的，之后我会用中文。")
    assert visitor.says("可以开始吗")
    await visitor.open()
    assert visitor.says("可以开始吗"), "a reload keeps the chosen language"


async def test_reload_mid_survey_shows_the_transcript_and_the_open_question(visitor):
    await visitor.open()
    await visitor.press("Yes")
    await visitor.press("4")
    await visitor.open()
    bubbles = visitor.page.bubbles
    assert bubbles[-3:-1] == [
        "Overall, how satisfied are you with today's visit? (1 = very dissatisfied, 5 = very satisfied)",
        "4",
    ]
    assert bubbles[-1] == "Great to hear! What went well?"
    assert "text" in visitor.page.forms[0].fields


async def test_unknown_branch_gets_a_friendly_404_page(visitor):
    await visitor.open("/c/NOWHERE")
    assert visitor.status == 404
    assert visitor.says("I don't recognise that branch link")
    zh = Visitor(visitor.client, headers=ZH)
    await zh.open("/c/NOWHERE")
    assert zh.status == 404
    assert zh.says("无法识别这个网点链接")


@pytest.mark.parametrize("path", ["/c/MAIN/NOPE", "/c/EAST/VIP", "/c/MA%20IN", "/c/" + "A" * 25])
async def test_unknown_counter_or_malformed_code_gets_404(visitor, path):
    await visitor.open(path)
    assert visitor.status == 404
    assert visitor.says("scan the QR code at the branch again")


async def test_post_without_or_with_a_wrong_csrf_token_is_refused(visitor, database_url):
    await visitor.open()
    form = visitor.page.forms[0]
    for csrf in ("", "x" * 32, None):
        fields = {**form.hidden, "choice": "k|y|MAIN-C1|en"}
        if csrf is None:
            del fields["csrf"]
        else:
            fields["csrf"] = csrf
        response = await visitor.client.post(BRANCH_PAGE, data=fields)
        assert response.status == 403
        assert "reload the page" in await response.text()
    assert await count(database_url, Answer) == 0


async def test_post_without_cookies_is_refused(visitor):
    await visitor.open()
    hidden = visitor.page.forms[0].hidden
    visitor.client.session.cookie_jar.clear()
    response = await visitor.client.post(BRANCH_PAGE, data={**hidden, "choice": "k|y|MAIN-C1|en"})
    assert response.status == 403


async def test_the_same_nonce_posted_twice_is_handled_once(visitor, database_url):
    await visitor.open()
    await visitor.press("Yes")
    form = visitor.page.forms[0]
    five = next(value for label, _, value in form.buttons if label == "5")
    await visitor.post({"choice": five}, form=form)
    first = visitor.page.bubbles
    await visitor.post({"choice": five}, form=form)  # the browser's "resend", or a double tap
    assert visitor.status == 200
    assert not visitor.says("earlier question"), "a second handling would have said the button is stale"
    assert visitor.page.bubbles == first
    assert await count(database_url, Answer) == 2  # consent and csat


async def test_typed_markup_is_escaped_and_card_numbers_are_masked(visitor):
    await visitor.open()
    await visitor.press("Yes")
    await visitor.press("5")
    await visitor.type("<script>alert(1)</script> paid with 4111 1111 1111 1111")
    assert "<script>alert(1)</script>" not in visitor.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in visitor.html
    assert visitor.says("<script>alert(1)</script> paid with [CARD]")
    assert "4111" not in visitor.html


async def test_json_mode_answers_json(visitor):
    await visitor.open()
    form = visitor.page.forms[0]
    response = await visitor.client.post(BRANCH_PAGE, data={**form.hidden, "choice": "k|y|MAIN-C1|en"}, headers=JSON)
    assert response.status == 200
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["done"] is False
    assert body["exchanges"][0]["answer"] == "Yes"
    assert body["prompt"][0]["expects"] == "buttons"
    assert [b["label"] for b in body["prompt"][0]["buttons"][0]] == ["1", "2", "3", "4", "5"]
    assert body["nonce"] != form.hidden["nonce"]
    assert body["replies"] == []


async def test_json_errors_are_json(visitor):
    await visitor.open()
    response = await visitor.client.post(BRANCH_PAGE, data={"choice": "k|y|MAIN-C1|en"}, headers=JSON)
    assert response.status == 403
    assert "error" in await response.json()


async def test_a_100000_character_comment_is_truncated_with_a_notice(visitor, database_url):
    await visitor.open()
    await visitor.press("Yes")
    await visitor.press("2")
    await visitor.type("slow " * 20_000)
    assert visitor.status == 200
    assert visitor.says("Your message was long, so I kept the first 2000 characters.")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"text=\xff\xfe\x00garbage", "application/x-www-form-urlencoded"),
        (b"text=%FF%FE", "application/x-www-form-urlencoded"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "application/octet-stream"),
        (b"text=hello", "application/x-www-form-urlencoded; charset=latin-1"),
    ],
)
async def test_undecodable_bodies_get_a_400_page(visitor, body, content_type):
    await visitor.open()
    hidden = "&".join(f"{k}={v}" for k, v in visitor.page.forms[0].hidden.items()).encode()
    response = await visitor.client.post(BRANCH_PAGE, data=hidden + b"&" + body, headers={"Content-Type": content_type})
    assert response.status == 400
    assert "couldn't read what your browser sent" in " ".join(bubbles_of(await response.text()))


async def test_a_form_without_nonce_or_with_an_unknown_command_gets_400(visitor):
    await visitor.open()
    csrf = visitor.page.forms[0].hidden["csrf"]
    response = await visitor.client.post(BRANCH_PAGE, data={"csrf": csrf, "text": "hi"})
    assert response.status == 400
    nonce = visitor.page.forms[0].hidden["nonce"]
    response = await visitor.client.post(BRANCH_PAGE, data={"csrf": csrf, "nonce": nonce, "command": "start"})
    assert response.status == 400


async def test_session_cookies_are_http_only_and_same_site(client):
    response = await client.get(BRANCH_PAGE)
    cookies = response.cookies
    for name in ("closeloop_session", "closeloop_csrf"):
        morsel = cookies[name]
        assert morsel["httponly"] is True
        assert morsel["samesite"] == "Lax"
        assert morsel["path"] == "/c"
        assert int(morsel["max-age"]) >= 7 * 24 * 3600
        assert not morsel["secure"], "the public URL is plain http here"
    assert len(cookies["closeloop_session"].value) == 32


async def test_cookies_are_secure_behind_an_https_public_url(aiohttp_client, database_url, tmp_path):
    settings = load_settings(
        {
            "CLOSELOOP_DATABASE_URL": database_url,
            "CLOSELOOP_DATA_DIR": str(tmp_path / "data"),
            "CLOSELOOP_HTTP_PUBLIC_URL": "https://feedback.example-bank.cn",
            "CLOSELOOP_NLP_WORKER": "false",
        }
    )
    client = await aiohttp_client(create_app(settings, load_catalog(settings)))
    response = await client.get(BRANCH_PAGE)
    assert response.cookies["closeloop_session"]["secure"] is True


@pytest.mark.parametrize("path", [BRANCH_PAGE, "/c/NOWHERE"])
async def test_security_headers_are_set(client, path):
    response = await client.get(path)
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "form-action 'self'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"


async def test_static_files_are_served_and_nothing_else(client):
    for name, content_type in (("chat.js", "text/javascript"), ("chat.css", "text/css")):
        response = await client.get(f"/c/static/{name}")
        assert response.status == 200
        assert response.content_type == content_type
    assert (await client.get("/c/static/..%2Fwebchat.py")).status == 404
    assert (await client.get("/c/static/base.html")).status == 404


async def test_a_start_is_counted_once_per_fresh_visit(client, database_url):
    await client.get(BRANCH_PAGE)
    await client.get(BRANCH_PAGE)  # a refresh carries the session cookie
    assert await starts(database_url) == 1
    client.session.cookie_jar.clear()  # another phone
    await client.get(BRANCH_PAGE)
    assert await starts(database_url) == 2
    await client.get("/c/NOWHERE")
    assert await starts(database_url) == 2


async def test_database_trouble_gets_a_503_page_in_the_visitors_language(client, visitor, monkeypatch):
    await visitor.open()
    zh_hidden = visitor.page.forms[0].hidden

    async def unavailable(event):
        raise ConversationUnavailableError("the database is unavailable")

    monkeypatch.setattr(client.app[ENGINE], "handle", unavailable)
    response = await client.post(BRANCH_PAGE, data={**zh_hidden, "choice": "k|y|MAIN-C1|en"}, headers=ZH)
    assert response.status == 503
    assert "您之前的回答都已保存" in await response.text()


async def test_footer_commands_show_data_stop_and_erase(visitor, database_url):
    await visitor.open()
    await visitor.press("Yes")
    await visitor.press("My data")
    assert visitor.says("What we hold about you")
    assert visitor.says("how satisfied are you"), "the open question stays on the page"
    await visitor.press("Stop survey")
    assert visitor.says("I've stopped the survey")
    await visitor.press("Erase my data")
    assert visitor.says("Erase everything we hold about you")
    await visitor.press("Yes")
    assert visitor.says("your data has been erased")
    await visitor.press("My data")
    assert visitor.says("We hold no data about you.")
    assert visitor.says("OK to continue?"), "outside a conversation the consent question stays on offer"


async def test_declining_consent_stores_nothing(visitor, database_url):
    await visitor.open()
    await visitor.press("No")
    assert visitor.says("nothing has been stored")
    assert "Yes" not in visitor.button_labels()
    assert await count(database_url, Answer) == 0
