"""The C allocator of a script's process, set once at its start (common/errors.run_cli).

torch allocates each step's activations and gradients afresh: a 5-member ensemble's step on a
small table asks for a few dozen blocks of 0.1-1 MB. glibc's thresholds adapt by themselves:
blocks are mapped fresh until one that size has been freed, and the heap's free top is handed
back to the system beyond twice that. Under a step's mix of sizes this kept handing memory back
and faulting it in again: 250-700 minor page faults a step, about a fifth of the step's time,
and the elementwise passes over those blocks (ReLU and its backward) ran several times slower
inside a step than alone. With blocks up to MMAP_THRESHOLD served from the heap and up to
TRIM_THRESHOLD of its free top kept, a step faults about once. The same held for a table's
chunks in make_data.py (a column's million rows, 8 MB, a dozen times over): 500k page faults,
2 s of a 10M-row CSV's 12, went to 50k once they too came from the heap. Larger blocks are
still mapped and unmapped as before, and what is kept is bounded, so memory stays flat in rows.

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
MMAP_THRESHOLD = 16 << 20  # above any block of a small model's step and a column's chunk of a table
TRIM_THRESHOLD = 64 << 20  # the most freed memory kept for the next step or chunk


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
    """Set glibc's thresholds for this process; whether they were set."""
    if not is_glibc() or set_by_environment():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    # mallopt answers 1 where it took the value
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
