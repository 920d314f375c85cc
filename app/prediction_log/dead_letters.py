"""Dead letters: spool records the database refuses, kept on this replica's disk for a human.

One file per record, ``<spool dir>/dead-letter/<record id>.json``, holding one JSON line: the
original spool line, its kind, the database's reason (a short string, never a traceback) and when.
A file is written under a temporary name, fsync'd and renamed, so an entry is either whole or
absent; the record id as the name makes a second dead-lettering of the same record (after a
crash between the write and the acknowledgement) overwrite, not duplicate. Replay and discard
only delete files, so live workers (which only create them) and the CLI never contend.

Blocking file work; callers on the event loop run it in a thread.
"""

from __future__ import annotations

import builtins
import logging
import os
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from app.prediction_log.segments import fsync_dir

DIR_NAME = "dead-letter"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeadLetter:
    id: str  # the record's own id (prediction or feedback uuid)
    kind: str  # "prediction" or "feedback"
    reason: str
    at: str  # ISO 8601, UTC
    line: str  # the spool line exactly as it was (JSON, newline included)

    @classmethod
    def of(cls, record_id: uuid.UUID, kind: str, line: bytes, reason: str) -> DeadLetter:
        return cls(str(record_id), kind, reason, datetime.now(UTC).isoformat(), line.decode())


class DeadLetterStore:
    def __init__(self, spool_dir: Path) -> None:
        self.directory = spool_dir / DIR_NAME

    def put(self, letters: builtins.list[DeadLetter]) -> None:
        if not letters:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        for letter in letters:
            final = self._path(letter.id)
            tmp = self.directory / f".{letter.id}.{uuid.uuid4().hex}.tmp"
            with open(tmp, "wb") as out:
                out.write(orjson.dumps(asdict(letter), option=orjson.OPT_APPEND_NEWLINE))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, final)
        fsync_dir(self.directory)

    def list(self) -> builtins.list[DeadLetter]:
        letters = []
        for path in self._files():
            try:
                letters.append(DeadLetter(**orjson.loads(path.read_bytes())))
            except FileNotFoundError:  # replayed or discarded meanwhile
                continue
            except (ValueError, TypeError) as exc:  # not ours, or edited by hand: left alone, said
                log.error("dead letters: %s is not a dead letter (%s); left in place", path.name, exc)
        return sorted(letters, key=lambda d: (d.at, d.id))

    def count(self) -> int:
        return len(self._files())

    def remove(self, ids: builtins.list[str]) -> builtins.list[str]:
        """Delete the named entries; the ids that existed."""
        removed = []
        for rid in ids:
            path = self._path(rid)
            if path.exists():
                path.unlink(missing_ok=True)
                removed.append(rid)
        if removed:
            fsync_dir(self.directory)
        return removed

    def _files(self) -> builtins.list[Path]:
        return sorted(self.directory.glob("*.json")) if self.directory.exists() else []

    def _path(self, rid: str) -> Path:
        return self.directory / f"{uuid.UUID(rid)}.json"  # a uuid, never a path from the user
