"""Giving freed heap back to the system.

Building a model's compiled forms (the ONNX Runtime session parses the whole graph; numba loads
the TreeSHAP kernel and LLVM) frees most of what it allocated again, but glibc keeps freed memory
in the process unless asked to return it, so a settled worker's RSS would carry it for good.
"""

from __future__ import annotations

import ctypes


def return_freed_memory() -> None:
    """``malloc_trim(0)``: every arena's free pages back to the system (blocking, milliseconds)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass
