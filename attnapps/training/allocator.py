"""glibc's ``malloc``, set for training loops on the CPU (``trainer.keep_freed_memory``).

A training step allocates and frees the same large tensors (activations, gradients) every step. With
glibc's defaults, blocks above a threshold (128 KiB at first, raised as blocks are freed) are mapped
fresh from the kernel, and free memory at the top of the heap is handed back once it passes a trim
threshold. Either way the next step touches new pages: one page fault per 4 KiB, each zeroed by the
kernel -- about 2 microseconds per fault on this project's 2-core VM, thousands of faults per step (see
``scripts/bench_generation.py``'s faults/step column).

:func:`keep_freed_memory` raises the mmap threshold to glibc's maximum (32 MiB on 64-bit) and the trim
threshold to 1 GiB: freed blocks stay in the heap and the next step reuses them, the way CUDA's caching
allocator keeps GPU memory. The cost is that the process keeps its peak heap (what it has already used)
instead of returning it between steps. It does nothing off glibc (macOS, Windows, musl), nor when the
user already set glibc's allocator in the environment (``MALLOC_*_`` variables, or ``glibc.malloc``
tunables in ``GLIBC_TUNABLES``: their choice wins). ``mallopt`` changes the process's allocator from
then on; there is no undo short of a new process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: the largest it accepts
TRIM_THRESHOLD = 1024 * 1024 * 1024
ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")

_applied: bool | None = None


def _glibc():
    """The process's glibc (None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # glibc only (musl has mallopt as a no-op stub, and no this)
        return libc
    except (OSError, AttributeError):
        return None


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds as above; True if this process's allocator now keeps freed
    memory (also when an earlier call did), False where it does not apply."""
    global _applied
    if _applied is not None:
        return _applied
    libc = _glibc()
    if libc is None or any(k in os.environ for k in ENV) or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        _applied = False
        return False
    _applied = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD,
                                                                                       TRIM_THRESHOLD))
    return _applied


def minor_faults() -> int:
    """Page faults this process has taken without reading the disk (getrusage's ``ru_minflt``); 0 where
    ``resource`` is missing (Windows)."""
    try:
        import resource
    except ImportError:
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
