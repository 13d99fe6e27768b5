"""The audit log for administrators: who did what, when, to what, with the state before and after; and its CSV.

Filters are the query string of both the page and the export, so "download" gives exactly the rows on screen
(all pages of them). The CSV streams in chunks and neutralises formulas as reporting's exports do: the log holds
names and notes that a spreadsheet must not run.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
from aiohttp import web
from multidict import MultiMapping
from sqlalchemy import ColumnElement, Row, Select, select

from reporting.periods import local_midnight
from reporting.tables import neutralise_formulas
from store import Database
from store.audit import audit_entry
from store.models import ActorKind, AuditEntry, StaffRole, StaffUser
from store.staff import canonical_username
from web.auth import CONSOLE, SECURITY_HEADERS, csrf_token, require_role
from web.keys import DATABASE
from web.listing import link, parse_choice, parse_days, parse_page, parse_text
from web.options import CONSOLE_OPTIONS
from web.pages import render

AUDIT_PATH = f"{CONSOLE}/audit"
PAGE_SIZE = 50
CHUNK_ROWS = 2000
KINDS = tuple(kind.value for kind in ActorKind)
CSV_COLUMNS = [
    "id",
    "at",
    "actor_kind",
    "actor",
    "actor_id",
    "action",
    "target_type",
    "target_id",
    "before",
    "after",
    "remote_addr",
]


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """The page's query string, validated: an actor's username, a kind of actor, an action (or its prefix ending
    in "."), a target type and local days."""

    actor: str | None = None
    kind: str | None = None
    action: str | None = None
    target_type: str | None = None
    first_day: date | None = None
    last_day: date | None = None

    def query(self) -> dict[str, str]:
        names = {"first_day": "from", "last_day": "to"}
        values = {names.get(name, name): getattr(self, name) for name in self.__dataclass_fields__}
        return {name: str(value) for name, value in values.items() if value is not None}


async def show_audit(request: web.Request) -> web.Response:
    user = require_role(request, StaffRole.ADMIN)
    wanted = parse_filter(request.query)
    page = parse_page(request.query.get("page"))
    db, timezone = request.app[DATABASE], request.app[CONSOLE_OPTIONS].timezone
    statement = audit_statement(wanted, timezone).limit(PAGE_SIZE + 1).offset((page - 1) * PAGE_SIZE)
    async with db.sessions() as session:
        rows = list(await session.execute(statement))
    entries = [_entry(row, timezone) for row in rows[:PAGE_SIZE]]
    query = wanted.query()
    return render(
        request,
        "audit.html",
        user=user,
        csrf=csrf_token(request),
        wanted=wanted,
        entries=entries,
        kinds=KINDS,
        page=page,
        export=link(f"{AUDIT_PATH}.csv", query),
        previous=link(AUDIT_PATH, query | {"page": str(page - 1)}) if page > 1 else None,
        next=link(AUDIT_PATH, query | {"page": str(page + 1)}) if len(rows) > PAGE_SIZE else None,
    )


async def export_audit(request: web.Request) -> web.StreamResponse:
    """Stream every entry the filters select as CSV (UTF-8 with a byte-order mark, for Excel), newest first.

    The export is itself a staff action, recorded (with its filters) before the first row leaves.
    """
    user = require_role(request, StaffRole.ADMIN)
    wanted = parse_filter(request.query)
    db, timezone = request.app[DATABASE], request.app[CONSOLE_OPTIONS].timezone
    chosen = {name: str(value) for name, value in asdict(wanted).items() if value is not None}
    async with db.writing(), db.sessions() as session, session.begin():
        session.add(audit_entry(actor_kind=ActorKind.STAFF, actor_id=user.id, action="audit.exported",
                                target_type="audit_log", target_id=None, after={"filters": chosen}))  # fmt: skip
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": 'attachment; filename="closeloop-audit.csv"',
        }
    )
    # The guard adds these after the handler returns, too late for a response whose headers are already sent.
    response.headers.update(SECURITY_HEADERS | {"Cache-Control": "no-store"})
    await response.prepare(request)
    await response.write("\ufeff".encode())
    is_first = True
    async for chunk in _chunks(db, audit_statement(wanted, timezone)):
        frame = neutralise_formulas(pd.DataFrame([_csv_row(row, timezone) for row in chunk], columns=CSV_COLUMNS))
        await response.write(frame.to_csv(index=False, header=is_first, lineterminator="\r\n").encode())
        is_first = False
    if is_first:
        await response.write((",".join(CSV_COLUMNS) + "\r\n").encode())
    await response.write_eof()
    return response


def parse_filter(query: MultiMapping[str]) -> AuditFilter:
    """Read the filters from a query string.

    Raises:
        web.HTTPBadRequest: a malformed day or kind, an over-long text, a range ending before it starts.
    """
    first, last = parse_days(query.get("from"), query.get("to"))
    actor = parse_text(query.get("actor"))
    return AuditFilter(
        actor=canonical_username(actor) if actor else None,
        kind=parse_choice(query.get("kind"), KINDS),
        action=parse_text(query.get("action")),
        target_type=parse_text(query.get("target_type")),
        first_day=first,
        last_day=last,
    )


def audit_statement(wanted: AuditFilter, timezone: str) -> Select[Any]:
    """Entries with their actor's username (an outer join: the trail keeps entries of users since removed)."""
    return (
        select(AuditEntry, StaffUser.username)
        .outerjoin(StaffUser, (AuditEntry.actor_kind == ActorKind.STAFF) & (StaffUser.id == AuditEntry.actor_id))
        .where(*_conditions(wanted, timezone))
        .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
    )


def _conditions(wanted: AuditFilter, timezone: str) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if wanted.actor is not None:
        conditions.append(StaffUser.username == wanted.actor)
    if wanted.kind is not None:
        conditions.append(AuditEntry.actor_kind == wanted.kind)
    if wanted.action is not None:
        # "case." selects every case action; anything else is one action by its exact name.
        action = wanted.action
        is_prefix = action.endswith(".")
        conditions.append(
            AuditEntry.action.startswith(action, autoescape=True) if is_prefix else AuditEntry.action == action
        )
    if wanted.target_type is not None:
        conditions.append(AuditEntry.target_type == wanted.target_type)
    if wanted.first_day is not None:
        conditions.append(AuditEntry.at >= local_midnight(wanted.first_day, timezone))
    if wanted.last_day is not None:
        conditions.append(AuditEntry.at < local_midnight(wanted.last_day + timedelta(days=1), timezone))
    return conditions


async def _chunks(db: Database, statement: Select[Any]) -> AsyncIterator[Sequence[Row[Any]]]:
    """The statement's rows in chunks from a server-side cursor: the whole log never sits in memory."""
    async with db.sessions() as session:
        result = await session.stream(statement.execution_options(yield_per=CHUNK_ROWS))
        async for chunk in result.partitions(CHUNK_ROWS):
            yield chunk


def _entry(row: Any, timezone: str) -> dict[str, Any]:
    """One entry for the page: who, when, what, and each field that was before or after, side by side."""
    entry: AuditEntry = row.AuditEntry
    before, after = entry.before or {}, entry.after or {}
    fields = [
        {
            "name": name,
            "before": _json(before[name]) if name in before else "",
            "after": _json(after[name]) if name in after else "",
            "is_changed": (name in before) != (name in after) or before.get(name) != after.get(name),
        }
        for name in sorted(before.keys() | after.keys())
    ]
    return {
        "id": entry.id,
        "at": _local(entry.at, timezone),
        "kind": str(entry.actor_kind),
        "actor": row.username,
        "actor_id": entry.actor_id,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "fields": fields,
        "remote_addr": entry.remote_addr,
    }


def _csv_row(row: Any, timezone: str) -> list[Any]:
    entry: AuditEntry = row.AuditEntry
    return [
        entry.id,
        _local(entry.at, timezone, seconds=True),
        str(entry.actor_kind),
        row.username,
        entry.actor_id,
        entry.action,
        entry.target_type,
        entry.target_id,
        "" if entry.before is None else _json(entry.before),
        "" if entry.after is None else _json(entry.after),
        entry.remote_addr,
    ]


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _local(moment: datetime, timezone: str, *, seconds: bool = False) -> str:
    local = moment.astimezone(ZoneInfo(timezone))
    return local.isoformat(timespec="seconds") if seconds else local.strftime("%Y-%m-%d %H:%M")
