"""The JSON API under /api/v1 and its OpenAPI document at /api/openapi.json: one line registers both.

Each area declares its endpoints (web.api_cases, web.api_tickets, web.api_reports); this module registers the
declarations as routes, checks a request body against its declared schema before the handler runs, and serves
the document built from the same declarations.
"""

from __future__ import annotations

import functools

from aiohttp import web

from web import api_cases, api_reports, api_tickets
from web.api_auth import api_guard
from web.api_io import BODY, answer, read_body
from web.keys import VERSION
from web.openapi import OPENAPI_PATH, Handler, Operation, obj, openapi_document, text

OPENAPI_SCHEMA = obj({"openapi": text("3.1.0")}) | {"additionalProperties": True}


async def show_openapi(request: web.Request) -> web.Response:
    """This API as an OpenAPI 3.1 document (public: it describes the API, it holds no data)."""
    return answer(_document(request.app[VERSION]))


OPERATIONS: tuple[Operation, ...] = (
    *api_cases.OPERATIONS,
    *api_tickets.OPERATIONS,
    *api_reports.OPERATIONS,
    Operation("GET", OPENAPI_PATH, show_openapi, "This document", OPENAPI_SCHEMA, is_public=True),
)
SCHEMAS = api_cases.SCHEMAS | api_tickets.SCHEMAS | api_reports.SCHEMAS


def add_api_routes(app: web.Application) -> None:
    """Register the bearer-token guard, every endpoint, and the document that describes them."""
    app.middlewares.append(api_guard)
    api_reports.add_report_state(app)
    for operation in OPERATIONS:
        app.router.add_route(operation.method, operation.route, _with_body(operation))


def _with_body(operation: Operation) -> Handler:
    """The handler, after the body is read and checked against the operation's schema (when it takes one)."""
    if operation.body is None:
        return operation.handler
    schema = operation.body

    @functools.wraps(operation.handler)
    async def checked(request: web.Request) -> web.StreamResponse:
        request[BODY] = await read_body(request, schema)
        return await operation.handler(request)

    return checked


@functools.cache
def _document(version: str) -> dict:
    return openapi_document(OPERATIONS, SCHEMAS, version=version)
