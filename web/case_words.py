"""A case record put into the words of the page: names in the user's language, local times, masked customer text.

Everything here is plain strings and numbers for the template, which escapes all of it; nothing is marked safe.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from reporting.cases import OPEN
from store.models import Analysis, CaseEvent, CaseStatus
from web.case_format import due_of, local_time, masked, name_in
from web.case_page import CaseRecord
from web.options import ConsoleOptions
from web.texts import texts


def describe_case(record: CaseRecord, *, language: str, options: ConsoleOptions, now: datetime) -> dict[str, Any]:
    """Everything the case page shows, in ``language`` and the operator's time zone."""
    t, case, zone = texts(language), record.case, options.timezone
    is_open = case.status in OPEN
    return {
        "id": case.id,
        "status": case.status.value,
        "is_open": is_open,
        "is_new": case.status == CaseStatus.NEW,
        "priority": case.priority.value,
        "branch": record.branch.name_zh if language == "zh" else record.branch.name_en,
        "branch_code": record.branch.code,
        "due": due_of(case.sla_due_at, now, is_open=is_open, timezone=zone, t=t),
        "opened": local_time(case.created_at, zone),
        "escalated": local_time(case.escalated_at, zone) if case.escalated_at else None,
        "reason": masked(case.reason),
        "assignee_id": case.assignee_id,
        "assignee": record.names.get(case.assignee_id) if case.assignee_id is not None else None,
        "resolution": case.resolution_code,
        "feedback": _feedback(record, language=language, timezone=zone),
        "transcript": [(step, _answer_text(value)) for step, value in record.answers],
        "analysis": _analysis(record.analysis, language=language, options=options, t=t),
        "correction": _correction(record, language=language, options=options, t=t),
        "history": [_event(event, actor, record.names, t=t, timezone=zone) for event, actor in record.events],
        "staff": record.staff,
        "categories": [(c, options.category_name(c, language)) for c in options.category_names],
    }


def label_names(analysis: Analysis) -> dict[str, Any]:
    """The labels a correction replaces: the latest analysis's sentiment and category ids."""
    return {"sentiment": str(analysis.sentiment), "categories": [_category(c)[0] for c in analysis.categories]}


def _feedback(record: CaseRecord, *, language: str, timezone: str) -> dict[str, Any]:
    feedback, counter = record.feedback, record.counter
    counter_name = None if counter is None else counter.name_zh if language == "zh" else counter.name_en
    return {
        "submitted": local_time(feedback.submitted_at, timezone),
        "language": feedback.language,
        "counter": counter_name,
        "csat": feedback.csat,
        "nps": feedback.nps,
        "ces": feedback.ces,
        "comment": masked(feedback.comment),
        "callback": feedback.callback_requested,
        # Shown unmasked, on purpose: the customer gave it for staff to call back, and this is where staff look.
        "phone": feedback.contact_phone if feedback.callback_requested else None,
        "dial": re.sub(r"[^\d+]", "", feedback.contact_phone or "") if feedback.callback_requested else None,
    }


def _answer_text(value: Any) -> str | None:
    """An answer as text, masked: a rating, a choice, a list of choices or the customer's own words."""
    if value is None:
        return None
    if isinstance(value, list):
        return ", ".join(masked(str(item)) for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{key}: {masked(str(item))}" for key, item in value.items())
    return masked(str(value))


def _analysis(analysis: Analysis | None, *, language: str, options: ConsoleOptions, t: Mapping[str, str]) -> Any:
    if analysis is None:
        return None
    scores = sorted((analysis.sentiment_scores or {}).items(), key=lambda pair: -pair[1])
    return {
        "model": analysis.model_version,
        "sentiment": str(analysis.sentiment),
        "scores": [(label, _percent(p)) for label, p in scores],
        "categories": [
            (options.category_name(c, language), _percent(score)) for c, score in map(_category, analysis.categories)
        ],
        "aspects": [_aspect(a, language=language, options=options) for a in analysis.aspects if isinstance(a, dict)],
        "flags": [_flag(f, language=language, options=options) for f in analysis.flag_reasons],
    }


def _category(value: Any) -> tuple[str, float | None]:
    """A stored category: [id, score] from the analyser, or a bare id from older rows."""
    if isinstance(value, list | tuple) and value:
        return str(value[0]), float(value[1]) if len(value) > 1 and value[1] is not None else None
    return str(value), None


def _aspect(aspect: Mapping[str, Any], *, language: str, options: ConsoleOptions) -> dict[str, Any]:
    category = aspect.get("category")
    scores = aspect.get("sentiment_scores") or {}
    sentiment = aspect.get("sentiment")
    return {
        "text": masked(str(aspect.get("text") or "")),
        "category": options.category_name(category, language) if category else None,
        "category_score": _percent(aspect.get("category_score")),
        "sentiment": sentiment,
        "sentiment_score": _percent(scores.get(sentiment)) if sentiment else None,
    }


def _flag(flag: Any, *, language: str, options: ConsoleOptions) -> dict[str, Any]:
    if not isinstance(flag, dict):  # an older row kept only the reason
        return {"name": None, "priority": None, "reason": masked(str(flag))}
    return {
        "name": name_in(options.flag_names, str(flag.get("id", "")), language),
        "priority": flag.get("priority"),
        "reason": masked(str(flag.get("reason") or "")),
    }


def _correction(record: CaseRecord, *, language: str, options: ConsoleOptions, t: Mapping[str, str]) -> str | None:
    correction = record.correction
    if correction is None:
        return None
    labels = [t[f"case_sentiment_{correction.sentiment}"]] if correction.sentiment else []
    labels += [options.category_name(c, language) for c in correction.categories]
    at = local_time(correction.at, options.timezone)
    return t["case_corrected"].format(name=correction.name, at=at, labels=", ".join(labels))


def _event(
    event: CaseEvent, actor: str | None, names: Mapping[int, str], *, t: Mapping[str, str], timezone: str
) -> dict[str, Any]:
    return {
        "at": local_time(event.created_at, timezone),
        "actor": actor or t["case_system"],
        "what": _what(event, names, t),
        "note": event.body,
    }


def _what(event: CaseEvent, names: Mapping[int, str], t: Mapping[str, str]) -> str:
    after = event.data.get("after") if isinstance(event.data, dict) else None
    after = after if isinstance(after, dict) else {}
    if event.kind == "assigned":
        assignee = after.get("assignee_id")
        if assignee is None:
            return t["case_event_unassigned"]
        return t["case_event_assigned"].format(name=names.get(assignee, f"#{assignee}"))
    if event.kind == "resolved":
        code = str(after.get("resolution_code") or "")
        return t["case_event_resolved"].format(code=t.get(f"case_code_{code}", code))
    key = f"case_event_{event.kind}"
    return t[key] if key in t else t["case_event_other"].format(kind=event.kind)


def _percent(value: Any) -> str | None:
    return f"{float(value):.0%}" if isinstance(value, int | float) else None
