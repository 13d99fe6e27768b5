"""The digest benchmark's anchor: the digest's figures the straightforward way, ORM objects loaded into pandas.

What a developer would write without reporting.aggregates: load the Feedback of the eight trend weeks, the
Analysis, Conversation and SurveyStart objects of this week and last (only what the figures need), turn them
into DataFrames and compute CSAT, NPS, CES, completion rate, sentiment and category shares, and per-branch
category counts there. Same definitions as reporting.figures (top-2 box, promoters minus detractors, latest
analysis per feedback, hidden below the minimum sample), no intervals. Returns the flat figure names
bench/reporting_digest.py compares: "csat@2026-W09", "category.waiting_time@2026-W08", "branch.B001.fees_charges@...".
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from sqlalchemy import select

from reporting.aggregates import utc_days
from reporting.periods import Period
from store import Database
from store.models import Analysis, Branch, Conversation, Feedback, SurveyStart

Figures = dict[str, float | None]
SENTIMENTS = ("positive", "neutral", "negative")


async def naive_figures(db: Database, weeks: Sequence[Period], *, min_responses: int) -> Figures:
    """Every figure the digest shows for the last of `weeks` (and the one before; CSAT and NPS for all)."""
    previous, current = weeks[-2], weeks[-1]
    first_day, last_day = utc_days(previous)[0], utc_days(current)[1]
    async with db.sessions() as session:
        feedback = (
            await session.scalars(
                select(Feedback).where(Feedback.submitted_at >= weeks[0].start, Feedback.submitted_at < current.end)
            )
        ).all()
        analyses = (
            await session.scalars(
                select(Analysis)
                .join(Feedback, Feedback.id == Analysis.feedback_id)
                .where(Feedback.submitted_at >= previous.start, Feedback.submitted_at < current.end)
            )
        ).all()
        conversations = (
            await session.scalars(
                select(Conversation).where(
                    Conversation.started_at >= previous.start, Conversation.started_at < current.end
                )
            )
        ).all()
        starts = (
            await session.scalars(select(SurveyStart).where(SurveyStart.day >= first_day, SurveyStart.day < last_day))
        ).all()
        codes = {b.id: b.code for b in (await session.scalars(select(Branch))).all()}
    answers = _frame(feedback, ["id", "branch_id", "csat", "nps", "ces", "submitted_at"])
    answers["week"] = _week_of(answers["submitted_at"], weeks)
    figures: Figures = {}
    for week in weeks:
        figures |= _scores(answers[answers["week"] == week.label], week.label, min_responses)
    read = _latest(_frame(analyses, ["id", "feedback_id", "sentiment", "categories"]), answers)
    visits = _frame(conversations, ["started_at", "status"])
    visits["week"] = _week_of(visits["started_at"], weeks)
    opens = _frame(starts, ["day", "count"])
    for week in (previous, current):
        figures |= _texts(read[read["week"] == week.label], week.label, min_responses)
        figures[f"completion_rate@{week.label}"] = _completion(visits[visits["week"] == week.label], opens, week,
                                                               min_responses)  # fmt: skip
    figures |= _branch_counts(read[read["week"] == current.label], codes, current.label, min_responses)
    return figures


def _frame(objects: Sequence[object], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame([{c: getattr(o, c) for c in columns} for o in objects], columns=columns)


def _week_of(moments: pd.Series, weeks: Sequence[Period]) -> pd.Series:
    edges = pd.DatetimeIndex([w.start for w in weeks] + [weeks[-1].end])
    return pd.cut(pd.to_datetime(moments, utc=True), bins=edges, right=False, labels=[w.label for w in weeks])


def _scores(week: pd.DataFrame, label: str, min_responses: int) -> Figures:
    csat, nps, ces = week["csat"].dropna(), week["nps"].dropna(), week["ces"].dropna()
    return {
        f"responses@{label}": float(len(week)),
        f"csat@{label}": 100 * float((csat >= 4).mean()) if len(csat) >= max(min_responses, 1) else None,
        f"nps@{label}": 100 * float((nps >= 9).mean() - (nps <= 6).mean()) if len(nps) >= max(min_responses, 1)
        else None,
        f"ces@{label}": float(ces.mean()) if len(ces) >= max(min_responses, 2) else None,
    }  # fmt: skip


def _latest(analyses: pd.DataFrame, answers: pd.DataFrame) -> pd.DataFrame:
    """Each feedback's newest analysis with the feedback's branch and week; categories as bare names."""
    latest = analyses.sort_values("id").groupby("feedback_id").tail(1)
    latest = latest.merge(
        answers[["id", "branch_id", "week"]], left_on="feedback_id", right_on="id", suffixes=("_a", "")
    )
    latest["sentiment"] = latest["sentiment"].map(str)
    latest["names"] = [[c[0] if isinstance(c, list) else c for c in labels] for labels in latest["categories"]]
    return latest


def _texts(week: pd.DataFrame, label: str, min_responses: int) -> Figures:
    analysed = len(week)
    enough = analysed >= max(min_responses, 1)
    counts = week["sentiment"].value_counts()
    figures: Figures = {
        f"sentiment.{s}@{label}": 100 * counts.get(s, 0) / analysed if enough else None for s in SENTIMENTS
    }
    mentions = week["names"].explode().dropna().value_counts()
    for category, count in mentions.items():
        figures[f"category.{category}@{label}"] = 100 * min(int(count), analysed) / analysed if enough else None
    return figures


def _completion(visits: pd.DataFrame, opens: pd.DataFrame, week: Period, min_responses: int) -> float | None:
    first, end = utc_days(week)
    link_opens = int(opens.loc[(opens["day"] >= first) & (opens["day"] < end), "count"].sum())
    started = len(visits)
    completed = int((visits["status"].map(str) == "completed").sum())
    denominator = max(link_opens, started)
    if denominator < max(min_responses, 1):
        return None
    return 100 * min(completed, denominator) / denominator


def _branch_counts(week: pd.DataFrame, codes: dict[int, str], label: str, min_responses: int) -> Figures:
    """Category mentions per branch, for branches with enough analysed comments (as the digest's chart)."""
    figures: Figures = {}
    for branch_id, rows in week.groupby("branch_id"):
        if len(rows) < max(min_responses, 1):
            continue
        for category, count in rows["names"].explode().dropna().value_counts().items():
            figures[f"branch.{codes[int(branch_id)]}.{category}@{label}"] = float(count)
    return figures
