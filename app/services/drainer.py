"""Moves spooled records into the database in batches, and retires segments once committed.

One task per worker. It waits for a full batch (or ``drain_interval_s``), writes it in one
transaction that skips ids already stored, and only then acknowledges the records; a segment is
deleted only when every record in it is committed. While the database is down it retries the same
batch with capped, jittered exponential backoff; requests keep being answered from the spool.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from app.config import SpoolSettings
from app.metrics import ServiceMetrics
from app.services.pending import PendingBuffer
from app.services.records import decode
from app.services.spool import Segment

log = logging.getLogger(__name__)

WriteRows = Callable[[list[dict]], Awaitable[None]]


class Drainer:
    def __init__(
        self,
        buffer: PendingBuffer,
        write_rows: WriteRows,
        settings: SpoolSettings,
        metrics: ServiceMetrics,
        retire: Callable[[Segment], None],
        scan_orphans: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.buffer = buffer
        self.write_rows = write_rows
        self.settings = settings
        self.metrics = metrics
        self.retire = retire
        self.scan_orphans = scan_orphans
        self._more: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._flushing = False
        self.failing = False  # the last attempt failed (the database is unreachable)

    def start(self) -> None:
        self._more = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="spool-drainer")
        self._task.add_done_callback(self._died)

    @staticmethod
    def _died(task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.critical("prediction log: the drainer stopped", exc_info=task.exception())

    def notify(self) -> None:
        if self._more is not None:
            self._more.set()

    async def drain(self, timeout: float) -> bool:
        """Write everything pending now (no batching wait); True when nothing is left."""
        self._flushing = True
        self.notify()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while len(self.buffer) and loop.time() < deadline and not self._task.done():
                await asyncio.sleep(0.02)
        finally:
            self._flushing = False
        return len(self.buffer) == 0

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def update_gauges(self) -> None:
        self.metrics.spool_pending.set(len(self.buffer))
        self.metrics.spool_bytes.set(self.buffer.bytes)
        self.metrics.spool_oldest_age.set(self.buffer.oldest_age())

    async def _sleep_updating_gauges(self, seconds: float) -> None:
        # The oldest-record age must keep rising on dashboards while the database is down.
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while (left := end - loop.time()) > 0:
            await asyncio.sleep(min(left, 0.5))
            self.update_gauges()

    async def _wait_for_batch(self) -> None:
        loop = asyncio.get_running_loop()
        next_scan = loop.time() + self.settings.orphan_scan_interval_s
        while True:
            self.update_gauges()
            pending = len(self.buffer)
            age = self.buffer.oldest_age()
            if pending and (
                self._flushing or pending >= self.settings.drain_batch_size
                or age >= self.settings.drain_interval_s
            ):
                return
            if self.scan_orphans is not None and loop.time() >= next_scan:
                next_scan = loop.time() + self.settings.orphan_scan_interval_s
                try:
                    await self.scan_orphans()
                except Exception:  # a bad file must not stop the drainer; the next scan retries
                    log.exception("prediction log: scanning for orphaned segments failed")
                continue
            timeout = self.settings.drain_interval_s - age if pending else 1.0
            self._more.clear()
            try:
                async with asyncio.timeout(max(timeout, 0.001)):
                    await self._more.wait()
            except TimeoutError:
                pass

    async def _run(self) -> None:
        delay = self.settings.backoff_initial_s
        while True:
            await self._wait_for_batch()
            batch = self.buffer.head(self.settings.drain_batch_size)
            try:
                await self.write_rows([decode(rec.line) for rec in batch])
            except Exception as exc:  # database down or refusing: keep the batch, retry later
                self.failing = True
                self.metrics.spool_flush_failures.inc()
                pause = delay * (0.5 + random.random() / 2)
                log.warning("prediction log: batch of %d not written (%s); retrying in %.2fs",
                            len(batch), type(exc).__name__, pause)
                await self._sleep_updating_gauges(pause)
                delay = min(delay * 2, self.settings.backoff_max_s)
                continue
            if self.failing:
                log.info("prediction log: database writes succeed again")
            self.failing = False
            delay = self.settings.backoff_initial_s
            for segment in self.buffer.ack(len(batch)):
                self.retire(segment)
            self.metrics.log_written.inc(len(batch))
            self.update_gauges()
