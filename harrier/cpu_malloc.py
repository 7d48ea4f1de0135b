"""glibc's malloc set up for large CPU tensors, once per process, at the first CPU model load.

glibc serves an allocation above its mmap threshold (adjusted at run time, never above 32 MiB on 64-bit) with fresh
pages from ``mmap`` and unmaps them again at ``free``, so a tensor over 32 MiB pays its page faults (the kernel
zero-fills each page) at every forward. A packed batch of 4096 tokens has such tensors (the int8 fused gate/up
product of the 270m shape: [4096, 4096] int32, 64 MiB) and their faults can cost more than the product. Measured on
AMD EPYC Zen 5 (lscpu family 26 model 2), 2 threads: ``torch._int_mm`` [4096, 640] x [640, 4096] 589 GOP/s into
fresh pages, 1,725 with the threshold raised (allocating and filling 64 MiB: 24.6 ms -> 2.0 ms); the 270m shape's
int8 compiled encode of cpu_modes' 200 texts 4.96 -> 3.98 s (docs/cpu-modes.md).

``tune()`` fixes the mmap threshold at ``MMAP_THRESHOLD`` (a fixed value also ends glibc's adjustment), so the
allocations up to it come from the heap, and the trim threshold at ``TRIM_THRESHOLD``, so that a batch's freed
memory stays in the heap for the next one instead of going back to the kernel: the process keeps up to that much
freed memory (its peak, which it reached anyway). Threads other than the main one allocate from glibc's per-thread
arenas, whose heaps are at most 64 MiB, so that larger tensors are mmap'ed there whatever the threshold;
``ARENA_MAX`` = 1 makes threads started afterwards (the server's model thread) share the main arena.
``HARRIER_CPU_MALLOC=0`` leaves malloc as it is; other C libraries (musl) are left alone. With another allocator
preloaded in glibc's place (jemalloc, tcmalloc) the calls reach glibc's unused malloc and change nothing.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
from functools import cache

log = logging.getLogger(__name__)

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
MMAP_THRESHOLD = 256 << 20  # larger allocations (32k-token inputs' products) keep their own pages, as before
TRIM_THRESHOLD = 1 << 30
ARENA_MAX = 1


@cache
def tune() -> str:
    """Set glibc's malloc up for large tensors (once per process); returns what was done, in words (``info()``)."""
    setting = os.environ.get("HARRIER_CPU_MALLOC", "1")
    if setting not in ("0", "1"):
        raise ValueError(f"HARRIER_CPU_MALLOC must be 0 or 1, got {setting!r}")
    if setting == "0":
        return "glibc defaults (HARRIER_CPU_MALLOC=0)"
    libc_name, _ = platform.libc_ver()
    if platform.system() != "Linux" or libc_name != "glibc":
        return f"left as it is (not glibc: {platform.system()} {libc_name or 'unknown libc'})"
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return "left as it is (no mallopt)"
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    refused = [name for name, param, value in (("mmap threshold", M_MMAP_THRESHOLD, MMAP_THRESHOLD),
                                           ("trim threshold", M_TRIM_THRESHOLD, TRIM_THRESHOLD),
                                           ("arena max", M_ARENA_MAX, ARENA_MAX)) if mallopt(param, value) != 1]
    if refused:
        log.warning("glibc refused mallopt for %s; large CPU tensors may be slower to allocate", ", ".join(refused))
        return f"glibc, mallopt refused for {', '.join(refused)}"
    log.info("glibc malloc: mmap threshold %d MiB, trim threshold %d MiB, %d arena", MMAP_THRESHOLD >> 20,
             TRIM_THRESHOLD >> 20, ARENA_MAX)
    return (f"glibc tuned: tensors up to {MMAP_THRESHOLD >> 20} MiB from the heap, up to {TRIM_THRESHOLD >> 20} MiB "
            f"freed kept, {ARENA_MAX} arena (HARRIER_CPU_MALLOC=0: defaults)")
