"""The API described as OpenAPI 3.1: each endpoint declares its route, parameters and schemas once; this module
turns the declarations into the document, and web.api registers the very same declarations as routes.

So the document cannot list a route that does not exist or miss one that does, and the request bodies the
document promises are the ones the API checks (web.api_io.check validates a body against its declared schema).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

Schema = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

OPENAPI_PATH = "/api/openapi.json"
SECURITY_SCHEME = "bearerAuth"
PATH_PARAMETER = re.compile(r"\{(\w+)\}")
ID_DIGITS = 9  # ids are 32-bit columns: longer is no id, and PostgreSQL would refuse to compare it
TIMESTAMP: Schema = {"type": "string", "format": "date-time", "description": "ISO 8601, UTC"}
DAY: Schema = {"type": "string", "format": "date", "description": "a local day, YYYY-MM-DD"}
NOT_ENOUGH = "not enough responses"

# status -> (components/responses name, description)
ERRORS: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "A malformed query parameter or request body (not JSON, not an object)."),
    401: ("Unauthorized", "No bearer token, or one that is unknown, revoked or expired, or whose user is inactive."),
    403: ("Forbidden", "The token's user has not the role this needs."),
    404: ("NotFound", "No such item within the token user's scope (the same answer whether or not it exists)."),
    409: ("Conflict", "The item's state does not allow the action (resolving a resolved case)."),
    415: ("UnsupportedMediaType", "A request body that is not application/json."),
    422: ("UnprocessableContent", "A well-formed body with a value that is not acceptable; the message says which."),
}


@dataclass(frozen=True, slots=True)
class Operation:
    """One endpoint: its route and handler, and what the document says of it.

    ``path`` is written as OpenAPI writes it (/api/v1/cases/{case_id}); every path parameter is an id.
    ``body`` is the JSON schema of the request body, checked before the handler runs; ``errors`` lists the
    statuses besides 200, 401 and 500 that the endpoint may answer.
    """

    method: str
    path: str
    handler: Handler
    summary: str
    response: Schema
    parameters: tuple[Schema, ...] = ()
    body: Schema | None = None
    errors: tuple[int, ...] = ()
    is_public: bool = False

    @property
    def route(self) -> str:
        """The aiohttp route: each {name} with the pattern of an id."""
        return PATH_PARAMETER.sub(rf"{{\1:\\d{{1,{ID_DIGITS}}}}}", self.path)


# -- schema helpers -----------------------------------------------------------------------------------------------


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(properties: Mapping[str, Schema], *, optional: Iterable[str] = (), description: str | None = None) -> Schema:
    """An object with exactly these properties, all required but the ``optional`` ones, and no others."""
    schema: Schema = {
        "type": "object",
        "properties": dict(properties),
        "required": [name for name in properties if name not in set(optional)],
        "additionalProperties": False,
    }
    return schema | ({"description": description} if description else {})


def text(description: str, *, limit: int | None = None, minimum: int | None = None) -> Schema:
    schema: Schema = {"type": "string", "description": description}
    if limit is not None:
        schema["maxLength"] = limit
    if minimum is not None:
        schema["minLength"] = minimum
    return schema


def choice(values: Iterable[str], description: str) -> Schema:
    return {"type": "string", "enum": list(values), "description": description}


def integer(description: str, *, minimum: int | None = None, maximum: int | None = None) -> Schema:
    schema: Schema = {"type": "integer", "description": description}
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    return schema


def page_of(item: str) -> Schema:
    """A page of a listing: its items, newest first, and the cursor of the next page (null on the last)."""
    return obj(
        {
            "items": {"type": "array", "items": ref(item)},
            "next_cursor": nullable(text("pass as `cursor` for the next page")),
        }
    )


def query(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def path_id(name: str, description: str) -> Schema:
    schema = integer(description, minimum=1, maximum=10**ID_DIGITS - 1)
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


PAGE_PARAMETERS = (
    query("limit", integer("items per page", minimum=1, maximum=200), "Items per page (default 50, at most 200)."),
    query("cursor", {"type": "string", "pattern": r"^\d{1,9}$"}, "The `next_cursor` of the previous page."),
)

ERROR_SCHEMA = obj(
    {
        "error": obj(
            {
                "status": integer("the HTTP status"),
                "reason": text("the HTTP reason phrase"),
                "message": text("what went wrong, in words"),
            }
        )
    }
)


# -- the document -------------------------------------------------------------------------------------------------


def openapi_document(operations: Iterable[Operation], schemas: Mapping[str, Schema], *, version: str) -> Schema:
    """The OpenAPI 3.1 document of these operations, with ``schemas`` as its named components."""
    paths: dict[str, dict[str, Any]] = {}
    for operation in operations:
        paths.setdefault(operation.path, {})[operation.method.lower()] = _operation(operation)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Closeloop API",
            "version": version,
            "description": "The staff console's data and actions as JSON. A bearer token (`closeloop staff token "
            "create`) acts as its staff user: that user's role and scope apply exactly as in the console, and an "
            "item outside the scope answers 404 like a missing one. Timestamps are ISO 8601 in UTC, ids integers, "
            "enumerations strings; customer comments are masked. Listings are newest first, a page at a time.",
        },
        "servers": [{"url": "/"}],
        "security": [{SECURITY_SCHEME: []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                SECURITY_SCHEME: {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <token>"}
            },
            "schemas": {"Error": ERROR_SCHEMA, **schemas},
            "responses": {name: _error_response(status) for status, (name, _) in ERRORS.items()},
        },
    }


def _operation(operation: Operation) -> Schema:
    responses: dict[str, Any] = {
        "200": {"description": "OK", "content": {"application/json": {"schema": operation.response}}}
    }
    statuses = sorted({*operation.errors, *(() if operation.is_public else (401,))})
    responses |= {str(status): {"$ref": f"#/components/responses/{ERRORS[status][0]}"} for status in statuses}
    described: Schema = {
        "operationId": operation.handler.__name__.strip("_"),
        "summary": operation.summary,
        "parameters": list(operation.parameters),
        "responses": responses,
    }
    if operation.is_public:
        described["security"] = []
    if operation.body is not None:
        described["requestBody"] = {
            "required": bool(operation.body.get("required")),  # a body of optional fields may be left out
            "content": {"application/json": {"schema": operation.body}},
        }
    return described


def _error_response(status: int) -> Schema:
    response: Schema = {"description": ERRORS[status][1], "content": {"application/json": {"schema": ref("Error")}}}
    if status == 401:
        challenge = {"description": 'Bearer realm="closeloop" (with error="invalid_token" for a refused token)'}
        response["headers"] = {"WWW-Authenticate": challenge | {"schema": {"type": "string"}}}
    return response
