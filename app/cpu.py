"""The process's threads for CPU-bound work that releases the GIL: numpy's sorts and scans (the
drift tests), the compiled TreeSHAP kernel, the tree sums of a large batch.

One pool per thread count for the whole process (one thread per core unless a setting says
otherwise), so concurrent callers queue for the cores instead of oversubscribing them. Callers
submit from their own worker thread (``asyncio.to_thread``), never from a pool thread, so a
``map`` cannot wait on itself.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor


def cores() -> int:
    return os.cpu_count() or 1


def cpu_pool(threads: int | None = None) -> ThreadPoolExecutor:
    """The shared pool of ``threads`` threads (default: one per core), made on first use."""
    return _pool(threads or cores())


@functools.cache
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="fs-cpu")
