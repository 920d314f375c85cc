"""Spool segments: daily JSONL files per worker, each held under an ``flock`` by its owner.

A segment is named ``predictions-YYYYMMDD-<worker>.jsonl`` (``-<n>`` is added when the name is
taken, e.g. after a restart with the same worker id, or at rotation by size). The owner holds an
exclusive ``flock`` on the segment for as long as it lives, so any other process that gets the lock
knows the owner is dead and may adopt the segment (drain it, then delete it). A new segment is
created under a hidden temporary name, locked, and only then linked under its final name, so no
scanner can ever lock a live worker's segment in the gap between creation and locking.

Blocking file work here is plain synchronous code; callers run it in a thread where it may block.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

SEGMENT_GLOB = "predictions-*.jsonl"


@dataclass(eq=False)
class Segment:
    path: Path
    fd: int
    size: int = 0
    day: str = ""
    # Records appended (or adopted) and not yet committed to the database.
    outstanding: int = 0
    # No more appends: the segment is retired as soon as ``outstanding`` reaches 0.
    closed: bool = False
    retired: bool = False

    def write(self, data: bytes, sync: bool) -> None:
        view = memoryview(data)
        try:
            while view:
                written = os.write(self.fd, view)
                view = view[written:]
            if sync:
                os.fdatasync(self.fd)
        except OSError:
            # Cut a partial write off, so the next append does not glue onto half a line.
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, self.size)
            raise
        self.size += len(data)

    def retire(self) -> None:
        """Delete the segment (every row is committed) and let go of its lock."""
        if self.retired:
            return
        self.retired = True
        try:
            self.path.unlink(missing_ok=True)  # unlinked while still locked: no one can adopt it
        finally:
            os.close(self.fd)

    def release(self) -> None:
        """Keep the file (rows not yet committed) but drop the lock, for the next start to adopt."""
        if not self.retired:
            self.retired = True
            os.close(self.fd)


def today() -> str:
    return datetime.now(UTC).strftime("%Y%m%d")


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_segment(directory: Path, worker: str, day: str, sync: bool) -> Segment:
    """A new, locked, empty segment under the first free name for (day, worker)."""
    tmp = directory / f".new-{worker}-{uuid.uuid4().hex}.tmp"
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_APPEND, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        n = 0
        while True:
            suffix = "" if n == 0 else f"-{n}"
            path = directory / f"predictions-{day}-{worker}{suffix}.jsonl"
            try:
                os.link(tmp, path)  # atomic and never overwrites an existing segment
                break
            except FileExistsError:
                n += 1
        tmp.unlink()
        if sync:
            fsync_dir(directory)  # the name itself must survive a crash
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    return Segment(path=path, fd=fd, day=day)


@dataclass
class AdoptedSegment:
    segment: Segment
    lines: list[bytes]
    damaged: int = 0
    torn_tail: bool = False


def try_lock(path: Path) -> int | None:
    """An fd holding the segment's lock, or None when a live owner holds it (or it is gone)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    try:  # the owner may have retired (unlinked) it between our open and our lock
        if os.stat(path).st_ino != os.fstat(fd).st_ino:
            os.close(fd)
            return None
    except FileNotFoundError:
        os.close(fd)
        return None
    return fd


def split_lines(data: bytes) -> tuple[list[bytes], bool]:
    """Complete lines, and whether a torn final line (a write cut short by a crash) was dropped.

    A torn line was never acknowledged: the response waits for the whole write (and the fsync).
    """
    if not data:
        return [], False
    parts = data.split(b"\n")
    tail = parts.pop()
    return [p + b"\n" for p in parts if p.strip()], bool(tail.strip())


def adopt(path: Path, quarantine: Path, validate) -> AdoptedSegment | None:
    """Lock and read a segment whose owner is dead; None if its owner is alive."""
    fd = try_lock(path)
    if fd is None:
        return None
    chunks = []
    while chunk := os.pread(fd, 1 << 20, sum(len(c) for c in chunks)):
        chunks.append(chunk)
    data = b"".join(chunks)
    lines, torn = split_lines(data)
    good, bad = [], []
    for line in lines:
        try:
            validate(line)
            good.append(line)
        except ValueError:
            bad.append(line)
    if bad:  # never silently lost: kept aside for a human, and reported
        quarantine.mkdir(parents=True, exist_ok=True)
        with open(quarantine / path.name, "ab") as out:
            out.writelines(bad)
            out.flush()
            os.fsync(out.fileno())
        log.error("spool: %d damaged lines of %s moved to %s", len(bad), path.name, quarantine)
    if torn:
        log.warning("spool: %s ends with a torn line (an unacknowledged write); ignored", path.name)
    segment = Segment(path=path, fd=fd, size=len(data), closed=True)
    return AdoptedSegment(segment, good, len(bad), torn)


def orphan_paths(directory: Path, own: set[Path]) -> list[Path]:
    return sorted(p for p in directory.glob(SEGMENT_GLOB) if p not in own)


@dataclass
class SegmentInfo:
    path: Path
    size: int
    lines: int
    live: bool  # a running worker holds it


def describe(directory: Path) -> list[SegmentInfo]:
    """What ``spool status`` shows; probes each lock without keeping it."""
    infos = []
    for path in sorted(directory.glob(SEGMENT_GLOB)) if directory.exists() else []:
        fd = try_lock(path)
        live = fd is None
        if fd is not None:
            os.close(fd)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        infos.append(SegmentInfo(path, len(data), len(split_lines(data)[0]), live))
    return infos


@dataclass
class SpoolFiles:
    """The segments one worker writes: the active one, and closed ones not yet drained."""

    directory: Path
    worker: str
    sync: bool
    segment_max_bytes: int
    active: Segment | None = None
    own: set[Path] = field(default_factory=set)
    created: int = 0  # segments created by this worker so far
    # Set when the active segment is fully drained and big: the next append starts a new one, so
    # the drained one is deleted and the files other workers scan stay small.
    rotate_next: bool = False

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob(".new-*.tmp"):  # creation interrupted by a crash
            fd = try_lock(stale)
            if fd is not None:
                stale.unlink(missing_ok=True)
                os.close(fd)

    def segment_for(self, nbytes: int) -> tuple[Segment, Segment | None]:
        """The segment to append to, rotating by day or size; also the segment just closed."""
        day = today()
        current = self.active
        if current is not None and current.day == day and (
            current.size == 0 or (current.size + nbytes <= self.segment_max_bytes and not self.rotate_next)
        ):
            return current, None
        self.rotate_next = False
        self.active = create_segment(self.directory, self.worker, day, self.sync)
        self.own.add(self.active.path)
        self.created += 1
        return self.active, current

    def forget(self, segment: Segment) -> None:
        self.own.discard(segment.path)
