"""What a web chat page shows (the transcript, new bot messages, the open question) as HTML or as JSON."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, PackageLoader, Template, select_autoescape

from bot import buttons
from bot.events import Reply
from bot.texts import text
from bot.transcript import Exchange

MAX_TEXT_INPUT = 2000  # the engine keeps 2,000 characters of a comment; the browser stops there too

# The page's own words; everything the bot says comes from the engine's texts.
LABELS: dict[str, dict[str, str]] = {
    "title": {"en": "Your feedback", "zh": "意见反馈"},
    "send": {"en": "Send", "zh": "发送"},
    "text_placeholder": {"en": "Type your answer…", "zh": "请输入您的回答…"},
    "phone_placeholder": {"en": "e.g. +86 138 0013 8000", "zh": "例如 138 0013 8000"},
    "stop": {"en": "Stop survey", "zh": "结束问卷"},
    "mydata": {"en": "My data", "zh": "我的信息"},
    "forget": {"en": "Erase my data", "zh": "删除我的信息"},
    "back": {"en": "Back to the survey", "zh": "返回问卷"},
    "bad_request": {
        "en": "Sorry, I couldn't read what your browser sent. Please go back and try again.",
        "zh": "抱歉，无法读取您的浏览器发送的内容。请返回后重试。",
    },
    "forbidden": {
        "en": "This page has expired, or your browser blocks cookies. Please reload the page and try again.",
        "zh": "页面已过期，或您的浏览器禁用了 Cookie。请刷新页面后重试。",
    },
    "sending_failed": {
        "en": "Sending failed. Please check your connection and try again.",
        "zh": "发送失败，请检查网络后重试。",
    },
}


def labels(language: str) -> dict[str, str]:
    return {key: variants.get(language, variants["en"]) for key, variants in LABELS.items()}


@dataclass(frozen=True, slots=True)
class Page:
    """One rendering of the chat: answered questions, then the bot's newest messages, then the open question."""

    language: str
    payload: str  # the branch link, BRANCH or BRANCH-COUNTER
    exchanges: tuple[Exchange, ...] = ()
    notices: tuple[str, ...] = ()
    question: Reply | None = None

    @property
    def is_done(self) -> bool:
        return self.question is None


@dataclass(frozen=True, slots=True)
class Form:
    """What every form on a page carries: where it posts, the CSRF token and this rendering's nonce."""

    action: str
    csrf: str
    nonce: str


def is_question(reply: Reply) -> bool:
    return bool(reply.buttons or reply.expects or reply.ask_contact)


def language_switch(page: Page) -> dict[str, str]:
    """The footer's one-click language button: the engine's own language button for this branch link."""
    other = "en" if page.language == "zh" else "zh"
    return {"label": text("switch_language", page.language), "data": buttons.language(other, page.payload)}


def render_page(page: Page, form: Form) -> str:
    return _template("chat.html").render(
        page=page,
        form=form,
        language=page.language,
        labels=labels(page.language),
        switch=language_switch(page),
        max_text=MAX_TEXT_INPUT,
    )


def render_error(language: str, message: str, *, back: str | None) -> str:
    return _template("error.html").render(language=language, message=message, back=back, labels=labels(language))


def page_json(page: Page, form: Form) -> dict[str, Any]:
    """The same page as data, for the script that redraws the chat without a reload."""
    return {
        "language": page.language,
        "nonce": form.nonce,
        "exchanges": [{"question": e.question, "answer": e.answer} for e in page.exchanges],
        "replies": [{"text": notice} for notice in page.notices],
        "prompt": [_reply_json(page.question)] if page.question else [],
        "done": page.is_done,
        "labels": labels(page.language),
        "switch": language_switch(page),
    }


def _reply_json(reply: Reply) -> dict[str, Any]:
    return {
        "text": reply.text,
        "buttons": [[{"label": b.label, "data": b.data} for b in row] for row in reply.buttons],
        "expects": reply.expects,
        "ask_contact": reply.ask_contact,
    }


@functools.cache
def _environment() -> Environment:
    # Built on first use, not at import: creating the app does no I/O. Autoescape everywhere: every text on the
    # page is customer or engine text, and none of it is ever marked safe.
    return Environment(
        loader=PackageLoader("bot.channels", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True, default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _template(name: str) -> Template:
    return _environment().get_template(name)
