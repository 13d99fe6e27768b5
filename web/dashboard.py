"""The dashboard: headline figures with their change, weekly trends, categories and a table per branch or counter.

Figures come from reporting.metrics with the minimum-n rule, so a small group shows "not enough responses" and
never a number. Every bar, point, tile and row links to the feedback list filtered to exactly the rows it counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from functools import partial
from operator import attrgetter
from typing import Any

from aiohttp import web
from markupsafe import Markup
from sqlalchemy import Select, select

from reporting.figures import Change, Figure, compare_figures
from reporting.metrics import metrics_by, metrics_for
from reporting.periods import Period, range_period, week_label, week_period, zone
from reporting.report import MetricsReport
from reporting.scope import Dimension, ReportingError, Scope, staff_branches
from store import Database
from store.models import Branch, Counter, StaffUser, utcnow
from store.staff import list_users
from web.audit import AUDIT_PATH, export_audit, show_audit
from web.auth import CONSOLE, csrf_token, current_user, scope_of
from web.feedback import ANY, FEEDBACK_PATH, SENTIMENTS, FeedbackFilter, feedback_link, show_feedback
from web.keys import DATABASE
from web.options import CONSOLE_OPTIONS, ConsoleOptions
from web.pages import error_page, language_of, render
from web.scoped_statements import per_scope
from web.shared_results import SharedResults
from web.svg import Mark, bar_chart, column_chart, line_chart
from web.texts import texts

log = logging.getLogger(__name__)

DASHBOARD_PATH = f"{CONSOLE}/dashboard"
DEFAULT_WEEKS = 8
MAX_WEEKS = 26
WEEK_CHOICES = (4, 8, 13, 26)
TILES = ("csat", "nps", "ces", "completion_rate", "cases.first_response_sla")  # MetricsReport attributes
RATINGS = ("csat", "nps", "ces")  # figures whose rows the list can show: the feedback that gave the rating
FRESH_FOR = 300.0  # seconds a scope's figures are reused; the page says when they were computed
STALE_FOR = 3600.0  # seconds more they are still shown at once while a background computation renews them
REMEMBERED = 256  # scopes and windows kept at once
WARM_AFTER = 60.0  # seconds after the start before the first warming pass: start-up and its first requests first
WARM_EVERY = 3600.0  # seconds between passes: a new week's dashboards are ready within its first hour

COUNTS = frozenset({"ratings", "starts", "conversations", "cases"})  # reporting.aggregates.PARTS but comments


@dataclass(frozen=True, slots=True)
class Choice:
    """A scope the user may pick: its query value ("all", "region:North", "branch:MAIN") and its name."""

    value: str
    label: str
    scope: Scope


@dataclass(frozen=True, slots=True)
class Window:
    """The weeks shown, the range they make up together, and the range of as many weeks before it."""

    weeks: tuple[Period, ...]
    current: Period
    previous: Period


@dataclass(frozen=True, slots=True)
class Names:
    """A scope's branches by code and counters by (branch code, counter code), each named in both languages."""

    branches: dict[str, dict[str, str]]
    counters: dict[tuple[str, str], dict[str, str]]


@dataclass(frozen=True, slots=True)
class Figures:
    """One scope's reports for one window, shared by every request that shows them, and their part of the page
    in each language, rendered once per language: the bank's 200-branch table took milliseconds a request."""

    ranges: dict[Dimension, list[MetricsReport]]  # both ranges, "all" and the breakdown, without comment figures
    comments: MetricsReport  # the current range's sentiment and categories, for the whole scope
    weekly: list[MetricsReport]  # each week's ratings
    names: Names
    _html: dict[str, Markup] = field(default_factory=dict, init=False, repr=False)

    def html(self, language: str, render_once: Callable[[], Markup]) -> Markup:
        if language not in self._html:
            self._html[language] = render_once()
        return self._html[language]


FIGURES = web.AppKey("dashboard_figures", SharedResults[Figures])
WARMING = web.AppKey("dashboard_warming", asyncio.Task[None])


def add_dashboard_routes(app: web.Application) -> None:
    """Register the dashboard, the feedback list its charts drill down to, and the audit log with its export."""
    app[FIGURES] = SharedResults(ttl=FRESH_FOR, size=REMEMBERED, stale_for=STALE_FOR)
    app.on_startup.append(_start_warming)
    app.on_shutdown.append(_stop_computing)  # before the cleanup contexts close the database
    app.router.add_get(DASHBOARD_PATH, show_dashboard)
    app.router.add_get(FEEDBACK_PATH, show_feedback)
    app.router.add_get(AUDIT_PATH, show_audit)
    app.router.add_get(f"{AUDIT_PATH}.csv", export_audit)


async def _start_warming(app: web.Application) -> None:
    app[WARMING] = asyncio.create_task(_keep_warm(app), name="warm dashboards")


async def _stop_computing(app: web.Application) -> None:
    warming = app.get(WARMING)
    if warming is not None:
        warming.cancel()
        await asyncio.gather(warming, return_exceptions=True)
    await app[FIGURES].close()


async def _keep_warm(app: web.Application) -> None:
    await asyncio.sleep(WARM_AFTER)
    while True:
        try:
            await warm_dashboards(app)
        except Exception:  # a database down for a while: the pages compute on demand, the next pass tries again
            log.exception("warming the dashboards failed")
        await asyncio.sleep(WARM_EVERY)


async def warm_dashboards(app: web.Application) -> int:
    """Make the default dashboard of every active staff user's scope fresh, one scope at a time; return how many.

    At a million rows the first viewer of a scope after a restart, or in a new week, would otherwise wait one to
    three seconds for its figures; the pass costs about 0.1 s of CPU per scope, in the background.
    """
    db, options = app[DATABASE], app[CONSOLE_OPTIONS]
    window = _window(None, None, options.timezone)
    scopes: dict[Scope, None] = {}
    seen = set()
    for user in await list_users(db):
        if user.is_active and (user.scope_kind, user.scope_value) not in seen:  # many users share one scope
            seen.add((user.scope_kind, user.scope_value))
            choices = _choices(user, await _branches(db, user, "en"), texts("en"))
            if choices:
                scopes[choices[0].scope] = None
    for scope in scopes:
        compute = partial(_figures, db, scope, window, min_responses=options.min_responses)
        with contextlib.suppress(ReportingError):  # a scope with no branch left in it: its page answers 404
            await app[FIGURES].warm(_key(scope, window, options), compute)
    return len(scopes)


def _key(scope: Scope, window: Window, options: ConsoleOptions) -> tuple[Any, ...]:
    """What a dashboard's figures depend on: the scope, the last week and the number of weeks, the minimum n."""
    return scope, window.weeks[-1].label, len(window.weeks), options.min_responses


async def show_dashboard(request: web.Request) -> web.Response:
    user = current_user(request)
    db, options = request.app[DATABASE], request.app[CONSOLE_OPTIONS]
    language = language_of(request)
    t = texts(language)
    choices = _choices(user, await _branches(db, user, language), t)
    chosen = _chosen(choices, request.query.get("scope"))
    window = _window(request.query.get("week"), request.query.get("weeks"), options.timezone)
    try:
        figures, computed_at = await request.app[FIGURES].get(
            _key(chosen.scope, window, options),
            partial(_figures, db, chosen.scope, window, min_responses=options.min_responses),
        )
    except ReportingError:  # a region or branch in the user's scope without any branch left in it
        return error_page(request, 404)
    return render(
        request,
        "dashboard.html",
        user=user,
        csrf=csrf_token(request),
        choices=choices,
        chosen=chosen,
        weeks=len(window.weeks),
        week_choices=WEEK_CHOICES,
        last_week=window.weeks[-1].label,
        window=window,
        figures=figures.html(language, partial(_render_figures, request, figures, chosen.scope, window)),
        computed_at=computed_at.astimezone(zone(options.timezone)).strftime("%H:%M"),
        fresh_minutes=round(FRESH_FOR / 60),
    )


async def _figures(db: Database, scope: Scope, window: Window, *, min_responses: int) -> Figures:
    """The reports and names behind the page, from concurrent rounds that each fetch only what the page shows.

    The headline compares both ranges and the table breaks the current one down, from ratings, conversations and
    cases; the category and sentiment charts need the comments of the current range for the whole scope alone,
    and the trends the ratings of each week. Comments cost the most (every analysis is read to find each
    feedback's latest), so they are counted once, not per branch, per week and for the previous range too.
    """
    limits = {"within": scope, "min_responses": min_responses}
    ranges, comments, weekly, names = await asyncio.gather(
        metrics_for(db, ["all", _breakdown(scope)], [window.previous, window.current], parts=COUNTS, **limits),
        metrics_by(db, "all", window.current, parts={"comments"}, **limits),
        metrics_by(db, "all", window.weeks, parts={"ratings"}, **limits),
        _names(db, scope),
    )
    return Figures(ranges, comments[0], weekly, names)


def _render_figures(request: web.Request, figures: Figures, scope: Scope, window: Window) -> Markup:
    """The tiles, charts and table, in the request's language: autoescaped HTML, shown as it is."""
    options, language = request.app[CONSOLE_OPTIONS], language_of(request)
    t = texts(language)
    previous, current = figures.ranges["all"]
    base = _rows_of(scope)
    whole = _days(base, window.current)
    breakdown = _breakdown(scope)
    page = render(
        request,
        "dashboard_figures.html",
        tiles=_tiles(current, previous, whole, t, language, weeks=len(window.weeks)),
        charts=_charts(figures.weekly, figures.comments, base, whole, t, options, language),
        table=_table([r for r in figures.ranges[breakdown] if r.period == window.current], figures.names, language),
        breakdown=breakdown,
    )
    return Markup(page.text)  # noqa: S704 - the template's own output, every value in it escaped


def _breakdown(scope: Scope) -> Dimension:
    """What the table lists: a branch's counters, else the branches."""
    return "counter" if scope.kind == "branch" else "branch"


async def _branches(db: Database, user: StaffUser, language: str) -> list[tuple[str, str | None, str]]:
    """The branches the user may see as (code, region, name), by code: what the scope can be chosen from."""
    async with db.engine.connect() as conn:
        return [tuple(row) for row in await conn.execute(_branches_in_scope(user, language))]


@per_scope
def _branches_in_scope(user: StaffUser, language: str) -> Select[Any]:
    name = Branch.name_zh if language == "zh" else Branch.name_en
    return select(Branch.code, Branch.region, name).where(staff_branches(user)).order_by(Branch.code)


async def _names(db: Database, scope: Scope) -> Names:
    """The names of what the table lists, in both languages: a branch's counters, or the scope's branches."""
    if scope.kind == "branch":
        statement = (
            select(Branch.code, Counter.code, Counter.name_en, Counter.name_zh)
            .join(Branch, Branch.id == Counter.branch_id)
            .where(Branch.code == scope.branch)
        )
        async with db.engine.connect() as conn:
            rows = await conn.execute(statement)
            return Names(branches={}, counters={(branch, code): {"en": en, "zh": zh} for branch, code, en, zh in rows})
    statement = select(Branch.code, Branch.name_en, Branch.name_zh)
    if scope.kind == "region":
        statement = statement.where(Branch.region == scope.region)
    async with db.engine.connect() as conn:
        rows = await conn.execute(statement)
        return Names(branches={code: {"en": en, "zh": zh} for code, en, zh in rows}, counters={})


def _choices(user: StaffUser, branches: list[tuple[str, str | None, str]], t: dict[str, str]) -> list[Choice]:
    """The user's own scope first, then the regions and branches inside it."""
    own = scope_of(user)
    choices = []
    if own.kind == "all":
        choices.append(Choice("all", t["scope_all"], Scope.bank()))
    if own.kind in ("all", "region"):
        regions = sorted({region for _, region, _ in branches if region})
        choices += [Choice(f"region:{r}", t["scope_region"].format(value=r), Scope.of_region(r)) for r in regions]
    choices += [Choice(f"branch:{code}", f"{name} ({code})", Scope.of_branch(code)) for code, _, name in branches]
    return choices


def _chosen(choices: list[Choice], value: str | None) -> Choice:
    """The asked scope if the user may see it; 404 otherwise, the same as for a scope that does not exist."""
    if not choices:
        raise web.HTTPNotFound()
    if not value:
        return choices[0]
    for choice in choices:
        if choice.value == value:
            return choice
    raise web.HTTPNotFound()


def _window(week: str | None, weeks: str | None, timezone: str) -> Window:
    """The `weeks` ISO weeks up to `week` (default: this week, local time)."""
    if weeks and not (weeks.isdigit() and 1 <= int(weeks) <= MAX_WEEKS):
        raise web.HTTPBadRequest()
    count = int(weeks) if weeks else DEFAULT_WEEKS
    try:
        last = week_period(week or week_label(utcnow().astimezone(zone(timezone)).date()), timezone)
    except ValueError:
        raise web.HTTPBadRequest() from None
    mondays = [last.first_day - timedelta(weeks=count - 1 - i) for i in range(count)]
    periods = tuple(week_period(week_label(monday), timezone) for monday in mondays)
    current = range_period(periods[0].first_day, periods[-1].last_day, timezone)
    return Window(periods, current, current.previous())


def _rows_of(scope: Scope) -> FeedbackFilter:
    """The feedback list's filter for a scope's rows (the user's own scope applies there too)."""
    return FeedbackFilter(region=scope.region, branch=scope.branch, counter=scope.counter)


def _days(rows: FeedbackFilter, period: Period) -> FeedbackFilter:
    return replace(rows, first_day=period.first_day, last_day=period.last_day)


def _tiles(
    current: MetricsReport,
    previous: MetricsReport,
    rows: FeedbackFilter,
    t: dict[str, str],
    language: str,
    *,
    weeks: int,
) -> list[dict[str, Any]]:
    """Headline figures of the weeks shown against as many weeks before, and the link to the rows of each."""
    tiles = [
        {
            "label": t["dash_volume"],
            "shown": str(current.responses),
            "is_hidden": False,
            "n": None,
            "href": feedback_link(rows),
            "change": _count_change(current.responses - previous.responses, t, weeks),
        }
    ]
    for name in TILES:
        figure = attrgetter(name)(current)
        link = feedback_link(rows, **{name: ANY}) if name in RATINGS and figure.value is not None else None
        tiles.append(
            {
                "label": t[f"dash_{name.replace('.', '_')}"],
                "shown": figure.render(language),
                "is_hidden": figure.value is None,
                "n": figure.n,
                "href": link,
                "change": _change(compare_figures(figure, attrgetter(name)(previous)), t, weeks),
            }
        )
    return tiles


def _change(change: Change, t: dict[str, str], weeks: int) -> dict[str, Any]:
    if change.delta is None:
        return {"text": t["dash_no_comparison"], "direction": None, "is_beyond_noise": False}
    unit = {"share": f" {t['dash_points']}", "nps": "", "mean": ""}[change.current.kind]
    delta = f"{change.delta:+.1f}" if change.current.kind == "mean" else f"{change.delta:+.0f}"
    noise = t["dash_beyond_noise"] if change.is_beyond_noise else t["dash_within_noise"]
    text = t["dash_vs_previous"].format(delta=f"{delta}{unit}", weeks=weeks) + f" ({noise})"
    return {"text": text, "direction": change.direction, "is_beyond_noise": change.is_beyond_noise}


def _count_change(delta: int, t: dict[str, str], weeks: int) -> dict[str, Any]:
    direction = "up" if delta > 0 else "down" if delta < 0 else "flat"
    text = t["dash_vs_previous"].format(delta=f"{delta:+d}", weeks=weeks)
    return {"text": text, "direction": direction, "is_beyond_noise": False}


def _charts(
    weekly: list[MetricsReport],
    comments: MetricsReport,
    base: FeedbackFilter,
    whole: FeedbackFilter,
    t: dict[str, str],
    options: ConsoleOptions,
    language: str,
) -> dict[str, Markup | None]:
    """Trends and volume per week, category and sentiment shares over the whole window."""
    weeks = [(report, _days(base, report.period)) for report in weekly]

    def trend(name: str) -> list[Mark]:
        return [_mark(r.period, getattr(r, name), language, feedback_link(rows, **{name: ANY})) for r, rows in weeks]

    volume = [
        Mark(r.period.label, float(r.responses), str(r.responses), feedback_link(rows), tick=_tick(r.period))
        for r, rows in weeks
    ]
    categories = sorted(comments.categories.items(), key=lambda item: -(item[1].value or 0.0))
    return {
        "csat": line_chart(trend("csat"), title=t["dash_csat_trend"], low=0.0, high=100.0),
        "nps": line_chart(trend("nps"), title=t["dash_nps_trend"], low=-100.0, high=100.0),
        "volume": column_chart(volume, title=t["dash_volume_chart"]),
        "categories": _shares(
            [(options.category_name(c, language), f, feedback_link(whole, category=c)) for c, f in categories],
            title=t["dash_categories"],
            t=t,
            language=language,
        ),
        "sentiment": _shares(
            [(t[f"fb_sentiment_{s}"], comments.sentiment[s], feedback_link(whole, sentiment=s)) for s in SENTIMENTS],
            title=t["dash_sentiment"],
            t=t,
            language=language,
        ),
    }


def _mark(period: Period, figure: Figure, language: str, href: str) -> Mark:
    caption = figure.render(language) + ("" if figure.value is None else f" (n={figure.n})")
    return Mark(period.label, figure.value, caption, href if figure.value is not None else None, tick=_tick(period))


def _tick(week: Period) -> str:
    """The axis label of a week: "W47" (the tooltip keeps "2026-W47")."""
    return week.label.rsplit("-", 1)[-1]


def _shares(items: list[tuple[str, Figure, str]], *, title: str, t: dict[str, str], language: str) -> Markup | None:
    """Bars of shares of analysed comments, captioned with how many comments each is; None while too few."""
    shown = [(label, figure, href) for label, figure, href in items if figure.value is not None]
    if not shown:
        return None
    marks = [
        Mark(label, figure.value, t["dash_share_of"].format(share=figure.render(language), count=_count(figure)), href)
        for label, figure, href in shown
    ]
    return bar_chart(marks, title=title)


def _count(share: Figure) -> int:
    """How many comments a share stands for: the share is count / n exactly, so this undoes it."""
    return round((share.value or 0.0) * share.n / 100)


def _table(reports: list[MetricsReport], names: Names, language: str) -> list[dict[str, Any]]:
    """One row per branch or counter with its figures (hidden below the minimum) and the link to its rows."""
    rows = []
    for report in reports:
        scope = report.scope
        if scope.kind == "counter":
            named, name = names.counters.get((scope.branch or "", scope.counter or "")), scope.counter or ""
        else:
            named, name = names.branches.get(scope.branch or ""), scope.label
        if named:
            name = named.get(language, named["en"])
        link = feedback_link(_days(_rows_of(scope), report.period))
        rows.append(
            {
                "code": scope.counter if scope.kind == "counter" else scope.label,
                "name": name,
                "responses": report.responses,
                "href": link,
                **{name: getattr(report, name).render(language) for name in RATINGS},
            }
        )
    return rows
