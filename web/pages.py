"""Console pages as HTML: the Jinja2 environment (autoescaping on) and the language every page is shown in."""

from __future__ import annotations

import functools
from typing import Any

from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from web.texts import pick_language, texts

LANGUAGE_COOKIE = "closeloop_staff_lang"  # set only when the user switches; the browser's language until then
ERROR_TEXTS = {400: "bad_request", 403: "not_allowed", 404: "not_found"}


def language_of(request: web.Request) -> str:
    return pick_language(request.cookies.get(LANGUAGE_COOKIE), request.headers.get("Accept-Language"))


def render(request: web.Request, template: str, *, status: int = 200, **context: Any) -> web.Response:
    """Render a console template in the request's language; every value in ``context`` is escaped on output."""
    language = language_of(request)
    html = (
        _environment()
        .get_template(template)
        .render(language=language, t=texts(language), path=request.path_qs, **context)
    )
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


@functools.lru_cache(maxsize=256)
def options_html(choices: tuple[tuple[str, str], ...], selected: str | None) -> Markup:
    """The <option> elements of a long select (an admin's 200 branches), rendered and escaped once per set of
    choices and selection: doing it on every view of the queue cost a fifth of the page's CPU at 1M rows."""
    return Markup(_environment().get_template("options.html").render(choices=choices, selected=selected))  # noqa: S704 - rendered with autoescape on


def error_page(request: web.Request, status: int, text_key: str | None = None) -> web.Response:
    """A short page in the user's language for a refused or failed request."""
    key = text_key or ERROR_TEXTS.get(status, "bad_request")
    return render(request, "error.html", status=status, message=texts(language_of(request))[key])


@functools.cache
def _environment() -> Environment:
    # Built on first use, not at import: creating the app does no I/O. Autoescape everywhere, strings included:
    # names, branch names and later customer text all reach these pages, and none of it is ever marked safe.
    return Environment(
        loader=PackageLoader("web", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True, default=True),
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,  # templates ship inside the package: no stat() of the file on every render
    )
