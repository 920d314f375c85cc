"""A model version as the API and the CLI show it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from app.registry.client import VersionRef


def describe(ref: VersionRef) -> dict[str, Any]:
    """A version as the API and CLI show it."""
    record = json.loads(ref.tags["fs.record"]) if "fs.record" in ref.tags else {}
    metrics = record.get("metrics") or {
        k.removeprefix("metric."): float(v) for k, v in ref.tags.items() if k.startswith("metric.")
    }
    created = (datetime.fromtimestamp(ref.created_at_ms / 1000, UTC).isoformat()
               if ref.created_at_ms else None)
    return {
        "version": ref.version, "semver": ref.semver, "change_type": ref.tags.get("change_type"),
        "aliases": list(ref.aliases), "stage": ref.stage, "run_id": ref.run_id,
        "created_at": created, "metrics": metrics, "parent_version": record.get("parent_version"),
        "archived": ref.tags.get("archived") == "true",
    }
