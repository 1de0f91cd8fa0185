"""The scripts' C allocator: a step's freed blocks are kept for the next step, not faulted in again."""
from __future__ import annotations

import ctypes
import platform
import subprocess
import sys

import pytest

from builders import ROOT
from common import allocator

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"  # found another way

# What a step does to memory, in a fresh process (the thresholds glibc adapts by itself depend on
# what a process has freed before): a few blocks of a few MB written, then all freed, 20 times;
# the minor page faults of the last 17 rounds, against one round's pages.
STEPS = """
import resource, sys
import numpy as np
from common.allocator import keep_step_memory
tuned = keep_step_memory() if sys.argv[1] == "tuned" else False
def rounds(n):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        blocks = [np.ones(3 << 18, dtype=np.float32) for _ in range(3)]  # 3 x 3 MB
        del blocks
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
rounds(3)
print(tuned, rounds(17), 3 * (3 << 20) // resource.getpagesize())
"""


def faults(kind: str, env: dict[str, str] | None = None) -> tuple[bool, int, int]:
    done = subprocess.run([sys.executable, "-c", STEPS, kind], cwd=ROOT, capture_output=True, text=True, check=True,
                          env=env)
    tuned, count, pages = done.stdout.split()
    return tuned == "True", int(count), int(pages)


@pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc's")
def test_a_steps_freed_blocks_are_reused_without_faulting():
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    tuned, count, pages = faults("tuned", env)
    assert tuned and count < pages  # not one round's pages in 17 rounds
    plain, count, pages = faults("plain", env)
    assert not plain and count > 5 * pages  # glibc's own thresholds: the pages again, round after round


@pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc's")
@pytest.mark.parametrize("name, value", [("MALLOC_TRIM_THRESHOLD_", "131072"),
                                         ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=131072")])
def test_a_setting_the_environment_gives_is_left_as_given(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    monkeypatch.setattr(ctypes, "CDLL", lambda *args: pytest.fail("mallopt called"))
    assert not allocator.keep_step_memory()


def test_the_c_library_is_told_apart_as_the_platform_module_tells_it():
    assert allocator.is_glibc() == GLIBC
