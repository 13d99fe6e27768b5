"""Results computed once per key and shared for a while by every request that asks: the dashboard's figures.

At a million rows a bank-wide dashboard costs seconds of SQL and pandas and a branch's about 0.3 s, while the
figures behind it move by the week. Twenty staff opening the same scope therefore share one computation, and
requests that arrive while it runs wait for it (single flight) instead of starting their own.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from store.models import utcnow

V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class _Entry(Generic[V]):
    task: asyncio.Future[V]
    expires: float  # on the monotonic clock
    computed_at: datetime  # when the computation started, for "figures as of"


class SharedResults(Generic[V]):
    """Up to `size` results, each reused for `ttl` seconds after its computation started; the oldest go first."""

    def __init__(self, *, ttl: float, size: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.size, self.clock = ttl, size, clock
        self._entries: OrderedDict[Hashable, _Entry[V]] = OrderedDict()

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[V]]) -> tuple[V, datetime]:
        """The key's result and when it was computed: a fresh one unless a recent or running one exists.

        A failed computation is forgotten, so the next request tries again; its error reaches every waiter.
        """
        entry = self._entries.get(key)
        if entry is None or entry.expires <= self.clock():
            entry = _Entry(asyncio.ensure_future(compute()), self.clock() + self.ttl, utcnow())
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        try:
            # Shielded: one waiter leaving (a closed browser tab) must not cancel the others' computation.
            return await asyncio.shield(entry.task), entry.computed_at
        except Exception:
            if self._entries.get(key) is entry:
                del self._entries[key]
            raise
