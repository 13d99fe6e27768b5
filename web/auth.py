"""Who is signed in to the console: sign-in with lock-out, session cookies, CSRF checks and role and scope guards.

Every request under /console passes `console_guard`: it loads the user from the session cookie, refuses a
state-changing request without its CSRF token (403), sends anyone not signed in to the sign-in page, and puts
the security headers on every answer. Handlers then ask `current_user`, `require_role` or `require_branch`.
"""

from __future__ import annotations

import asyncio
import posixpath
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit

from aiohttp import web

from reporting.scope import Scope, staff_covers
from store import Database
from store.audit import request_address
from store.models import ActorKind, Branch, ScopeKind, StaffRole, StaffUser, utcnow
from store.staff import (
    Actor,
    DuplicateUserError,
    IssuedSession,
    NewUser,
    SignedIn,
    count_users,
    create_user,
    find_session,
    find_user,
    record_failed_sign_in,
    record_refused_sign_in,
    start_session,
)
from web.keys import DATABASE
from web.middleware import Handler
from web.pages import error_page
from web.passwords import Verdict, check_password, hash_password

CONSOLE = "/console"
LOGIN_PATH = "/console/login"
PUBLIC_PATHS = (LOGIN_PATH, "/console/language", "/console/static/")
SESSION_COOKIE = "closeloop_staff"
LOGIN_CSRF_COOKIE = "closeloop_staff_csrf"  # the sign-in form's token, before there is a session to hold one
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"

MAX_FAILURES = 5  # wrong passwords in a row before the account locks
LOCK_FOR = timedelta(minutes=15)
IDLE_TIMEOUT = timedelta(hours=1)  # a session unused this long ends
SESSION_LIFETIME = timedelta(hours=12)  # and none outlives a working day, however busy
CONCURRENT_HASHES = 4  # argon2 takes 64 MiB and ~0.1 s a check: a burst of sign-ins queues instead of piling up

TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")  # secrets.token_urlsafe(32)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FIELDS = 200  # a label-correction form carries one checkbox per category; the body size caps the rest
FIRST_ADMIN = "admin"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

SECURE_COOKIES = web.AppKey("console_secure_cookies", bool)
HASHING = web.AppKey("console_hashing", asyncio.Semaphore)
SIGNED_IN = web.RequestKey("console_signed_in", SignedIn)
FORM = web.RequestKey("console_form", dict)


class BadFormError(ValueError):
    """The request body is not a URL-encoded UTF-8 form."""


@dataclass(frozen=True, slots=True)
class SignInResult:
    issued: IssuedSession | None  # None: refused
    is_locked: bool = False


@web.middleware
async def console_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate and CSRF-check every /console request; add the security headers to whatever it answers."""
    if request.path != CONSOLE and not request.path.startswith(CONSOLE + "/"):
        return await handler(request)
    address = request_address.set(request.remote)  # audit entries written while handling it carry the address
    try:
        response = await _guarded(request, handler)
    except web.HTTPException as exc:
        if exc.status < 400:  # a redirect: it keeps its headers, and gets ours
            _secure(exc)
            raise
        response = error_page(request, exc.status)
    finally:
        request_address.reset(address)
    return _secure(response)


def _secure(response: web.StreamResponse) -> web.StreamResponse:
    response.headers.update(SECURITY_HEADERS)
    response.headers.setdefault("Cache-Control", "no-store")  # pages show who is signed in, later customer data
    return response


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    signed_in = await _load_signed_in(request)
    if signed_in is not None:
        request[SIGNED_IN] = signed_in
    is_public = request.path.startswith(PUBLIC_PATHS)
    if request.method not in SAFE_METHODS and not await _is_csrf_ok(request, signed_in, is_public=is_public):
        return error_page(request, 403, "expired_form")
    if signed_in is None and not is_public:
        raise web.HTTPSeeOther(login_url(request.path_qs if request.method in SAFE_METHODS else None))
    return await handler(request)


async def _load_signed_in(request: web.Request) -> SignedIn | None:
    token = request.cookies.get(SESSION_COOKIE, "")
    if not TOKEN.match(token):
        return None
    return await find_session(request.app[DATABASE], token, now=utcnow(), idle=IDLE_TIMEOUT)


async def _is_csrf_ok(request: web.Request, signed_in: SignedIn | None, *, is_public: bool) -> bool:
    """A session's own token; on the sign-in and language pages also the pre-session double-submit token.

    Double submit: another site can make the browser send our cookie, but cannot read it to copy into the form.
    """
    supplied = request.headers.get(CSRF_HEADER)
    if supplied is None:
        try:
            supplied = (await read_form(request)).get(CSRF_FIELD, "")
        except BadFormError:
            return False
    if signed_in is not None and _same(supplied, signed_in.session.csrf_token):
        return True
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    return is_public and bool(TOKEN.match(cookie)) and _same(supplied, cookie)


def _same(supplied: str, expected: str) -> bool:
    return bool(supplied) and secrets.compare_digest(supplied.encode(), expected.encode())


async def read_form(request: web.Request) -> dict[str, str]:
    """Decode a URL-encoded form strictly, once per request (the guard reads it first for the CSRF token).

    Raises:
        BadFormError: not a URL-encoded UTF-8 form, or undecodable.
    """
    if FORM in request:
        return request[FORM]
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
    request[FORM] = fields
    return fields


def current_user(request: web.Request) -> StaffUser:
    """The signed-in user of a console request (the guard has already sent everyone else to sign in)."""
    signed_in = request.get(SIGNED_IN)
    if signed_in is None:
        raise web.HTTPSeeOther(login_url(request.path_qs))
    return signed_in.user


def csrf_token(request: web.Request) -> str:
    """The token every form of a signed-in page carries in its hidden `csrf` field."""
    return request[SIGNED_IN].session.csrf_token


def require_role(request: web.Request, *roles: StaffRole) -> StaffUser:
    """The signed-in user if their role is one of ``roles``; admins pass every role check.

    Raises:
        web.HTTPForbidden: any other role.
    """
    user = current_user(request)
    if user.role != StaffRole.ADMIN and user.role not in roles:
        raise web.HTTPForbidden()
    return user


def scope_of(user: StaffUser) -> Scope:
    """What a user may see, as reports understand it: the bank, their region or their branch."""
    if user.scope_kind == ScopeKind.ALL:
        return Scope.bank()
    value = user.scope_value or ""
    return Scope.of_region(value) if user.scope_kind == ScopeKind.REGION else Scope.of_branch(value)


def require_branch(request: web.Request, branch: Branch) -> StaffUser:
    """The signed-in user if their scope takes in this branch.

    Raises:
        web.HTTPForbidden: the branch is outside their scope.
    """
    user = current_user(request)
    if not staff_covers(user, branch):
        raise web.HTTPForbidden()
    return user


async def sign_in(request: web.Request, username: str, password: str) -> SignInResult:
    """Check a username and password; on success start a new session, ending the one the request came with.

    Unknown, inactive and locked accounts cost the same password check as real ones, so timing tells nothing.
    """
    db, remote = request.app[DATABASE], request.remote
    user = await find_user(db, username) if username.strip() else None
    verdict = await _check(request, user.password_hash if user is not None and user.is_active else None, password)
    now = utcnow()
    if user is None or not user.is_active:
        reason = "inactive" if user else "unknown_user"
        await record_refused_sign_in(db, user.id if user else None, reason=reason, remote_addr=remote)
        return SignInResult(None)
    if user.locked_until is not None and user.locked_until > now:
        await record_refused_sign_in(db, user.id, reason="locked", remote_addr=remote)
        return SignInResult(None, is_locked=True)
    if not verdict.is_match:
        until = await record_failed_sign_in(db, user.id, now=now, max_failures=MAX_FAILURES, lock_for=LOCK_FOR,
                                            remote_addr=remote)  # fmt: skip
        return SignInResult(None, is_locked=until is not None)
    issued = await start_session(db, user.id, now=now, lifetime=SESSION_LIFETIME, idle=IDLE_TIMEOUT,
                                 remote_addr=remote, replaces=request.cookies.get(SESSION_COOKIE),
                                 new_password_hash=verdict.new_hash)  # fmt: skip
    return SignInResult(issued)


async def _check(request: web.Request, stored_hash: str | None, password: str) -> Verdict:
    async with request.app[HASHING]:
        return await asyncio.to_thread(check_password, stored_hash, password)


def set_session_cookie(response: web.StreamResponse, request: web.Request, issued: IssuedSession) -> None:
    # SameSite=Lax, not Strict: a link in an alert e-mail or chat must open the console signed in (Strict would
    # show the sign-in page and start a second session). Cross-site POSTs still carry no cookie under Lax, and
    # every state change needs the CSRF token anyway.
    response.set_cookie(SESSION_COOKIE, issued.token, max_age=int(SESSION_LIFETIME.total_seconds()), path=CONSOLE,
                        httponly=True, samesite="Lax", secure=request.app[SECURE_COOKIES])  # fmt: skip


def clear_session_cookies(response: web.StreamResponse) -> None:
    for name in (SESSION_COOKIE, LOGIN_CSRF_COOKIE):
        response.del_cookie(name, path=CONSOLE)


def login_csrf(request: web.Request) -> str:
    """The sign-in form's token: the browser's cookie when it holds a well-formed one, else a new one."""
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    return cookie if TOKEN.match(cookie) else secrets.token_urlsafe(32)


def set_login_csrf_cookie(response: web.StreamResponse, request: web.Request, token: str) -> None:
    response.set_cookie(LOGIN_CSRF_COOKIE, token, path=CONSOLE, httponly=True, samesite="Lax",
                        secure=request.app[SECURE_COOKIES])  # fmt: skip


def safe_next(target: str | None, *, may_be_login: bool = False) -> str:
    """Where to go next: a console path on this site, or the console's home for anything else.

    Refuses other sites however spelt (https://evil.example, //evil.example, /\\evil.example), other schemes,
    control characters and dot segments; the sign-in page too, unless ``may_be_login`` (a language switch there).
    """
    if not target or "\\" in target or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in target):
        return CONSOLE
    parts = urlsplit(target)
    path = parts.path
    if parts.scheme or parts.netloc or target.startswith("//") or posixpath.normpath(path) != path.rstrip("/"):
        return CONSOLE
    if not (path == CONSOLE or path.startswith(CONSOLE + "/")) or (path == LOGIN_PATH and not may_be_login):
        return CONSOLE
    return target


def login_url(next_path: str | None = None) -> str:
    target = safe_next(next_path)
    return f"{LOGIN_PATH}?{urlencode({'next': target})}" if next_path and target != CONSOLE else LOGIN_PATH


async def ensure_first_admin(db: Database) -> str | None:
    """With no staff users at all, create "admin" (role admin, every branch) and return its one-time password.

    The caller prints it once. Two processes starting together cannot make two admins: the username is unique,
    and the loser of the race returns None.
    """
    if await count_users(db):
        return None
    password = secrets.token_urlsafe(12)
    password_hash = await asyncio.to_thread(hash_password, password)
    new = NewUser(FIRST_ADMIN, "Administrator", StaffRole.ADMIN, ScopeKind.ALL, None, password_hash)
    try:
        await create_user(db, new, actor=Actor(ActorKind.SYSTEM))
    except DuplicateUserError:
        return None
    return password
