"""The staff console's pages: sign-in, sign-out, the home page and the language switch, and their routes.

The queue and the other pages come later; they sit behind the same guard (web.auth.console_guard).
"""

from __future__ import annotations

import asyncio
import functools
from importlib.resources import files

from aiohttp import web

from store.staff import end_session
from web.auth import (
    CONCURRENT_HASHES,
    CONSOLE,
    HASHING,
    LOGIN_CSRF_COOKIE,
    LOGIN_PATH,
    SECURE_COOKIES,
    SESSION_COOKIE,
    SIGNED_IN,
    BadFormError,
    clear_session_cookies,
    console_guard,
    login_csrf,
    read_form,
    safe_next,
    set_login_csrf_cookie,
    set_session_cookie,
    sign_in,
)
from web.cases import CASES, add_case_routes
from web.dashboard import add_dashboard_routes
from web.keys import DATABASE
from web.options import CONSOLE_OPTIONS, ConsoleOptions
from web.pages import LANGUAGE_COOKIE, error_page, language_of, render
from web.texts import LANGUAGES, texts
from web.tickets import add_ticket_routes

STATIC = {"console.css": "text/css"}
LANGUAGE_MAX_AGE = 365 * 24 * 3600
MAX_USERNAME = 200  # longer than any username; what is typed beyond it cannot match


def add_console_routes(app: web.Application, *, secure_cookies: bool, options: ConsoleOptions | None = None) -> None:
    """Register the console's guard and pages; ``secure_cookies`` when the public URL is https."""
    app[SECURE_COOKIES] = secure_cookies
    app[CONSOLE_OPTIONS] = options or ConsoleOptions()
    app[HASHING] = asyncio.Semaphore(CONCURRENT_HASHES)
    app.middlewares.append(console_guard)
    app.router.add_get(CONSOLE, show_home)
    app.router.add_get(LOGIN_PATH, show_login)
    app.router.add_post(LOGIN_PATH, post_login)
    app.router.add_post(f"{CONSOLE}/logout", post_logout)
    app.router.add_get(f"{CONSOLE}/language", switch_language)
    app.router.add_get(f"{CONSOLE}/static/{{name}}", static_file)
    # Each console area registers its own routes below (one line each; shared file, insert only).
    add_ticket_routes(app)
    add_case_routes(app)
    add_dashboard_routes(app)


async def show_home(request: web.Request) -> web.Response:
    """The console opens on the case queue: the inner loop is what most staff come for."""
    return _redirect(CASES)


async def show_login(request: web.Request) -> web.Response:
    if SIGNED_IN in request:
        return _redirect(safe_next(request.query.get("next")))
    notice = texts(language_of(request))["signed_out"] if "signed_out" in request.query else None
    return _login_page(request, next_path=request.query.get("next"), notice=notice)


async def post_login(request: web.Request) -> web.Response:
    try:
        fields = await read_form(request)
    except BadFormError:
        return error_page(request, 400)
    username = fields.get("username", "")[:MAX_USERNAME]
    result = await sign_in(request, username, fields.get("password", ""))
    if result.issued is None:
        t = texts(language_of(request))
        error = f"{t['wrong_credentials']} {t['try_later']}" if result.is_locked else t["wrong_credentials"]
        return _login_page(request, next_path=fields.get("next"), error=error, username=username)
    response = _redirect(safe_next(fields.get("next")))
    response.del_cookie(LOGIN_CSRF_COOKIE, path=CONSOLE)  # the pre-session token has done its job
    set_session_cookie(response, request, result.issued)
    return response


async def post_logout(request: web.Request) -> web.Response:
    await end_session(request.app[DATABASE], request.cookies[SESSION_COOKIE], remote_addr=request.remote)
    response = _redirect(f"{LOGIN_PATH}?signed_out")
    clear_session_cookies(response)
    return response


async def switch_language(request: web.Request) -> web.Response:
    """Remember the chosen language and go back; a plain link, since switching languages changes nothing else."""
    response = _redirect(safe_next(request.query.get("next"), may_be_login=True))
    language = request.query.get("set")
    if language in LANGUAGES:
        response.set_cookie(LANGUAGE_COOKIE, language, max_age=LANGUAGE_MAX_AGE, path=CONSOLE, httponly=True,
                            samesite="Lax", secure=request.app[SECURE_COOKIES])  # fmt: skip
    return response


async def static_file(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound()
    response = web.Response(body=_static_bytes(name), content_type=STATIC[name], charset="utf-8")
    response.headers["Cache-Control"] = "max-age=3600"
    return response


def _login_page(
    request: web.Request, *, next_path: str | None, error: str | None = None, notice: str | None = None, username=""
) -> web.Response:
    token = login_csrf(request)
    response = render(request, "login.html", csrf=token, next=safe_next(next_path), error=error, notice=notice,
                      username=username)  # fmt: skip
    set_login_csrf_cookie(response, request, token)
    return response


def _redirect(location: str) -> web.Response:
    # A plain 303 response rather than a raised HTTPSeeOther, so that cookies set on it are simple to follow.
    return web.Response(status=303, headers={"Location": location})


@functools.cache
def _static_bytes(name: str) -> bytes:
    return files("web").joinpath("static", name).read_bytes()
