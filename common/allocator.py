"""The C allocator of a script's process, set once at its start (common/errors.run_cli).

torch allocates each step's activations and gradients afresh: a 5-member ensemble's step on a
small table asks for a few dozen blocks of 0.1-1 MB. glibc's thresholds adapt by themselves:
blocks are mapped fresh until one that size has been freed, and the heap's free top is handed
back to the system beyond twice that. Under a step's mix of sizes this kept handing memory back
and faulting it in again: 250-700 minor page faults a step, about a fifth of the step's time,
and the elementwise passes over those blocks (ReLU and its backward) ran several times slower
inside a step than alone. With blocks up to MMAP_THRESHOLD served from the heap and up to
TRIM_THRESHOLD of its free top kept, a step faults about once. Larger blocks (a chunk of a big
table) are still mapped and unmapped as before, so memory stays flat in rows.

make_data.py's process keeps a table's column chunks too (a million rows of float64, 8 MB, a
dozen of them per chunk of rows): on a 10M-row CSV they took 500k page faults and ~2 s of its 12,
and 50k once served from the heap. infer.py's keeps its batches' arrays (65,536 rows of 20
hidden units, 5 MB): 29k faults a million rows, against a few thousand. Training keeps the
smaller thresholds: its batches are small, and the larger ones held ~50 MB more in a 10M-row
run for no time saved.

Only the scripts' own processes are tuned: a Python caller's process keeps its allocator as it
was. Where the environment already sets glibc's malloc (MALLOC_*_ variables, or glibc.malloc.*
in GLIBC_TUNABLES), that setting is left as given. Elsewhere than glibc nothing changes.
"""
from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 4 << 20   # above any block of a small model's step, below a table's chunk
TRIM_THRESHOLD = 32 << 20  # the most freed memory kept for the next step
CHUNK_MMAP_THRESHOLD = 16 << 20  # make_data.py and infer.py: above a column's chunk of a table
CHUNK_TRIM_THRESHOLD = 64 << 20  # the most freed memory kept for the next chunk


def set_by_environment() -> bool:
    """Whether the environment already tells glibc's malloc what to do."""
    return any(name.startswith("MALLOC_") and name.endswith("_") for name in os.environ) \
        or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "")


def is_glibc() -> bool:
    """Whether this process runs on glibc, asked of the C library itself (platform.libc_ver would
    scan the interpreter's binary file at every script's start)."""
    try:
        return sys.platform.startswith("linux") and (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError):  # a C library without the name
        return False


def keep_step_memory() -> bool:
    """Set glibc's thresholds for a model's steps in this process; whether they were set."""
    return keep_freed_blocks(MMAP_THRESHOLD, TRIM_THRESHOLD)


def keep_chunk_memory() -> bool:
    """The same for a table's chunks and a prediction's batches as well (make_data.py, infer.py)."""
    return keep_freed_blocks(CHUNK_MMAP_THRESHOLD, CHUNK_TRIM_THRESHOLD)


def keep_freed_blocks(largest: int, kept: int) -> bool:
    """Blocks up to `largest` bytes from the heap, up to `kept` bytes of its free top kept."""
    if not is_glibc() or set_by_environment():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    # mallopt answers 1 where it took the value
    return bool(mallopt(M_MMAP_THRESHOLD, largest)) and bool(mallopt(M_TRIM_THRESHOLD, kept))
