"""Appends records to the spool with the configured durability, sharing fsyncs between requests.

``fsync``: one writer task collects every append that arrives while the previous write+fsync is
running (and, when requests are concurrent, up to ``group_commit_wait_ms`` more), writes them in
one ``write`` and syncs once, in a thread; each request resumes when its bytes are on disk.
``os``: the same path without the sync (survives a process crash, not a power cut).
``none``: nothing is written; records live only in memory until the drainer commits them.
"""

from __future__ import annotations

import asyncio
import logging

from app.prediction_log.segments import Segment, SpoolFiles

log = logging.getLogger(__name__)


class SpoolWriteError(Exception):
    pass


class SpoolWriter:
    def __init__(self, *, files: SpoolFiles | None, durability: str, group_commit_wait_ms: float) -> None:
        if files is None and durability != "none":
            raise ValueError(f"durability {durability!r} needs spool files")
        self.files = files
        self.durability = durability
        self.wait_s = group_commit_wait_ms / 1000.0
        self._waiting: list[tuple[bytes, asyncio.Future[Segment]]] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_group = 1
        self.syncs = 0  # fsyncs done; with group commit far fewer than appends

    def start(self) -> None:
        if self.durability == "fsync":
            self._wake = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name="spool-group-commit")

    async def append(self, data: bytes) -> Segment | None:
        """Returns once ``data`` is as durable as the setting promises; the segment it is in."""
        if self.durability == "none":
            return None
        if self.durability == "os":
            # A write to the page cache takes microseconds; no thread hop needed.
            try:
                segment, closed = self._write(data, sync=False)
            except OSError as exc:
                raise SpoolWriteError(str(exc)) from exc
            self._closed(closed)
            return segment
        if self._task is None or self._wake is None:  # stopped (shutdown): refuse, never wait forever
            raise SpoolWriteError("spool is closed")
        future: asyncio.Future[Segment] = asyncio.get_running_loop().create_future()
        self._waiting.append((data, future))
        self._wake.set()
        return await future

    def _write(self, data: bytes, sync: bool) -> tuple[Segment, Segment | None]:
        """Append to the current segment; also returns a segment that rotation just closed."""
        assert self.files is not None  # only durabilities that write get here
        written = self.files.write(data, sync=sync)
        if sync:
            self.syncs += 1
        return written

    def _closed(self, segment: Segment | None) -> None:
        # On the event loop, which owns the pending-record counts.
        if self.files is not None:
            self.files.closed(segment)

    async def _run(self) -> None:
        wake = self._wake
        assert wake is not None
        while True:
            await wake.wait()
            wake.clear()
            # Wait a little for company only when requests have been arriving together.
            if self.wait_s and self._last_group > 1 and len(self._waiting) < 64:
                await asyncio.sleep(self.wait_s)
            group, self._waiting = self._waiting, []
            if not group:
                continue
            self._last_group = len(group)
            data = b"".join(d for d, _ in group)
            try:
                segment, closed = await asyncio.to_thread(self._write, data, True)
            except OSError as exc:
                log.error("spool: write failed (%s): %s", type(exc).__name__, exc)
                for _, fut in group:
                    if not fut.done():
                        fut.set_exception(SpoolWriteError(str(exc)))
                continue
            self._closed(closed)
            for _, fut in group:
                if not fut.done():
                    fut.set_result(segment)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
            for _, fut in self._waiting:
                if not fut.done():
                    fut.set_exception(SpoolWriteError("spool is closed"))
            self._waiting = []
