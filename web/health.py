"""The health check: is the process up, is the database reachable, which version runs."""

from __future__ import annotations

from aiohttp import web

from store import DatabaseUnavailableError
from web.keys import DATABASE, VERSION


async def healthz(request: web.Request) -> web.Response:
    database = request.app[DATABASE]
    try:
        latency = await database.ping()
    except DatabaseUnavailableError as exc:
        report = {"status": "error", "version": request.app[VERSION], "database": {"ok": False, "error": str(exc)}}
        return web.json_response(report, status=503)
    report = {
        "status": "ok",
        "version": request.app[VERSION],
        "database": {"ok": True, "dialect": database.dialect, "latency_ms": round(latency, 2)},
    }
    return web.json_response(report)
