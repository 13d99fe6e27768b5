"""Results computed once per key and shared for a while by every request that asks: the dashboard's figures.

At a million rows a bank-wide dashboard costs a second of SQL and pandas and a branch's about 0.2 s, while the
figures behind it move by the week. Twenty staff opening the same scope therefore share one computation, and
requests that arrive while it runs wait for it (single flight) instead of starting their own. A result past its
time may still be served for `stale_for` seconds more while one background computation renews it, so that only
the very first request for a key ever waits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from store.models import utcnow

log = logging.getLogger(__name__)

V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class _Entry(Generic[V]):
    task: asyncio.Future[V]
    expires: float  # on the monotonic clock
    computed_at: datetime  # when the computation started, for "figures as of"


class SharedResults(Generic[V]):
    """Up to `size` results, each reused for `ttl` seconds after its computation started; the oldest go first.

    With `stale_for`, a result between `ttl` and `ttl + stale_for` seconds old is still answered at once while
    a new one is computed in the background; it replaces the old one when it succeeds.
    """

    def __init__(
        self, *, ttl: float, size: int, stale_for: float = 0.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl, self.size, self.stale_for, self.clock = ttl, size, stale_for, clock
        self._entries: OrderedDict[Hashable, _Entry[V]] = OrderedDict()
        self._renewing: dict[Hashable, asyncio.Task[None]] = {}

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[V]]) -> tuple[V, datetime]:
        """The key's result and when it was computed: a fresh one unless a recent or running one exists.

        A failed computation is forgotten, so the next request tries again; its error reaches every waiter.
        """
        entry = self._entries.get(key)
        now = self.clock()
        if entry is not None and entry.expires <= now and self._is_servable(entry, now):
            self._renew(key, compute)
        elif entry is None or entry.expires <= now:
            entry = self._store(key, compute)
        try:
            # Shielded: one waiter leaving (a closed browser tab) must not cancel the others' computation.
            return await asyncio.shield(entry.task), entry.computed_at
        except Exception:
            if self._entries.get(key) is entry:
                del self._entries[key]
            raise

    def __len__(self) -> int:
        """How many results are kept (computed, being computed or stale)."""
        return len(self._entries)

    async def warm(self, key: Hashable, compute: Callable[[], Awaitable[V]]) -> None:
        """Make the key's result fresh ahead of any request and wait until it is: `get`, then the renewal it may
        have started behind a stale result (which requests are still answered with meanwhile)."""
        await self.get(key, compute)
        renewing = self._renewing.get(key)
        if renewing is not None:
            await asyncio.shield(renewing)

    async def close(self) -> None:
        """Cancel the computations still running (the server stops: the database is about to close)."""
        running = [entry.task for entry in self._entries.values() if not entry.task.done()]
        running += self._renewing.values()
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    def _is_servable(self, entry: _Entry[V], now: float) -> bool:
        """Whether an expired entry may be answered while it is renewed: finished, well and not too old."""
        task = entry.task
        is_well = task.done() and not task.cancelled() and task.exception() is None
        return is_well and now < entry.expires + self.stale_for

    def _store(self, key: Hashable, compute: Callable[[], Awaitable[V]]) -> _Entry[V]:
        entry = _Entry(asyncio.ensure_future(compute()), self.clock() + self.ttl, utcnow())
        self._put(key, entry)
        return entry

    def _put(self, key: Hashable, entry: _Entry[V]) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def _renew(self, key: Hashable, compute: Callable[[], Awaitable[V]]) -> None:
        """Start one background computation for the key unless one runs; its entry replaces the old on success."""
        if key in self._renewing:
            return
        expires, computed_at = self.clock() + self.ttl, utcnow()

        async def renew() -> None:
            try:
                value = await compute()
            except Exception:
                # A background task: the stale result stays until it is too old, and the next request retries.
                log.exception("renewing a shared result failed; the previous one is served meanwhile")
                return
            finally:
                self._renewing.pop(key, None)
            done: asyncio.Future[V] = asyncio.get_running_loop().create_future()
            done.set_result(value)
            self._put(key, _Entry(done, expires, computed_at))

        self._renewing[key] = asyncio.create_task(renew(), name=f"renew {key!r}")
