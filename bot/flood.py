"""Per-customer flood limits: a sliding window of recent events, warning once, then dropping quietly."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum


class Verdict(Enum):
    ALLOW = "allow"
    WARN = "warn"  # the first event over the limit: tell the customer once
    DROP = "drop"


@dataclass
class _Window:
    events: deque[float]
    warned: bool = False


class FloodGuard:
    """Allow at most `limit` events per `seconds` for each key; remember at most `max_keys` keys."""

    def __init__(
        self,
        *,
        limit: int = 15,
        seconds: float = 10.0,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = limit
        self._seconds = seconds
        self._max_keys = max_keys
        self._clock = clock
        self._windows: OrderedDict[str, _Window] = OrderedDict()

    def check(self, key: str) -> Verdict:
        now = self._clock()
        window = self._windows.pop(key, None) or _Window(deque())
        self._windows[key] = window  # most recently seen last, so the oldest keys are evicted first
        self._evict()
        while window.events and window.events[0] <= now - self._seconds:
            window.events.popleft()
        if len(window.events) < self._limit:
            window.events.append(now)
            window.warned = False
            return Verdict.ALLOW
        if window.warned:
            return Verdict.DROP
        window.warned = True
        return Verdict.WARN

    def _evict(self) -> None:
        while len(self._windows) > self._max_keys:
            self._windows.popitem(last=False)
