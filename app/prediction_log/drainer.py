"""Moves spooled records into the database in batches, and retires segments once settled.

One task per worker. It waits for a full batch (or ``drain_interval_s``), writes it (predictions,
then feedback whose prediction is stored; ids already stored are skipped), and only then
acknowledges the records; a segment is deleted only when every record in it is settled.

- The database is down (or not ready): the same batch is retried with capped, jittered
  exponential backoff; requests keep being answered from the spool.
- The database refuses some records (``app.prediction_log.ingest``): they go to the dead-letter store
  with its reason, the rest of the batch is written, later records are never held back.
- Feedback whose prediction is not stored yet is parked and looked at again; it is dead-lettered
  only once the grace period is over and the prediction is in no spool on this host.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid

from app.config import SpoolSettings
from app.metrics import ServiceMetrics
from app.prediction_log.dead_letters import DeadLetter, DeadLetterStore
from app.prediction_log.ingest import NO_PREDICTION, LogSink
from app.prediction_log.peers import PeerReader
from app.prediction_log.pending import PendingBuffer, PendingRecord
from app.prediction_log.records import FEEDBACK, PREDICTION, decode_entry, record_id
from app.prediction_log.segments import Segment, SpoolFiles

log = logging.getLogger(__name__)

class Drainer:
    def __init__(
        self,
        *,
        buffer: PendingBuffer,
        sink: LogSink,
        settings: SpoolSettings,
        metrics: ServiceMetrics,
        dead_letters: DeadLetterStore,
        files: SpoolFiles | None,
        peers: PeerReader,
    ) -> None:
        self.buffer = buffer
        self.sink = sink
        self.settings = settings
        self.metrics = metrics
        self.dead_letters = dead_letters
        self.files = files  # None with durability "none": no segments to adopt or settle
        self.peers = peers
        self._more: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._flushing = False
        self.failing = False  # the last attempt failed (the database is unreachable)

    def start(self) -> None:
        self._more = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="spool-drainer")
        self._task.add_done_callback(self._died)

    @staticmethod
    def _died(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.critical("prediction log: the drainer stopped", exc_info=task.exception())

    async def adopt_orphans(self) -> None:
        """Take over the segments of dead workers (or of this worker's previous life) and queue
        their records; they are drained like this worker's own."""
        if self.files is None:
            return
        for adopted in await self.files.adopt_orphans(record_id):
            entries = [(line, *decode_entry(line)) for line in adopted.lines]
            for kind in (PREDICTION, FEEDBACK):
                rows = [(line, row) for line, k, row in entries if k == kind]
                self.buffer.add([row["id"] for _, row in rows], [line for line, _ in rows],
                                adopted.segment, kind, [row.get("prediction_id") for _, row in rows])
            self.files.hold(adopted.segment, len(adopted.lines))
            log.info("prediction log: adopted %d records from %s",
                     len(adopted.lines), adopted.segment.path.name)
        self.notify()

    def settle(self, segments: list[Segment]) -> None:
        if self.files is not None:
            self.files.settle(segments)

    def notify(self) -> None:
        if self._more is not None:
            self._more.set()

    async def drain(self, within_s: float) -> bool:
        """Write everything writable now (no batching wait); True when nothing is left.

        Parked feedback gets one more look; what is still waiting for its prediction stays in
        the spool for the next start.
        """
        self._flushing = True
        self.buffer.unpark_due(everything=True)
        self.notify()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        try:
            task = self._task
            # A poll: three things end the wait (all written, the deadline, the task dying).
            while self.buffer.ready and loop.time() < deadline and task is not None and not task.done():  # noqa: ASYNC110
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

    async def count_dead_letters(self) -> None:
        self.metrics.spool_dead_letters_on_disk.set(await asyncio.to_thread(self.dead_letters.count))

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
            self.buffer.unpark_due()
            self.update_gauges()
            pending = self.buffer.ready
            age = self.buffer.oldest_age()
            if pending and (
                self._flushing or pending >= self.settings.drain_batch_size
                or age >= self.settings.drain_interval_s
            ):
                return
            if loop.time() >= next_scan:
                next_scan = loop.time() + self.settings.orphan_scan_interval_s
                try:
                    await self.adopt_orphans()
                    await self.count_dead_letters()  # the CLI may have replayed or discarded some
                except Exception:  # a bad file must not stop the drainer; the next scan retries
                    log.exception("prediction log: scanning the spool directory failed")
                continue
            timeout = self.settings.drain_interval_s - age if pending else 1.0
            if (due := self.buffer.next_due()) is not None:
                timeout = min(timeout, due - time.monotonic())
            assert self._more is not None  # set by start()
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
                settled = await self.sink.settle(batch)
                wait, orphaned = await self._triage_unmatched(settled.unmatched)
            except Exception as exc:  # the database is unavailable: keep the batch, retry later
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
            refused = settled.refused + [(r, NO_PREDICTION) for r in orphaned]
            kept = await self._dead_letter(refused)
            self.buffer.park(wait, time.monotonic() + max(self.settings.drain_interval_s, 0.5))
            settled_now = settled.written + [r for r, _ in refused if id(r) in kept]
            self.settle(self.buffer.ack(settled_now))
            self.metrics.log_written.inc(sum(1 for r in settled.written if r.kind == PREDICTION))
            self.update_gauges()
            if self.files is not None:
                self.files.drained()

    async def _triage_unmatched(
        self, unmatched: list[PendingRecord]
    ) -> tuple[list[PendingRecord], list[PendingRecord]]:
        """Feedback without its prediction in the database: (keep waiting, give up on)."""
        now = time.monotonic()
        wait: list[PendingRecord] = []
        expired: list[PendingRecord] = []
        for rec in unmatched:
            if rec.unmatched_since is None:
                rec.unmatched_since = now
            in_grace = now - rec.unmatched_since < self.settings.feedback_grace_s
            own = self.buffer.get(rec.prediction_id) is not None
            (wait if in_grace or own else expired).append(rec)
        if not expired:
            return wait, []
        pids = {r.prediction_id for r in expired if r.prediction_id is not None}
        alive = await self._in_a_spool(pids)
        # Committed (and its segment retired) between the database look and the spool scan?
        alive |= await self.sink.existing(PREDICTION, list(pids - alive))
        wait += [r for r in expired if r.prediction_id in alive]
        return wait, [r for r in expired if r.prediction_id not in alive]

    async def _in_a_spool(self, ids: set[uuid.UUID]) -> set[uuid.UUID]:
        own = {i for i in ids if self.buffer.get(i) is not None}
        return own | set((await self.peers.records(ids - own)).predictions)

    async def _dead_letter(self, refused: list[tuple[PendingRecord, str]]) -> set[int]:
        """Store refused records durably; the ``id()`` of those stored (only they may be acked)."""
        if not refused:
            return set()
        letters = [DeadLetter.of(r.id, r.kind, r.line, reason) for r, reason in refused]
        try:
            await asyncio.to_thread(self.dead_letters.put, letters)
        except OSError as exc:
            # Kept pending (not lost) and out of the way of later records until the next try.
            log.error("prediction log: %d refused records not dead-lettered (%s); kept in the spool",
                      len(refused), exc)
            self.buffer.park([r for r, _ in refused], time.monotonic() + self.settings.backoff_max_s)
            return set()
        for rec, reason in refused:
            self.metrics.spool_dead_letters.labels(rec.kind).inc()
            log.error("prediction log: %s %s refused by the database, dead-lettered: %s",
                      rec.kind, rec.id, reason)
        await self.count_dead_letters()
        return {id(r) for r, _ in refused}
