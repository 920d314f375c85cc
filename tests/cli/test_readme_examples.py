"""The README's shell examples run as written against a live service, and the docs name only
metrics and settings that exist.

Every fenced ``bash`` block of README.md is run with ``bash -euo pipefail`` from the repository
root, against one real ``future-skills serve`` process on a free port and a temporary data dir
(a copy of the test registry: the trained model, a fresh prediction database). ``localhost:8000``
and ``127.0.0.1:8000`` in a block are rewritten to that server's address. The two set-up commands
are not run: ``bash scripts/run.sh`` is what the live server stands for, and ``bash
scripts/test.sh`` is this very run. A block preceded by ``<!-- readme-test: skip: REASON -->`` is
skipped, and its reason is printed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.live_server import LiveServer

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SET_UP = {"bash scripts/run.sh", "bash scripts/test.sh"}
_BLOCK = re.compile(r"(?P<before>[^\n]*)\n```bash\n(?P<code>.*?)\n```", re.S)
_SKIP = re.compile(r"<!-- readme-test: skip: (?P<reason>.+?) -->")
_CURL_FAILS = ("--fail-with-body", "--fail", "-f", "-fsS", "-sSf", "-sf", "-fs")


def bash_blocks(text: str) -> list[tuple[str, str | None]]:
    """(code, skip reason or None) of every fenced bash block, in order."""
    blocks = []
    for match in _BLOCK.finditer(text):
        skip = _SKIP.search(match.group("before"))
        blocks.append((match.group("code"), skip.group("reason") if skip else None))
    return blocks


def test_the_readme_examples_run_against_a_live_service(registry_dir, tmp_path):
    blocks = bash_blocks(README.read_text())
    codes = [code.strip() for code, _ in blocks]
    assert set(codes) >= SET_UP, "the README lost one of its two commands"
    runnable = [code for code, skip in blocks if skip is None and code.strip() not in SET_UP]
    assert runnable, "no example left to run"
    for code, reason in blocks:
        if reason:
            print(f"skipped README block ({reason}): {code.splitlines()[0]}")
    for code in runnable:  # an HTTP error must fail the block, not print quietly
        for call in re.findall(r"\bcurl\b[^\n]*", code):
            assert any(flag in call.split() for flag in _CURL_FAILS), f"curl without --fail: {call}"

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copy2(registry_dir / "mlflow.db", data_dir / "mlflow.db")  # artifacts stay shared
    server = LiveServer(data_dir, f"sqlite:///{tmp_path / 'predictions.db'}").start()
    address = f"127.0.0.1:{server.port}"
    env = server.env | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    try:
        for code in runnable:
            script = code.replace("localhost:8000", address).replace("127.0.0.1:8000", address)
            result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=env,
                                    capture_output=True, text=True, timeout=120)
            assert result.returncode == 0, f"{code}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
            assert result.stdout.strip(), f"no output from:\n{code}"
    finally:
        assert server.stop() == 0, server.output[-3000:]


def test_the_docs_name_only_metrics_and_settings_that_exist():
    """docs/operations.md once named fs_prediction_log_pending and FS_LOG_QUEUE_MAX, long gone."""
    from app.cli.reference_docs import render_configuration
    from app.metrics import ServiceMetrics

    metrics = {family.name for family in ServiceMetrics().registry.collect()}
    settings = set(re.findall(r"\b(?:FS|MLFLOW|PROMETHEUS)_[A-Z0-9_]+", render_configuration()))
    settings.add("FS_TEST_PG_DSN")  # the test suite's own variable (tests/conftest.py)
    settings.add("FS_BENCH_PG_DSN")  # the serving benchmark's (bench/serving.py)
    suffixes = ("_total", "_bucket", "_sum", "_count", "_created")

    def known(name: str, names: set[str]) -> bool:
        if name.endswith("_"):  # a prefix, as in FS_TRAIN_* or a grep pattern
            return any(n.startswith(name) for n in names)
        return name in names or any(name.endswith(s) and name[: -len(s)] in names for s in suffixes)

    unknown = []
    for doc in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text()
        unknown += [f"{doc.name}: {m}" for m in sorted(set(re.findall(r"\bfs_[a-z0-9_]+", text)))
                    if not known(m, metrics)]
        unknown += [f"{doc.name}: {s}" for s in sorted(set(re.findall(r"\bFS_[A-Z0-9_]+", text)))
                    if not known(s, settings)]
    assert not unknown, unknown


@pytest.mark.parametrize("text, expected", [
    ("intro\n```bash\necho hi\n```\n", [("echo hi", None)]),
    ("<!-- readme-test: skip: slow -->\n```bash\nsleep 600\n```\n", [("sleep 600", "slow")]),
])
def test_blocks_and_skip_markers_are_found(text, expected):
    assert bash_blocks(text) == expected
