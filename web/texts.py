"""The staff console's words in English and Simplified Chinese, and the choice between them."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType

from web.texts_cases import CASE_TEXTS
from web.texts_dashboard import DASHBOARD_TEXTS
from web.texts_tickets import TICKET_TEXTS

LANGUAGES = ("en", "zh")

TEXTS: dict[str, dict[str, str]] = {
    "title": {"en": "Closeloop console", "zh": "Closeloop 管理台"},
    "sign_in": {"en": "Sign in", "zh": "登录"},
    "sign_out": {"en": "Sign out", "zh": "退出登录"},
    "username": {"en": "Username", "zh": "用户名"},
    "password": {"en": "Password", "zh": "密码"},
    "switch_language": {"en": "中文", "zh": "English"},
    "signed_in_as": {"en": "Signed in as {name} ({role}, {scope})", "zh": "当前用户：{name}（{role}，{scope}）"},
    "wrong_credentials": {"en": "Wrong username or password.", "zh": "用户名或密码错误。"},
    "try_later": {
        "en": "Too many failed attempts: try again later.",
        "zh": "失败次数过多，请稍后再试。",
    },
    "signed_out": {"en": "You have signed out.", "zh": "您已退出登录。"},
    "expired_form": {
        "en": "This form has expired or did not come from this site. Reload the page and try again.",
        "zh": "此表单已过期或并非来自本站。请刷新页面后重试。",
    },
    "bad_request": {
        "en": "Sorry, the console couldn't read what your browser sent.",
        "zh": "抱歉，管理台无法读取您的浏览器发送的内容。",
    },
    "not_allowed": {"en": "Your role does not give access to this page.", "zh": "您的角色无权访问此页面。"},
    "not_found": {"en": "There is no such page in the console.", "zh": "管理台中没有这个页面。"},
    "back": {"en": "Back to the console", "zh": "返回管理台"},
    "role_admin": {"en": "administrator", "zh": "管理员"},
    "role_manager": {"en": "manager", "zh": "经理"},
    "role_staff": {"en": "staff", "zh": "员工"},
    "scope_all": {"en": "all branches", "zh": "全部网点"},
    "scope_region": {"en": "region {value}", "zh": "{value} 区域"},
    "scope_branch": {"en": "branch {value}", "zh": "{value} 网点"},
    "nav_cases": {"en": "Cases", "zh": "个案"},
    "nav_tickets": {"en": "Tickets", "zh": "改进工单"},
    "nav_dashboard": {"en": "Dashboard", "zh": "仪表板"},
    "nav_audit": {"en": "Audit log", "zh": "审计日志"},
}
# Each console area keeps its words in its own module (web/texts_<area>.py, a dict shaped like TEXTS) and is
# merged here, one line each (shared file, insert only); keys must not collide.
AREAS: tuple[dict[str, dict[str, str]], ...] = (
    TICKET_TEXTS,
    CASE_TEXTS,
    DASHBOARD_TEXTS,
)
for _area in AREAS:
    if set(_area) & set(TEXTS):
        raise ValueError(f"console texts defined twice: {sorted(set(_area) & set(TEXTS))}")
    TEXTS |= _area


@functools.cache
def texts(language: str) -> Mapping[str, str]:
    """Every text in one language (English where a text lacks the language), built once per language."""
    return MappingProxyType({key: variants.get(language, variants["en"]) for key, variants in TEXTS.items()})


def pick_language(chosen: str | None, accept_language: str | None) -> str:
    """The language the user switched to, else the browser's first preference ("zh-CN,zh;q=0.9" is zh), else en."""
    if chosen in LANGUAGES:
        return chosen
    first = (accept_language or "").split(",")[0].strip().lower()
    return "zh" if first.startswith("zh") else "en"
