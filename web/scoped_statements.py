"""Statements built once per staff scope and reused: the console's busiest pages run them on every view.

Building a SQLAlchemy statement and computing its cache key cost more CPU than running it on PostgreSQL and
reading its rows: about 0.8 ms of a ticket page's 1.2 ms sources query. A statement that names the user's scope
(reporting.scope.staff_branches) differs between users only by that scope, so it is built once per scope kind
and value (and whatever else shapes it) and SQLAlchemy finds its compiled form by the statement object itself;
what varies per request (an id, a page's offset) goes in as bound parameters.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from sqlalchemy import Executable

from store.models import ScopeKind, StaffUser

S = TypeVar("S", bound=Executable)
KEPT = 512  # statements per builder: a few hundred scopes (the bank, regions, branches) times their variants


def per_scope(build: Callable[..., S]) -> Callable[..., S]:
    """Keep `build`'s statements by the user's scope and the other (hashable) arguments.

    `build` must read nothing of the user but the scope (scope_kind, scope_value): it runs once per scope, with a
    stand-in user that holds only that.
    """

    @functools.lru_cache(maxsize=KEPT)
    def built(kind: ScopeKind, value: str | None, *args: Hashable) -> S:
        return build(StaffUser(scope_kind=kind, scope_value=value), *args)

    @functools.wraps(build)
    def statement(user: StaffUser, *args: Any) -> S:
        return built(user.scope_kind, user.scope_value, *args)

    return statement
