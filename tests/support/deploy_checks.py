"""Helpers for the deployment files' tests: where the validators are, PromQL metric names."""

from __future__ import annotations

import json
import re
import shutil
import sys
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy/grafana/dashboards/future-skills.json"

# PromQL words that are not metric names.
_PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "bool", "offset", "inf", "nan",
}


# Programs that come from Debian packages, not from pip (scripts/test.sh installs them as root).
DEBIAN_PACKAGES = {"prometheus": "prometheus", "promtool": "prometheus", "haproxy": "haproxy"}


def tool(name: str) -> str:
    """A validator's executable: next to this Python (the venv's bin), else on PATH, else in
    /usr/sbin (Debian puts daemons such as haproxy there, off a normal user's PATH). Never skips."""
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found and name in DEBIAN_PACKAGES:
        found = shutil.which(name, path="/usr/sbin:/sbin")
    if name in DEBIAN_PACKAGES:
        how = f"sudo apt-get install -y {DEBIAN_PACKAGES[name]} (bash scripts/test.sh does it as root)"
    else:
        how = "pip install -e '.[dev]' (bash scripts/test.sh does it)"
    assert found, f"{name} is not installed: {how}"
    return found


def compose_schema() -> dict:
    """The Compose specification's JSON schema, as vendored by check-jsonschema."""
    path = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return json.loads(path.read_text())


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (label matchers, ranges, groupings removed)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"(?<![A-Za-z0-9_:])\d+(\.\d+)?([eE][+-]?\d+)?", " ", text)  # numbers
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        following = text[match.end():].lstrip()[:1]
        if following == "(" or word.lower() in _PROMQL_WORDS:
            continue  # a function or a keyword
        names.add(word)
    return names


def dashboard_queries(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, expr) for every target of every panel, rows included."""
    out = []

    def walk(panels):
        for panel in panels:
            for target in panel.get("targets", []):
                out.append((panel["title"], target["expr"]))
            walk(panel.get("panels", []))

    walk(dashboard["panels"])
    return out
