"""The analysis worker: claims pending feedback in batches, runs the NLP analyzer off the event loop, stores results.

In-process by default (a task beside the web server); `closeloop worker` runs the same loop as its own process,
and several can share a PostgreSQL database. The model loads in the background, so the server answers at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np
from sqlalchemy.exc import SQLAlchemyError

from reporting.cases import open_cases
from store import Database, StoreError
from store.analysis_queue import (
    AnalysisResult,
    OnStored,
    PendingFeedback,
    claim_pending,
    record_failure,
    store_results,
)
from store.models import utcnow

log = logging.getLogger(__name__)


class Analyzer(Protocol):
    version: str

    def analyze_feedback(self, items: Sequence[PendingFeedback]) -> list[dict[str, Any]]: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class AnalysisWorker:
    def __init__(
        self,
        database: Database,
        load_analyzer: Callable[[], Analyzer],
        *,
        batch_size: int = 32,
        idle_seconds: float = 1.0,
        on_stored: OnStored | None = open_cases,
    ) -> None:
        self._db = database
        # Runs in the transaction that stores each batch: a flagged comment's case commits with its analysis.
        self._on_stored = on_stored
        self._load = load_analyzer
        self._batch_size = batch_size
        self._idle = idle_seconds
        # One thread: the model uses every core itself; a second batch in parallel would only contend.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nlp")
        self._analyzer: Analyzer | None = None
        self._wake = asyncio.Event()

    @property
    def analyzer(self) -> Analyzer | None:
        """The loaded model, or None while it still loads (the ticket pass waits for it)."""
        return self._analyzer

    def wake(self) -> None:
        """New feedback arrived: look now rather than after the idle pause."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set; a failure is recorded on its batch and the loop goes on."""
        loop = asyncio.get_running_loop()
        try:
            self._analyzer = await loop.run_in_executor(self._executor, self._load)
            log.info("analysis worker ready (model %s)", self._analyzer.version)
            while not stop.is_set():
                try:
                    done = await self.run_once()
                except (StoreError, SQLAlchemyError, OSError) as exc:
                    # The database went away mid-way: the claimed rows come back when their lease ends; wait, retry.
                    log.warning("analysis worker: the database failed (%s); trying again shortly", exc)
                    done = 0
                if not done:
                    await self._pause(stop)
        finally:
            self._executor.shutdown(wait=True, cancel_futures=True)

    async def run_once(self) -> int:
        """Analyse one batch; return how many feedback rows it held."""
        batch = await claim_pending(self._db, limit=self._batch_size, now=utcnow())
        if not batch:
            return 0
        assert self._analyzer is not None
        analyzer = self._analyzer
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(self._executor, analyzer.analyze_feedback, batch)
        except Exception as exc:
            # The model failed on this batch: keep it pending with a back-off, never lose it.
            log.exception("analysis of %d feedback failed; they stay pending", len(batch))
            await record_failure(self._db, [p.id for p in batch], f"{type(exc).__name__}: {exc}", now=utcnow())
            return len(batch)
        results = [
            AnalysisResult(feedback_id=p.id, model_version=analyzer.version, **output)
            for p, output in zip(batch, outputs, strict=True)
        ]
        await store_results(self._db, results, on_stored=self._on_stored)
        log.info("analysed %d feedback with %s", len(batch), analyzer.version)
        return len(batch)

    async def _pause(self, stop: asyncio.Event) -> None:
        self._wake.clear()
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=self._idle, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
