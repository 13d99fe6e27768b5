"""How the API reads requests and writes JSON: checked bodies and pages in; UTC timestamps and escaped JSON out.

Customer text leaves masked (nlp.masking) and as JSON data: <, > and & are written as \\u escapes, so a comment
holding markup stays inert even where a careless client or an old browser treats the answer as HTML.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from nlp.masking import mask_text
from store.models import Branch
from web.openapi import ID_DIGITS, Schema

JSON_TYPE = "application/json"
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
BODY = web.RequestKey("api_body", dict)
ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})
JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "array": (list,),
    "object": (dict,),
    "boolean": (bool,),
    "null": (type(None),),
}


def dumps(value: Any) -> str:
    """JSON with <, > and & escaped (still the same JSON once parsed)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).translate(ESCAPES)


def answer(body: Mapping[str, Any]) -> web.Response:
    return web.json_response(dict(body), dumps=dumps)


def iso(moment: datetime | None) -> str | None:
    """A moment as ISO 8601 in UTC ("2026-11-27T08:30:00Z"), or None."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def masked(text: str | None) -> str | None:
    """Customer text with personal data masked; stored comments are masked already, this holds the line anyway."""
    return mask_text(text) if text else text


def masked_data(value: Any) -> Any:
    """Every string inside stored JSON (an event's data, an answer) masked, the shape kept."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, list):
        return [masked_data(item) for item in value]
    if isinstance(value, dict):
        return {str(key): masked_data(item) for key, item in value.items()}
    return value


def branch_json(branch: Branch | Any) -> dict[str, Any]:
    """A branch as every answer names it (a Branch or a row with its columns)."""
    return {"code": branch.code, "name_en": branch.name_en, "name_zh": branch.name_zh, "region": branch.region}


def staff_ref(user_id: int | None, name: str | None) -> dict[str, Any] | None:
    return None if user_id is None else {"id": user_id, "name": name}


# -- pages --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Page:
    """Which page of a listing: the rows with ids below ``cursor`` (None: from the newest), ``limit`` of them."""

    cursor: int | None
    limit: int

    @classmethod
    def of(cls, query: Mapping[str, str]) -> Page:
        """Read limit and cursor from the query string.

        Raises:
            web.HTTPBadRequest: either is not a number in range.
        """
        limit, cursor = query.get("limit"), query.get("cursor")
        if limit is not None and not (limit.isascii() and limit.isdigit() and 1 <= int(limit) <= MAX_LIMIT):
            raise web.HTTPBadRequest(text=f"limit must be a whole number from 1 to {MAX_LIMIT}")
        if cursor is not None and not (cursor.isascii() and cursor.isdigit() and len(cursor) <= ID_DIGITS):
            raise web.HTTPBadRequest(text="cursor must be the next_cursor of a previous page")
        return cls(int(cursor) if cursor else None, int(limit) if limit else DEFAULT_LIMIT)

    def body(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The answer for rows read with limit + 1: this page's items and where the next one starts."""
        more = len(items) > self.limit
        shown = list(items[: self.limit])
        return {"items": shown, "next_cursor": str(shown[-1]["id"]) if more else None}


def query_choice(query: Mapping[str, str], name: str, allowed: Sequence[str]) -> str | None:
    """An optional query parameter with a closed set of values.

    Raises:
        web.HTTPBadRequest: any other value.
    """
    value = query.get(name)
    if value is None or value == "":
        return None
    if value not in allowed:
        raise web.HTTPBadRequest(text=f"{name} must be one of: {', '.join(allowed)}")
    return value


# -- actions ------------------------------------------------------------------------------------------------------


@contextmanager
def refusals_answered(
    state: type[Exception], value: type[Exception], gone: type[Exception], *, not_found: str
) -> Iterator[None]:
    """Answer a refused action in the domain's own words: 409 for its ``state``, 422 for a ``value``, else 404.

    ``gone`` is the domain's root error: the thing went, or left the caller's reach, since the scope check, and
    gets the same answer (``not_found``) as any unknown id.
    """
    try:
        yield
    except state as exc:
        raise web.HTTPConflict(text=str(exc)) from None
    except value as exc:
        raise web.HTTPUnprocessableEntity(text=str(exc)) from None
    except gone:
        raise web.HTTPNotFound(text=not_found) from None


# -- bodies -------------------------------------------------------------------------------------------------------


async def read_body(request: web.Request, schema: Schema) -> dict[str, Any]:
    """The request's JSON object, checked against its declared schema; no body at all reads as {}.

    Raises:
        web.HTTPUnsupportedMediaType: a body that is not application/json.
        web.HTTPBadRequest: not JSON, or not an object.
        web.HTTPUnprocessableEntity: the object does not match the schema; the message says where.
    """
    raw = await request.read()  # aiohttp refuses bodies over client_max_size with 413 before this returns
    if not raw.strip():
        body: Any = {}
    elif request.content_type != JSON_TYPE:
        raise web.HTTPUnsupportedMediaType(text=f"send the body as {JSON_TYPE}")
    else:
        try:
            body = json.loads(raw.decode("utf-8"))
        except ValueError:  # UnicodeDecodeError and JSONDecodeError both
            raise web.HTTPBadRequest(text="the body is not valid UTF-8 JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    problem = check(body, schema)
    if problem is not None:
        raise web.HTTPUnprocessableEntity(text=problem)
    return body


def check(value: Any, schema: Schema, where: str = "body") -> str | None:
    """The first way ``value`` breaks ``schema``, in words; None when it conforms.

    Covers what request bodies declare: type (or anyOf), enum, string and integer bounds, array items, and
    objects with required properties and no others.
    """
    if "anyOf" in schema:
        problems = [check(value, option, where) for option in schema["anyOf"]]
        return None if None in problems else next(p for p in problems if p)
    expected = schema.get("type")
    if expected is not None and not _is_type(value, expected):
        return f"{where} must be {'an' if expected[0] in 'aeiou' else 'a'} {expected}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where} must be one of: {', '.join(map(str, schema['enum']))}"
    if isinstance(value, str):
        return _check_text(value, schema, where)
    if isinstance(value, int) and not isinstance(value, bool):
        return _check_number(value, schema, where)
    if isinstance(value, list):
        return _check_list(value, schema, where)
    if isinstance(value, dict):
        return _check_object(value, schema, where)
    return None


def _is_type(value: Any, expected: str) -> bool:
    if isinstance(value, bool) and expected != "boolean":
        return False  # JSON true is not the integer 1
    return isinstance(value, JSON_TYPES[expected])


def _check_text(value: str, schema: Schema, where: str) -> str | None:
    if len(value) < schema.get("minLength", 0):
        return f"{where} must not be empty"
    if len(value) > schema.get("maxLength", len(value)):
        return f"{where} must be at most {schema['maxLength']} characters"
    return None


def _check_number(value: int, schema: Schema, where: str) -> str | None:
    low, high = schema.get("minimum"), schema.get("maximum")
    if (low is not None and value < low) or (high is not None and value > high):
        return f"{where} must lie between {low} and {high}"
    return None


def _check_list(value: list[Any], schema: Schema, where: str) -> str | None:
    if len(value) > schema.get("maxItems", len(value)):
        return f"{where} must hold at most {schema['maxItems']} items"
    problems = (check(item, schema.get("items", {}), f"{where}[{i}]") for i, item in enumerate(value))
    return next((p for p in problems if p), None)


def _check_object(value: dict[str, Any], schema: Schema, where: str) -> str | None:
    properties = schema.get("properties", {})
    missing = [name for name in schema.get("required", []) if name not in value]
    if missing:
        return f"{where} lacks {', '.join(missing)}"
    unknown = sorted(set(value) - set(properties))
    if unknown and schema.get("additionalProperties") is False:
        return f"{where} has unknown field {unknown[0]!r}; known: {', '.join(properties) or 'none'}"
    inner = "" if where == "body" else f"{where}."
    problems = (check(value[name], properties[name], f"{inner}{name}") for name in properties if name in value)
    return next((p for p in problems if p), None)
