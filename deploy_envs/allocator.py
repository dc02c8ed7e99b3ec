"""Keep freed memory in the process: an opt-in setting of glibc's ``malloc`` for large batches.

A batched step allocates the same large temporaries on every call (a convolution's
activations are megabytes at a thousand copies). glibc serves blocks above its mmap
threshold with ``mmap`` and gives them back with ``munmap``, and it trims the top of the
heap back to the system once more than its trim threshold lies free there. Both thresholds
move with the process's history, so the same step can pay fresh page faults on every call
in one process and none in another. Measured on a 2-core x86-64 CPU (AMD EPYC)
(``benchmarks/bench_allocator.py``, fresh processes, three pairs): with glibc's defaults the
digits CNN's pass on 1,024 inputs took 2.7x to 3.3x as long as with the thresholds fixed high,
and ``Evasion-v0``'s native step at 1,024 copies 1.9x to 2.5x as long.

:func:`keep_freed_memory` fixes both thresholds with ``mallopt``: blocks up to
``mmap_threshold`` bytes come from the heap, and up to ``trim_threshold`` bytes of free
heap stay with the process for the next step. It changes the allocator of the whole
process, so the suite never calls it on its own: call it once at the start of a training
or evaluation script. The same effect without code: the environment variables
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` (read by glibc at start-up),
or another allocator (jemalloc, tcmalloc) loaded with ``LD_PRELOAD``.
"""
from __future__ import annotations

import ctypes
import ctypes.util

from deploy_envs.core.validation import check_number

#: ``mallopt`` parameter numbers (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: glibc refuses an mmap threshold above this on 64-bit systems (HEAP_MAX_SIZE / 2)
MAX_MMAP_THRESHOLD = 32 * 1024 * 1024


def _mallopt():
    """glibc's ``mallopt``, or None where the C library has none (macOS, Windows, musl)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.mallopt
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def keep_freed_memory(mmap_threshold: int = MAX_MMAP_THRESHOLD, trim_threshold: int = 128 * 1024 * 1024) -> bool:
    """Fix glibc's mmap and trim thresholds (bytes) for the whole process; True when both were set.

    Returns False, changing nothing, where the C library has no ``mallopt``. Raises
    ``ValueError`` naming the argument for a threshold that is not a positive whole number
    of bytes (``mmap_threshold`` at most :data:`MAX_MMAP_THRESHOLD`) before changing anything.
    """
    mmap_threshold = check_number("mmap_threshold", mmap_threshold, low=1, high=MAX_MMAP_THRESHOLD, integer=True)
    trim_threshold = check_number("trim_threshold", trim_threshold, low=1, high=2**31 - 1, integer=True)
    fn = _mallopt()
    if fn is None:
        return False
    return bool(fn(M_MMAP_THRESHOLD, mmap_threshold)) and bool(fn(M_TRIM_THRESHOLD, trim_threshold))
