"""The demo's content: five clearly labelled branches, bilingual bank-branch comments, and a seeded plan of visits.

Plain data and a generator, no database: config/demo_fill.py writes what `plan_demo` returns. Demo branches have
codes starting DEMO_, names starting "[DEMO] " / "【演示】" and regions of their own, so no demo row ever sits on
one of the operator's branches, every console page shows the label, and a demo is told apart (and removed) by
its branches alone. The same seed and moment give the same plan.
"""

from __future__ import annotations

import random
from collections import Counter as Tally
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from store.models import ScopeKind, StaffRole

DEMO_PREFIX = "DEMO_"
WINDOW = timedelta(days=28)  # the worsening branch gets worse over the last ticket window (the default one)
OPEN_HOURS = {9: 0.8, 10: 1.2, 11: 1.3, 12: 1.0, 13: 0.9, 14: 1.0, 15: 1.1, 16: 0.8}  # local hour -> visit weight
DAY_WEIGHT = (1.0, 1.0, 1.0, 1.0, 1.1, 0.6, 0.0)  # Monday to Sunday; branches are closed on Sundays
COMMENT_SHARE = {"bad": 0.85, "ok": 0.4, "good": 0.45}  # "what went wrong" is required, "what went well" optional
CSAT = {"bad": (1, 2, 2, 2, 3), "ok": (3, 3, 4), "good": (4, 5, 5, 5)}
NPS = {"bad": (0, 2, 3, 4, 5, 6), "ok": (6, 7, 7, 8), "good": (8, 9, 9, 10, 10)}
CES = {"bad": (1, 2, 2, 3, 4), "ok": (4, 5, 5), "good": (6, 6, 7, 7)}  # 7: it was easy


@dataclass(frozen=True, slots=True)
class DemoBranch:
    """A demo branch and how its visits go: size, language mix, what they are about, how often they go badly."""

    code: str
    name_en: str
    name_zh: str
    region: str
    counters: tuple[tuple[str, str, str], ...]  # (code, English name, Chinese name)
    visits_per_day: float
    zh_share: float
    topics: dict[str, float]  # a taxonomy category (or "praise") -> weight
    unhappy: float  # the share of visits that go badly
    worsening: str | None = None  # a topic that goes wrong more and more often over the last window


COUNTER_1 = ("C1", "Counter 1", "1号窗口")
COUNTER_2 = ("C2", "Counter 2", "2号窗口")
WEALTH = ("VIP", "Wealth management desk", "理财专柜")
SELF_SERVICE = ("ATM", "Self-service area", "自助服务区")
BRANCHES = (
    DemoBranch("DEMO_HARBOUR", "[DEMO] Harbour Road Branch", "【演示】港湾路支行", "demo-north",
               (COUNTER_1, COUNTER_2, WEALTH, SELF_SERVICE), 16, 0.6,
               {"waiting_time": 4, "staff_attitude": 2, "fees_charges": 1, "card_atm": 1, "digital_banking": 1,
                "praise": 3}, 0.04, worsening="waiting_time"),
    DemoBranch("DEMO_OLDTOWN", "[DEMO] Old Town Branch", "【演示】老城区支行", "demo-north",
               (COUNTER_1, COUNTER_2), 9, 0.75,
               {"branch_environment": 3, "staff_attitude": 2, "waiting_time": 1, "process_paperwork": 1,
                "praise": 3}, 0.08),
    DemoBranch("DEMO_CAMPUS", "[DEMO] University Campus Branch", "【演示】大学城支行", "demo-south",
               (COUNTER_1, SELF_SERVICE), 10, 0.55,
               {"digital_banking": 3, "card_atm": 3, "process_paperwork": 1, "waiting_time": 1, "praise": 3}, 0.08),
    DemoBranch("DEMO_RIVERSIDE", "[DEMO] Riverside Branch", "【演示】滨江支行", "demo-south",
               (COUNTER_1, COUNTER_2, WEALTH), 9, 0.65,
               {"staff_knowledge": 2, "staff_attitude": 2, "waiting_time": 1, "praise": 5}, 0.04),
    DemoBranch("DEMO_AIRPORT", "[DEMO] Airport Branch", "【演示】机场支行", "demo-west",
               (("FX", "Currency exchange desk", "外币兑换柜台"), SELF_SERVICE), 7, 0.4,
               {"fees_charges": 4, "card_atm": 2, "waiting_time": 1, "praise": 2}, 0.12),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class DemoAccount:
    """A demo console user; the password is made when the demo runs and printed once."""

    username: str
    display_name: str
    role: StaffRole
    scope_kind: ScopeKind
    scope_value: str | None


ACCOUNTS = (
    DemoAccount("demo-admin", "[DEMO] Administrator", StaffRole.ADMIN, ScopeKind.ALL, None),
    DemoAccount("demo-manager", "[DEMO] Region manager, demo-north", StaffRole.MANAGER, ScopeKind.REGION, "demo-north"),
    DemoAccount("demo-staff", "[DEMO] Teller, Harbour Road", StaffRole.STAFF, ScopeKind.BRANCH, "DEMO_HARBOUR"),
)
# What staff write when they close a case (their own words, not customers'), by the feedback's language.
CASE_NOTES = {
    "en": ("Called the customer and apologised; they accepted the explanation.",
           "Spoke to the team on duty; a second counter now opens at lunchtime.",
           "Refund of the fee approved and paid back to the account.",
           "Customer did not answer; left a voicemail and sent an SMS with the branch number."),
    "zh": ("已致电客户并致歉，客户表示理解。", "已与当班团队沟通，午间加开一个窗口。",
           "手续费退款已审批并退回客户账户。", "客户未接电话，已留言并发送短信告知网点电话。"),
}  # fmt: skip
NOT_A_COMPLAINT_NOTE = {
    "en": "Checked with the customer: a question, not a complaint.",
    "zh": "已与客户确认，属于咨询，不是投诉。",
}
RESOLUTION_CODES = ("apologised", "explained", "refunded", "fixed")
TICKET_NOTES = (
    "A third counter opens at lunchtime from Monday; we will watch the queue numbers for four weeks.",
    "Asked the owning department for a plan; update expected next week.",
)

# (topic, tone) -> {language: templates}; {minutes}, {quick} and {fee} are filled in per visit.
COMMENTS: dict[tuple[str, str], dict[str, tuple[str, ...]]] = {
    ("waiting_time", "bad"): {
        "en": ("I waited {minutes} minutes and only two counters were open.",
               "The queue was far too long, {minutes} minutes just to deposit cash.",
               "Took a number at 9:30 and was served after {minutes} minutes. Please open more counters at lunchtime.",
               "Waited {minutes} minutes while staff were chatting behind the counter.",
               "Long queue again today, {minutes} minutes for a simple transfer."),
        "zh": ("排队等了{minutes}分钟，只开了两个窗口。", "人太多了，存个钱等了{minutes}分钟。",
               "中午只有一个窗口在办业务，等了{minutes}分钟，希望增加窗口。",
               "取号后等了{minutes}分钟才叫到我，太慢了。", "又排了很久的队，办个转账用了{minutes}分钟。"),
    },
    ("waiting_time", "ok"): {
        "en": ("The wait was about {minutes} minutes, acceptable but could be faster.",
               "A bit of a queue, but it moved steadily."),
        "zh": ("等了{minutes}分钟左右，还可以接受。", "排了一会儿队，不过速度还行。"),
    },
    ("waiting_time", "good"): {
        "en": ("No queue at all, I was served in {quick} minutes.",
               "Very quick service, in and out in {quick} minutes."),
        "zh": ("几乎不用排队，{quick}分钟就办好了。", "办理速度很快，{quick}分钟就完成了。"),
    },
    ("staff_attitude", "bad"): {
        "en": ("The teller was rude and rolled her eyes when I asked a question.",
               "Staff ignored me at the enquiry desk for ten minutes.",
               "The lobby manager was impatient and kept rushing me.",
               "Nobody greeted me and the clerk was on her phone the whole time."),
        "zh": ("柜员态度很差，问个问题就不耐烦。", "大堂经理爱答不理的。", "工作人员说话很冲，让人很不舒服。",
               "咨询台没人理我，等了十分钟。"),
    },
    ("staff_attitude", "ok"): {
        "en": ("Staff were polite but seemed very busy.",),
        "zh": ("工作人员还算客气，就是有点忙不过来。",),
    },
    ("staff_attitude", "good"): {
        "en": ("The teller was very friendly and patient with my elderly mother.",
               "Lovely staff, they explained everything with a smile.",
               "The lobby manager helped me fill in the form, very kind."),
        "zh": ("柜员非常热情耐心，帮我妈妈办好了业务。", "工作人员服务态度很好，一直面带微笑。",
               "大堂经理主动帮我填表，很贴心。"),
    },
    ("staff_knowledge", "bad"): {
        "en": ("The adviser could not answer basic questions about fixed deposit rates.",
               "I was given wrong information about the documents and had to come back twice."),
        "zh": ("理财经理对定期利率一问三不知。", "告诉我的材料要求是错的，白跑了两趟。"),
    },
    ("staff_knowledge", "good"): {
        "en": ("The wealth manager explained the fund options clearly and without pressure.",),
        "zh": ("理财经理讲解得很清楚，也没有强行推销。",),
    },
    ("fees_charges", "bad"): {
        "en": ("I was charged a {fee} yuan fee for a transfer and nobody explained it.",
               "The annual card fee was taken twice this year.",
               "Terrible exchange rate and an extra {fee} yuan commission on top."),
        "zh": ("转账被收了{fee}元手续费，事先也没人说明。", "今年的年费被扣了两次。",
               "汇率太差，还另外收了{fee}元手续费。"),
    },
    ("fees_charges", "ok"): {
        "en": ("Fees are a bit high, but at least they were explained.",),
        "zh": ("手续费有点高，不过工作人员解释清楚了。",),
    },
    ("fees_charges", "good"): {
        "en": ("They waived the transfer fee, thank you.",),
        "zh": ("帮我免了转账手续费，谢谢。",),
    },
    ("card_atm", "bad"): {
        "en": ("The ATM swallowed my card and nobody could help until the next day.",
               "Two of the three cash machines were out of order again.",
               "My new debit card still has not arrived after three weeks."),
        "zh": ("ATM吞卡了，工作人员说要等到第二天才能取。", "三台取款机坏了两台。", "新办的借记卡三周了还没收到。"),
    },
    ("card_atm", "good"): {
        "en": ("The new self-service machines are quick and easy to use.",),
        "zh": ("新的自助机很方便，操作简单。",),
    },
    ("digital_banking", "bad"): {
        "en": ("The app keeps crashing when I try to transfer money.",
               "I could not log in to the app and had to come to the branch for a simple payment.",
               "The verification code never arrives, so I cannot use online banking."),
        "zh": ("手机银行一转账就闪退。", "手机银行登录不上，只好跑到网点来办。", "验证码一直收不到，网银根本用不了。"),
    },
    ("digital_banking", "ok"): {
        "en": ("Staff showed me how to use the app, but it is still confusing.",),
        "zh": ("工作人员教了我怎么用手机银行，但还是有点复杂。",),
    },
    ("digital_banking", "good"): {
        "en": ("Staff set up mobile banking for me, now I do not need to come in.",),
        "zh": ("工作人员帮我开通了手机银行，以后不用跑网点了。",),
    },
    ("process_paperwork", "bad"): {
        "en": ("Too many forms just to update my address.", "I had to sign the same document four times."),
        "zh": ("改个地址要填一大堆表。", "同一份材料签了四次字。"),
    },
    ("process_paperwork", "good"): {
        "en": ("Opening the account was simple and paperless.",),
        "zh": ("开户手续很简单，全程无纸化。",),
    },
    ("branch_environment", "bad"): {
        "en": ("The hall was hot and stuffy, the air conditioning was not working.",
               "Not enough seats in the waiting area, elderly customers had to stand.",
               "The toilets were dirty and there was no drinking water."),
        "zh": ("大厅又闷又热，空调好像坏了。", "等候区座位太少，老人只能站着。", "洗手间很脏，也没有饮用水。"),
    },
    ("branch_environment", "good"): {
        "en": ("Clean, quiet and bright branch, comfortable to wait in.",),
        "zh": ("网点干净明亮，等候区很舒服。",),
    },
    ("praise", "good"): {
        "en": ("Excellent service as always, thank you!", "Quick and professional, very satisfied.",
               "Everything was sorted in one visit, great job.", "Best branch in town, the team is wonderful."),
        "zh": ("服务一如既往的好，谢谢！", "办理快速又专业，非常满意。", "一次就办好了，点赞。",
               "这个网点的团队很棒。"),
    },
}  # fmt: skip
PLAIN = {"en": ("It was fine, nothing special.", "Average visit, I got what I needed."),
         "zh": ("一般般，事情办完了。", "还行，没什么特别的。")}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Incident:
    """A serious comment every demo holds, so the console shows what the flag rules make of it."""

    branch: str
    days_ago: int
    language: str
    csat: int
    comment: str
    phone: str | None = None  # shared for a call-back


# The card and phone numbers are fictitious; they are masked before storage as a customer's would be.
INCIDENTS = (
    Incident("DEMO_HARBOUR", 2, "en", 1, "An hour after my visit someone called pretending to be the bank and knew "
             "my balance. Is this a scam? My card 6222 0212 3456 7894 should be blocked."),
    Incident("DEMO_CAMPUS", 9, "zh", 1, "刚办完业务就收到冒充银行的短信让我点链接，怀疑信息泄露了。"),
    Incident("DEMO_AIRPORT", 5, "en", 1, "You took a hidden 180 yuan fee on my exchange. If it is not refunded I "
             "will complain to the regulator and talk to my lawyer."),
    Incident("DEMO_OLDTOWN", 12, "zh", 1, "年费被扣了两次，再不退我就去金融监管总局投诉，还要起诉你们。"),
    Incident("DEMO_OLDTOWN", 3, "en", 2, "The floor at the entrance was wet with no sign and an elderly man slipped."),
    Incident("DEMO_RIVERSIDE", 1, "en", 3, "Please call me back about moving my mortgage payments, "
             "my number is 138 1234 5678."),
    Incident("DEMO_HARBOUR", 4, "zh", 2, "等了一个多小时还没办完，请给我回个电话解释一下。", phone="+1-202-555-0162"),
    Incident("DEMO_CAMPUS", 6, "en", 2, "<script>alert('demo')</script> The online form kept rejecting my address."),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Visit:
    """One completed survey: where, how, the ratings and the comment (not yet masked), and when."""

    branch: str
    counter: str | None
    channel: str  # "telegram" or "web"
    language: str
    csat: int
    nps: int | None
    ces: int | None
    comment: str | None
    customer_category: str | None
    phone: str | None
    started_at: datetime
    submitted_at: datetime
    respondent: int  # visits of one respondent share the number


@dataclass(frozen=True, slots=True)
class Dropout:
    """A conversation that stopped at the first question and expired: it counts against the completion rate."""

    branch: str
    counter: str | None
    channel: str
    language: str
    started_at: datetime
    respondent: int


@dataclass(frozen=True, slots=True)
class DemoPlan:
    visits: list[Visit]
    dropouts: list[Dropout]
    starts: dict[tuple[str, str, str, date], int]  # (branch, counter code or "", channel, UTC day) -> link opens


def plan_demo(*, seed: int, weeks: int, now: datetime, timezone: str) -> DemoPlan:
    """Every visit of `weeks` weeks up to `now`, over opening hours in `timezone`, with the incidents among them."""
    rng = random.Random(seed)
    zone = ZoneInfo(timezone)
    today = now.astimezone(zone).date()
    people = _Respondents(rng)
    visits: list[Visit] = []
    dropouts: list[Dropout] = []
    for offset in range(7 * weeks - 1, -1, -1):
        day = today - timedelta(days=offset)
        for branch in BRANCHES:
            expected = branch.visits_per_day * DAY_WEIGHT[day.weekday()] * rng.uniform(0.7, 1.3)
            for _ in range(round(expected)):
                moment = _moment(rng, day, zone)
                if moment >= now:
                    continue
                channel = "telegram" if rng.random() < 0.35 else "web"
                if rng.random() < 0.08:
                    dropouts.append(_dropout(rng, branch, channel, moment, people.pick(channel)))
                else:
                    visits.append(_visit(rng, branch, channel, moment, now, people.pick(channel)))
    visits += [_incident(rng, incident, today, zone, people) for incident in INCIDENTS if incident.days_ago < 7 * weeks]
    visits.sort(key=lambda v: v.submitted_at)
    return DemoPlan(visits, dropouts, _link_opens(rng, visits, dropouts))


class _Respondents:
    """Customer numbers: mostly new people, some who come back on the same channel."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._seen: dict[str, list[int]] = {"telegram": [], "web": []}
        self._next = 1

    def pick(self, channel: str) -> int:
        seen = self._seen[channel]
        if seen and self._rng.random() < 0.12:
            return self._rng.choice(seen)
        number, self._next = self._next, self._next + 1
        seen.append(number)
        return number


def _moment(rng: random.Random, day: date, zone: ZoneInfo) -> datetime:
    hour = rng.choices(list(OPEN_HOURS), weights=list(OPEN_HOURS.values()))[0]
    local = datetime.combine(day, time(hour, rng.randrange(60), rng.randrange(60)), tzinfo=zone)
    return local.astimezone(UTC)


def _visit(rng: random.Random, branch: DemoBranch, channel: str, at: datetime, now: datetime, person: int) -> Visit:
    progress = min(max((at - (now - WINDOW)) / WINDOW, 0.0), 1.0)
    weights = {t: w * (1 + progress if t == branch.worsening else 1) for t, w in branch.topics.items()}
    topic = rng.choices(list(weights), weights=list(weights.values()))[0]
    unhappy = min(0.12 * (1 + 4 * progress), 0.7) if topic == branch.worsening else branch.unhappy
    tone = "good" if topic == "praise" else "bad" if rng.random() < unhappy else rng.choice(("ok", "good", "good"))
    language = "zh" if rng.random() < branch.zh_share else "en"
    comment = _comment(rng, topic, tone, language) if rng.random() < COMMENT_SHARE[tone] else None
    csat = rng.choice(CSAT[tone])
    wants_call = csat <= 2 and rng.random() < 0.2  # the survey offers a call-back from CSAT 2 down
    return Visit(
        branch=branch.code,
        counter=_counter(rng, branch, topic),
        channel=channel,
        language=language,
        csat=csat,
        nps=rng.choice(NPS[tone]) if rng.random() < 0.6 else None,
        ces=rng.choice(CES[tone]) if rng.random() < 0.45 else None,
        comment=comment,
        customer_category=topic if tone == "bad" and topic != "praise" and rng.random() < 0.4 else None,
        phone=f"+1-202-555-01{rng.randrange(100):02d}" if wants_call else None,
        started_at=at - timedelta(seconds=rng.randrange(50, 240)),
        submitted_at=at,
        respondent=person,
    )


def _comment(rng: random.Random, topic: str, tone: str, language: str) -> str:
    templates = COMMENTS.get((topic, tone), PLAIN)[language]
    text = rng.choice(templates)
    return text.format(minutes=rng.choice((25, 30, 35, 40, 45, 50, 60, 75, 90)), quick=rng.choice((3, 5, 8, 10)),
                       fee=rng.choice((15, 20, 25, 50, 80, 120)))  # fmt: skip


def _counter(rng: random.Random, branch: DemoBranch, topic: str) -> str | None:
    codes = [code for code, _, _ in branch.counters]
    if topic == "card_atm" and "ATM" in codes and rng.random() < 0.7:
        return "ATM"
    desks = [code for code in codes if code != "ATM"]
    return rng.choice(desks) if desks and rng.random() < 0.65 else None  # the rest scanned the branch's code


def _dropout(rng: random.Random, branch: DemoBranch, channel: str, at: datetime, person: int) -> Dropout:
    language = "zh" if rng.random() < branch.zh_share else "en"
    return Dropout(branch.code, _counter(rng, branch, "praise"), channel, language, at, person)


def _incident(rng: random.Random, incident: Incident, today: date, zone: ZoneInfo, people: _Respondents) -> Visit:
    day = today - timedelta(days=incident.days_ago)
    if day.weekday() == 6:  # closed on Sundays
        day -= timedelta(days=1)
    at = datetime.combine(day, time(11, rng.randrange(60)), tzinfo=zone).astimezone(UTC)
    channel = "web" if incident.language == "en" else "telegram"
    return Visit(incident.branch, None, channel, incident.language, incident.csat, None, None, incident.comment,
                 None, incident.phone, at - timedelta(minutes=3), at, people.pick(channel))  # fmt: skip


def _link_opens(
    rng: random.Random, visits: list[Visit], dropouts: list[Dropout]
) -> dict[tuple[str, str, str, date], int]:
    """Opens per place, channel and UTC day (the engine's clock): every conversation, plus those who never began."""
    opens: Tally[tuple[str, str, str, date]] = Tally()
    for item in [*visits, *dropouts]:
        opens[(item.branch, item.counter or "", item.channel, item.started_at.date())] += 1
    return {key: count + sum(rng.random() < 0.2 for _ in range(count)) for key, count in sorted(opens.items())}
