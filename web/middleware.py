"""Request middlewares: one log line per request, and JSON error bodies on API paths."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
JSON_PATHS = ("/api/", "/healthz")


def is_json_path(path: str) -> bool:
    return path.startswith(JSON_PATHS)


@web.middleware
async def log_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Log method, path, status and milliseconds once per request (never the query string: it may hold data)."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        elapsed = (time.perf_counter() - started) * 1000
        log.info("%s %s %d %.1fms", request.method, request.path, status, elapsed)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer errors on API paths with a JSON body; other paths keep aiohttp's pages."""
    if not is_json_path(request.path):
        return await handler(request)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason, exc.text if exc.text != f"{exc.status}: {exc.reason}" else None)
    except Exception:
        # The outer edge: anything unexpected becomes a 500 with a body the client can parse.
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "Internal Server Error", "the server failed; the error was logged")


def error_response(status: int, reason: str, message: str | None = None) -> web.Response:
    body = {"error": {"status": status, "reason": reason, "message": message or reason}}
    return web.json_response(body, status=status)
