"""Adaptive micro-batching: rows of concurrent requests predicted in one call, results scattered back.

The model's fixed cost per call, not its cost per row, bounds single-row throughput, and threads
only fight over the GIL. So one consumer predicts one batch at a time in a worker thread; requests
arriving meanwhile queue up and are taken together, greedily, as the next batch. The consumer waits
for company (at most ``max_wait`` after the oldest queued request arrived) only when the previous
batch held several requests: a lone sequential client never waits for company it will not get.

A batch holds rows of one model version only (a hot swap changes the serving model between
requests); a request for another version is carried over to the next batch. If a batch fails,
its requests are predicted one by one so only the failing request gets the error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from app.errors import ModelNotReady
from app.metrics import ServiceMetrics
from app.serving.loaded_model import LoadedModel

log = logging.getLogger(__name__)

Proba = npt.NDArray[np.float64]


@dataclass
class _Request:
    model: LoadedModel
    rows: list[dict[str, Any]]
    future: asyncio.Future[Proba]
    enqueued_at: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class BatchRecord:
    """What the consumer did for one batch (kept for tests and metrics)."""

    requests: int
    rows: int
    # Per request: time spent waiting for company, i.e. from max(its arrival, the consumer being
    # free) to the batch's start. Time queued behind a running batch is not counted here.
    company_waits: tuple[float, ...]
    # Whether the consumer waited for more requests (it does only after a multi-request batch).
    waited: bool


class MicroBatcher:
    def __init__(self, *, max_rows: int, max_wait_s: float, metrics: ServiceMetrics,
                 history: int = 0) -> None:
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
        self.metrics = metrics
        self._queue: asyncio.Queue[_Request] | None = None
        self._carry: list[_Request] = []
        self._running: list[_Request] = []  # the batch being predicted
        self._task: asyncio.Task[None] | None = None
        self._last_batch_requests = 0
        # Recent BatchRecords, newest last (0 keeps none).
        self.history: list[BatchRecord] = []
        self._history_max = history

    async def start(self) -> None:
        # The queue belongs to the running loop, so it is made here and not in __init__.
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
        queue = self._queue
        assert queue is not None  # set by start(), which made the task
        pending = self._running + self._carry
        pending += [queue.get_nowait() for _ in range(queue.qsize())]
        self._running, self._carry = [], []
        for request in pending:
            if not request.future.done():
                request.future.set_exception(ModelNotReady("the service is shutting down"))

    def submit(self, model: LoadedModel, rows: list[dict[str, Any]]) -> asyncio.Future[Proba]:
        """Queue rows for ``model``; the future resolves to their probabilities (LEVELS order)."""
        assert self._queue is not None, "MicroBatcher.start() was not called"
        future: asyncio.Future[Proba] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Request(model, rows, future))
        return future

    async def _run(self) -> None:
        while True:
            batch, company_waits, waited = await self._collect()
            try:
                await self._predict(batch)
            except Exception:  # never let one bad batch stop the consumer
                log.exception("micro-batcher: unexpected failure")
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(RuntimeError("prediction failed"))
            self._running = []
            self._record(batch, company_waits, waited)

    async def _collect(self) -> tuple[list[_Request], list[float], bool]:
        """The next batch: what is queued now, plus what arrives within the wait bound if warranted."""
        queue = self._queue
        assert queue is not None  # the consumer runs only after start()
        free_at = time.perf_counter()
        first = self._carry.pop(0) if self._carry else await queue.get()
        batch, rows = [first], len(first.rows)
        self._running = batch  # visible to stop() while it is still being collected
        carried, self._carry = self._carry, []
        for request in carried:  # requests held over from the previous collection come first
            rows = self._take(batch, rows, request)
        while rows < self.max_rows and not self._carry and not queue.empty():
            rows = self._take(batch, rows, queue.get_nowait())
        waited = self._last_batch_requests > 1 or len(batch) > 1
        if waited:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.max_wait_s - (time.perf_counter() - first.enqueued_at)
            while rows < self.max_rows and not self._carry:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    request = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    break
                rows = self._take(batch, rows, request)
        started = time.perf_counter()
        waits = [max(0.0, started - max(r.enqueued_at, free_at)) for r in batch]
        return batch, waits, waited

    def _take(self, batch: list[_Request], rows: int, request: _Request) -> int:
        """Add a request to the batch, or carry it over (other model version, or no room)."""
        if request.model is not batch[0].model or rows + len(request.rows) > self.max_rows:
            self._carry.append(request)
            return rows
        batch.append(request)
        return rows + len(request.rows)

    async def _predict(self, batch: list[_Request]) -> None:
        model = batch[0].model
        rows = [row for request in batch for row in request.rows]
        try:
            proba = await asyncio.to_thread(model.predict_rows, rows)
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0], None, exc)
                return
            self.metrics.batch_fallbacks.inc()
            await self._predict_one_by_one(batch)
            return
        offset = 0
        for request in batch:
            n = len(request.rows)
            _settle(request, proba[offset:offset + n], None)
            offset += n

    async def _predict_one_by_one(self, batch: list[_Request]) -> None:
        for request in batch:
            try:
                proba = await asyncio.to_thread(request.model.predict_rows, request.rows)
            except Exception as exc:
                _settle(request, None, exc)
            else:
                _settle(request, proba, None)

    def _record(self, batch: list[_Request], company_waits: list[float], waited: bool) -> None:
        self._last_batch_requests = len(batch)
        rows = sum(len(r.rows) for r in batch)
        self.metrics.batch_rows.observe(rows)
        for wait in company_waits:
            self.metrics.batch_wait.observe(wait)
        if self._history_max:
            self.history.append(BatchRecord(len(batch), rows, tuple(company_waits), waited))
            del self.history[: -self._history_max]


def _settle(request: _Request, proba: Proba | None, exc: BaseException | None) -> None:
    if request.future.done():  # the caller went away (cancelled); nothing to hand back
        return
    if exc is not None:
        request.future.set_exception(exc)
    elif proba is not None:
        request.future.set_result(proba)
