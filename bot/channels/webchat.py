"""The web chat channel: a page per branch link where customers without Telegram answer the survey.

Plain HTML forms carry every answer, so the chat works with scripts off and inside other messengers' in-app
browsers; with scripts on, static/chat.js posts the same forms with fetch and redraws the chat from JSON. The
visitor is an anonymous random session id in a cookie; each rendering carries a fresh nonce that becomes the
engine's event id, so a double submit or a browser's "resend" is handled once.
"""

from __future__ import annotations

import functools
import logging
import re
import secrets
from dataclasses import dataclass, replace
from importlib.resources import files
from urllib.parse import parse_qsl

from aiohttp import web

from bot import buttons
from bot.answers import clean_text, parse_phone
from bot.channels.keys import ENGINE, PUBLIC_URL
from bot.channels.webchat_page import Form, Page, is_question, labels, page_json, render_error, render_page
from bot.engine import ConversationUnavailableError, View
from bot.events import Incoming, Kind
from bot.texts import pick_language, text
from bot.transcript import Exchange
from nlp.masking import mask_text

log = logging.getLogger(__name__)

CHANNEL = "web"
COOKIE_PATH = "/c"
SESSION_COOKIE = "closeloop_session"
CSRF_COOKIE = "closeloop_csrf"
LANGUAGE_COOKIE = "closeloop_lang"  # set only when the customer switches; the browser's language until then
COOKIE_MAX_AGE = 30 * 24 * 3600
CODE = re.compile(r"^[A-Za-z0-9_]{1,24}$")  # branch and counter codes, as config/branches.py allows them
TOKEN = re.compile(r"^[A-Za-z0-9_-]{32}$")  # secrets.token_urlsafe(24)
NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
COMMANDS = frozenset({"cancel", "mydata", "forget", "language", "help"})
MAX_FIELDS = 12
FORM_TYPE = "application/x-www-form-urlencoded"
STATIC = {"chat.css": "text/css", "chat.js": "text/javascript"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class BadFormError(ValueError):
    """The request body is not a form this page sent: wrong type, undecodable, or missing what it needs."""


@dataclass(frozen=True, slots=True)
class Visit:
    """One request to a branch page: where it points and who is asking."""

    request: web.Request
    payload: str
    session: str | None  # None on a fresh visit: no valid session cookie came with it
    language_hint: str | None

    @property
    def path(self) -> str:
        return f"{COOKIE_PATH}/{self.payload.replace('-', '/')}"

    @property
    def language(self) -> str:
        return pick_language(self.language_hint)

    @property
    def wants_json(self) -> bool:
        return "application/json" in self.request.headers.get("Accept", "")


def add_webchat_routes(app: web.Application) -> None:
    """Register the chat pages and their two static files; the static route comes first so it wins."""
    app.router.add_get(f"{COOKIE_PATH}/static/{{name}}", static_file)
    for path in (f"{COOKIE_PATH}/{{branch}}", f"{COOKIE_PATH}/{{branch}}/{{counter}}"):
        app.router.add_get(path, show_page)
        app.router.add_post(path, post_answer)


async def show_page(request: web.Request) -> web.Response:
    """Show the conversation so far and its open question, or the branch's consent question."""
    visit = _visit(request)
    if visit is None:
        return _error(request, 404, text("unknown_branch", _hint_language(request)), back=None)
    engine = request.app[ENGINE]
    is_fresh = visit.session is None
    session = visit.session or secrets.token_urlsafe(24)
    try:
        view = None if is_fresh else await engine.view(CHANNEL, session, language_hint=visit.language_hint)
        hint = view.language if view else visit.language_hint
        # A start is counted once per fresh visit: a refresh or a returning visitor carries the session cookie.
        count = is_fresh and request.method == "GET"
        opening = await engine.opening(CHANNEL, visit.payload, language_hint=hint, count_start=count)
    except ConversationUnavailableError:
        return _unavailable(visit)
    if opening is None:
        return _error(request, 404, text("unknown_branch", visit.language), back=None)
    if view is not None and view.is_active:
        page = Page(view.language, visit.payload, tuple(view.exchanges), question=view.prompt[-1])
    else:
        page = Page(pick_language(hint), visit.payload, question=opening[-1])
    return _respond(visit, page, session=session)


async def post_answer(request: web.Request) -> web.Response:
    """Hand one pressed button, typed answer, phone number or command to the engine and show the result."""
    visit = _visit(request)
    if visit is None:
        return _error(request, 404, text("unknown_branch", _hint_language(request)), back=None)
    try:
        fields = await _read_form(request)
    except BadFormError:
        return _error(request, 400, labels(visit.language)["bad_request"], back=visit.path)
    if visit.session is None or not _is_csrf_ok(request, fields):
        return _error(request, 403, labels(visit.language)["forbidden"], back=visit.path)
    try:
        event = _to_event(fields, session=visit.session, language_hint=visit.language_hint)
    except BadFormError:
        return _error(request, 400, labels(visit.language)["bad_request"], back=visit.path)
    switched = _switched_language(event)
    if switched:
        visit = replace(visit, language_hint=switched)
    try:
        page = await _converse(visit, visit.session, event)
    except ConversationUnavailableError:
        return _unavailable(visit)
    response = _respond(visit, page, session=visit.session)
    if switched:
        _set_cookie(response, visit, LANGUAGE_COOKIE, switched)
    return response


async def static_file(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound()
    response = web.Response(body=_static_bytes(name), content_type=STATIC[name], charset="utf-8")
    response.headers.update(SECURITY_HEADERS)
    response.headers["Cache-Control"] = "max-age=3600"
    return response


async def _converse(visit: Visit, session: str, event: Incoming) -> Page:
    engine = visit.request.app[ENGINE]
    before = await engine.view(CHANNEL, session, language_hint=visit.language_hint)
    replies = await engine.handle(event)
    after = await engine.view(CHANNEL, session, language_hint=visit.language_hint)
    questions = [reply for reply in replies if is_question(reply)]
    question = questions[-1] if questions else (after.prompt[-1] if after.is_active else None)
    notices = tuple(reply.text for reply in replies if reply is not question)
    page = Page(after.language, visit.payload, _transcript(before, after, event), notices, question)
    if page.question is None and not before.is_active and not _is_consent(event):
        # Outside a conversation (My data, Erase, a resent form) the branch's consent question stays on offer.
        opening = await engine.opening(CHANNEL, visit.payload, language_hint=after.language, count_start=False)
        page = replace(page, question=opening[-1] if opening else None)
    return page


def _transcript(before: View, after: View, event: Incoming) -> tuple[Exchange, ...]:
    """The answered questions; when this event finished the conversation, the last answer is added by hand."""
    if after.is_active:
        return tuple(after.exchanges)
    if not before.is_active or not before.prompt:
        return ()
    asked = before.prompt[-1]
    match event.kind:
        case Kind.CHOICE:
            pressed = [b.label for row in asked.buttons for b in row if b.data == event.choice]
            answer = pressed[0] if pressed else None
        case Kind.TEXT:
            answer = mask_text(clean_text(event.text or "").text)
        case Kind.CONTACT:
            answer = parse_phone(event.text or "")
        case _:
            answer = None
    if answer is None:
        return ()  # stopped, erased or not an answer to the open question: the transcript is over
    return (*before.exchanges, Exchange(asked.text, answer))


def _to_event(fields: dict[str, str], *, session: str, language_hint: str | None) -> Incoming:
    nonce = fields.get("nonce", "")
    if not NONCE.match(nonce):
        raise BadFormError("missing or malformed nonce")
    common = {"channel": CHANNEL, "user": session, "language": language_hint, "event_id": nonce}
    if fields.get("choice"):
        return Incoming(kind=Kind.CHOICE, choice=fields["choice"], **common)
    if "command" in fields:
        if fields["command"] not in COMMANDS:
            raise BadFormError("unknown command")
        return Incoming(kind=Kind.COMMAND, command=fields["command"], **common)
    if "phone" in fields:
        return Incoming(kind=Kind.CONTACT, text=fields["phone"], **common)
    if "text" in fields:
        return Incoming(kind=Kind.TEXT, text=fields["text"], **common)
    raise BadFormError("nothing to send")


async def _read_form(request: web.Request) -> dict[str, str]:
    """Decode a URL-encoded form strictly: invalid UTF-8 or a foreign body type is the client's error, not ours."""
    if request.content_type != FORM_TYPE or (request.charset or "utf-8").lower() != "utf-8":
        raise BadFormError("not a URL-encoded UTF-8 form")
    body = await request.read()  # aiohttp refuses bodies over client_max_size with 413 before this returns
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict", max_num_fields=MAX_FIELDS)
    except ValueError as exc:  # UnicodeDecodeError included
        raise BadFormError("undecodable form") from exc
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


def _is_csrf_ok(request: web.Request, fields: dict[str, str]) -> bool:
    # Double submit: a page from another site can make the browser send our cookie, but can't read it to copy.
    cookie, field = request.cookies.get(CSRF_COOKIE, ""), fields.get("csrf", "")
    return bool(TOKEN.match(cookie)) and secrets.compare_digest(cookie.encode(), field.encode())


def _visit(request: web.Request) -> Visit | None:
    branch, counter = request.match_info["branch"], request.match_info.get("counter")
    if not CODE.match(branch) or (counter is not None and not CODE.match(counter)):
        return None
    session = request.cookies.get(SESSION_COOKIE)
    chosen = request.cookies.get(LANGUAGE_COOKIE)
    return Visit(
        request,
        payload=f"{branch}-{counter}" if counter else branch,
        session=session if session and TOKEN.match(session) else None,
        language_hint=chosen if chosen in ("en", "zh") else request.headers.get("Accept-Language"),
    )


def _respond(visit: Visit, page: Page, *, session: str) -> web.Response:
    csrf = visit.request.cookies.get(CSRF_COOKIE, "")
    if not TOKEN.match(csrf):
        csrf = secrets.token_urlsafe(24)
    form = Form(action=visit.path, csrf=csrf, nonce=secrets.token_urlsafe(16))
    if visit.wants_json:
        response: web.Response = web.json_response(page_json(page, form))
    else:
        response = web.Response(text=render_page(page, form), content_type="text/html", charset="utf-8")
    _set_cookie(response, visit, SESSION_COOKIE, session)
    _set_cookie(response, visit, CSRF_COOKIE, csrf)
    return _secured(response)


def _error(request: web.Request, status: int, message: str, *, back: str | None) -> web.Response:
    language = _hint_language(request)
    if "application/json" in request.headers.get("Accept", ""):
        response = web.json_response({"error": message}, status=status)
    else:
        html = render_error(language, message, back=back)
        response = web.Response(text=html, status=status, content_type="text/html", charset="utf-8")
    return _secured(response)


def _unavailable(visit: Visit) -> web.Response:
    log.warning("web chat: storage unavailable; the visitor was asked to try again")
    return _error(visit.request, 503, text("failure", visit.language), back=visit.path)


def _secured(response: web.Response) -> web.Response:
    response.headers.update(SECURITY_HEADERS)
    response.headers["Cache-Control"] = "no-store"  # the page shows the customer's answers
    return response


def _set_cookie(response: web.Response, visit: Visit, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        max_age=COOKIE_MAX_AGE,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Lax",
        secure=visit.request.app[PUBLIC_URL].startswith("https"),
    )


def _hint_language(request: web.Request) -> str:
    chosen = request.cookies.get(LANGUAGE_COOKIE)
    return chosen if chosen in ("en", "zh") else pick_language(request.headers.get("Accept-Language"))


def _switched_language(event: Incoming) -> str | None:
    if event.kind is not Kind.CHOICE:
        return None
    try:
        parsed = buttons.parse(event.choice or "")
    except buttons.BadButtonError:
        return None
    return parsed.language if isinstance(parsed, buttons.Language) else None


def _is_consent(event: Incoming) -> bool:
    try:
        return event.kind is Kind.CHOICE and isinstance(buttons.parse(event.choice or ""), buttons.Consent)
    except buttons.BadButtonError:
        return False


@functools.cache
def _static_bytes(name: str) -> bytes:
    return files("bot.channels").joinpath("static", name).read_bytes()
