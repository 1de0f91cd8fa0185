"""The C allocator of a script's process, set once at its start (common/errors.run_cli).

torch allocates each step's activations and gradients afresh: a 5-member ensemble's step on a
small table asks for a few dozen blocks of 0.1-1 MB. glibc serves blocks from 128 KB up with
fresh pages, from mmap or from a heap it gives back to the system as soon as its top has
128 KB free, so every step faulted its pages in again: 250-700 minor page faults a step, about
a fifth of the step's time, and the elementwise passes over those blocks (ReLU and its
backward) ran several times slower inside a step than alone. With blocks up to MMAP_THRESHOLD
served from the heap and up to TRIM_THRESHOLD of its free top kept, a step faults about once
and its time no longer varies with them. Larger blocks (a chunk of a big table) are still
mapped and unmapped as before, so memory stays flat in rows.

Only the scripts' own processes are tuned: a Python caller's process keeps its allocator as it
was. A setting the environment already gives (glibc's MALLOC_MMAP_THRESHOLD_ and
MALLOC_TRIM_THRESHOLD_) is left as given. Elsewhere than glibc nothing changes.
"""
from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 4 << 20   # above any block of a small model's step, below a table's chunk
TRIM_THRESHOLD = 32 << 20  # the most freed memory kept for the next step
ENVIRONMENT = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def keep_step_memory() -> bool:
    """Set glibc's thresholds for this process; whether they were set."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if any(name in os.environ for name in ENVIRONMENT):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    # mallopt answers 1 where it took the value; the mmap threshold first, as setting the trim
    # threshold alone would fix the mmap threshold at its 128 KB start.
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
