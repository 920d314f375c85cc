"""app/serving/siblings.py: a worker counts only live workers of its own server as ready."""

from __future__ import annotations

import os
import subprocess
import sys

from app.serving.siblings import SiblingWorkers


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_only_live_workers_of_this_server_count(tmp_path):
    siblings = SiblingWorkers(tmp_path, expected=2)
    dead = tmp_path / f"{_dead_pid()}.ready"
    dead.write_text(str(os.getppid()))  # a crashed worker of this server
    foreign = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / f"{foreign.pid}.ready").write_text("1")  # alive, but another server's worker
        assert siblings.ready_count() == 0 and not siblings.all_ready()
        siblings.mark_ready()
        assert not dead.exists()  # pruned: its pid is gone
        assert (tmp_path / f"{foreign.pid}.ready").exists()  # a live process's marker is kept
        assert siblings.ready_count() == 1 and not siblings.all_ready()
        assert SiblingWorkers(tmp_path, expected=1).all_ready()
        siblings.forget()
        assert siblings.ready_count() == 0
    finally:
        foreign.kill()
        foreign.wait()
