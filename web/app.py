"""The aiohttp application with its middlewares and routes; resources are added by the composition root."""

from __future__ import annotations

from aiohttp import web

from web.health import healthz
from web.keys import VERSION
from web.middleware import json_errors, log_requests

MAX_REQUEST_BYTES = 1024 * 1024


def create_web_app(*, version: str) -> web.Application:
    """Build the app without I/O; the caller adds cleanup contexts that open the database and friends."""
    app = web.Application(middlewares=[log_requests, json_errors], client_max_size=MAX_REQUEST_BYTES)
    app[VERSION] = version
    app.router.add_get("/healthz", healthz)
    return app
