"""Every word the weekly digest shows, in English and Chinese, and the digest's figures turned into display rows."""

from __future__ import annotations

from dataclasses import dataclass

from reporting.digest import CategoryMove, DigestData, Headline, change_interval
from reporting.figures import Change, Figure

LANGUAGES = ("en", "zh")
LABELS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Weekly digest",
        "subject": "Weekly digest: {scope}, {week}",
        "week": "Week {week} ({first} to {last})",
        "no_data": "No feedback was received this week.",
        "headlines": "Headline figures",
        "metric": "Figure",
        "this_week": "This week",
        "last_week": "Last week",
        "change": "Change",
        "interval": "95% interval",
        "responses": "Responses",
        "csat": "Satisfaction (CSAT)",
        "nps": "Net promoter score (NPS)",
        "ces": "Customer effort (CES)",
        "completion_rate": "Completion rate",
        "sentiment.positive": "Positive comments",
        "sentiment.neutral": "Neutral comments",
        "sentiment.negative": "Negative comments",
        "no_clear_change": "no clear change",
        "beyond_noise": "beyond noise",
        "points": "pts",
        "movers": "Categories that moved most",
        "no_movers": "No category's share of comments changed this week.",
        "share_of_comments": "share of comments {now} (last week {before})",
        "follow_up": "Cases and improvement tickets",
        "cases_new": "New cases",
        "cases_overdue": "Overdue cases",
        "cases_closed": "Closed cases",
        "tickets_new": "New tickets",
        "tickets_open": "Open tickets",
        "tickets_closed": "Closed tickets",
        "cases": "Cases",
        "tickets": "Tickets",
        "charts": "Charts",
        "trend_chart": "CSAT and NPS over the last 8 weeks",
        "categories_chart": "Comments per category and branch",
        "no_chart": "Not enough responses to draw this chart.",
        "footnote": "Figures behind fewer than {n} responses are not shown. A change is called out only when it is "
        "beyond week-to-week noise (95% confidence).",
        "telegram_more": "The full digest with all its charts is in the PDF below.",
        "new": "new",
        "overdue": "overdue",
        "closed": "closed",
        "open": "open",
        "sep": ": ",
    },
    "zh": {
        "title": "每周摘要",
        "subject": "每周摘要：{scope}，{week}",
        "week": "{week} 周（{first} 至 {last}）",
        "no_data": "本周没有收到客户反馈。",
        "headlines": "主要指标",
        "metric": "指标",
        "this_week": "本周",
        "last_week": "上周",
        "change": "变化",
        "interval": "95% 区间",
        "responses": "回复数",
        "csat": "满意度（CSAT）",
        "nps": "净推荐值（NPS）",
        "ces": "客户费力度（CES）",
        "completion_rate": "完成率",
        "sentiment.positive": "正面意见",
        "sentiment.neutral": "中性意见",
        "sentiment.negative": "负面意见",
        "no_clear_change": "无明显变化",
        "beyond_noise": "超出正常波动",
        "points": "个百分点",
        "movers": "变化最大的类别",
        "no_movers": "本周各类别意见占比没有变化。",
        "share_of_comments": "意见占比 {now}（上周 {before}）",
        "follow_up": "投诉个案与改进工单",
        "cases_new": "新个案",
        "cases_overdue": "逾期个案",
        "cases_closed": "已结个案",
        "tickets_new": "新工单",
        "tickets_open": "未结工单",
        "tickets_closed": "已结工单",
        "cases": "个案",
        "tickets": "工单",
        "charts": "图表",
        "trend_chart": "最近 8 周的满意度与净推荐值",
        "categories_chart": "各网点各类别意见数",
        "no_chart": "回复不足，无法绘制此图。",
        "footnote": "少于 {n} 份回复的指标不予显示。只有超出每周正常波动（95% 置信度）的变化才会特别标出。",
        "telegram_more": "完整摘要（含全部图表）见下方 PDF。",
        "new": "新增",
        "overdue": "逾期",
        "closed": "已结",
        "open": "未结",
        "sep": "：",
    },
}
ARROWS = {"up": "▲", "down": "▼", "flat": ""}


def labels(language: str) -> dict[str, str]:
    """The digest's words in the language, English for any language other than Chinese."""
    return LABELS["zh" if language.lower().startswith("zh") else "en"]


@dataclass(frozen=True, slots=True)
class Row:
    """One headline as the renderers show it: every cell already formatted in the reader's language."""

    label: str
    value: str
    interval: str
    previous: str
    change: str
    is_called_out: bool
    direction: str  # up, down, flat or "" (no comparison)


def headline_rows(digest: DigestData, language: str) -> list[Row]:
    """The responses count, then each headline figure, formatted."""
    words = labels(language)
    count_change = digest.responses - digest.previous_responses
    rows = [Row(words["responses"], str(digest.responses), "", str(digest.previous_responses),
                f"{count_change:+d}", False, "")]  # fmt: skip
    rows += [headline_row(h, language) for h in digest.headlines]
    return rows


def headline_row(headline: Headline, language: str) -> Row:
    words = labels(language)
    change = headline.change
    return Row(
        label=words[headline.name],
        value=headline.figure.render(language),
        interval=format_interval(headline.figure, language),
        previous=change.previous.render(language),
        change=format_change(change, language),
        is_called_out=change.is_beyond_noise,
        direction=change.direction or "",
    )


def format_interval(figure: Figure, language: str) -> str:
    """The figure's own confidence interval, e.g. "76% to 87%" ("" when hidden or without one)."""
    if figure.interval is None:
        return ""
    low, high = figure.interval
    joiner = " 至 " if labels(language) is LABELS["zh"] else " to "
    return joiner.join(_number(figure, v) for v in (low, high))


def format_change(change: Change, language: str) -> str:
    """The difference with its interval when beyond noise ("+6 pts (+2 to +10)"), else "no clear change"."""
    words = labels(language)
    if change.delta is None:
        return ""
    if not change.is_beyond_noise:
        return words["no_clear_change"]
    text = _delta(change.current, change.delta, language)
    interval = change_interval(change)
    if interval is not None:
        joiner = " 至 " if words is LABELS["zh"] else " to "
        text += f" ({joiner.join(_signed(change.current, v) for v in interval)})"
    return text


def mover_line(move: CategoryMove, digest: DigestData, language: str) -> str:
    """ "Waiting time: share of comments 24% (last week 12%), +12 pts"."""
    words = labels(language)
    change = move.change
    share = words["share_of_comments"].format(
        now=change.current.render(language), before=change.previous.render(language)
    )
    detail = format_change(change, language) or words["no_clear_change"]
    return f"{digest.category_name(move.category, language)}{words['sep']}{share}, {detail}"


def week_line(digest: DigestData, language: str) -> str:
    period = digest.period
    return labels(language)["week"].format(week=period.label, first=period.first_day.isoformat(),
                                           last=period.last_day.isoformat())  # fmt: skip


def subject(digest: DigestData, language: str) -> str:
    return labels(language)["subject"].format(scope=digest.scope_name(language), week=digest.period.label)


def _delta(figure: Figure, delta: float, language: str) -> str:
    if figure.kind == "share":
        unit = labels(language)["points"]
        return f"{delta:+.0f} {unit}"
    return f"{delta:+.1f}" if figure.kind == "mean" else f"{delta:+.0f}"


def _signed(figure: Figure, value: float) -> str:
    return f"{value:+.1f}" if figure.kind == "mean" else f"{value:+.0f}"


def _number(figure: Figure, value: float) -> str:
    if figure.kind == "share":
        return f"{value:.0f}%"
    return f"{value:.1f}" if figure.kind == "mean" else f"{value:.0f}"
