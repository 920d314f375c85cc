"""Read ahead: the next chunk is parsed and checked in a thread while this one is predicted.

pyarrow's parser and the checks release the GIL for most of their work, so reading overlaps the
model instead of waiting for it. At most ``depth`` chunks wait in the queue: memory stays bounded.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


def prefetch(make: Callable[[], Iterator[T]], depth: int = 1) -> Generator[T, None, None]:
    """The items of ``make()``, produced in a background thread; its exceptions are re-raised here.

    Leaving the loop early (an error downstream) stops the producer at its next item.
    """
    items: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in make():
                if not put(item):
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            put(_Failure(exc))
            return
        put(_DONE)

    thread = threading.Thread(target=produce, name="batch-scoring-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item  # type: ignore[misc]  # the producer puts only T, _DONE and _Failure
    finally:
        stop.set()
        thread.join()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
