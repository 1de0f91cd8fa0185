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
# `kind` "tuned" and "chunks" set the step's and make_data.py's thresholds; the blocks are of
# `mb` MB (3: a large step's; 8: a column's chunk of a table).
STEPS = """
import resource, sys
import numpy as np
from common.allocator import keep_chunk_memory, keep_step_memory
kind, mb = sys.argv[1], int(sys.argv[2])
tuned = {"tuned": keep_step_memory, "chunks": keep_chunk_memory}.get(kind, lambda: False)()
def rounds(n):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        blocks = [np.ones(mb << 18, dtype=np.float32) for _ in range(3)]  # 3 blocks of mb MB
        del blocks
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
rounds(3)
print(tuned, rounds(17), 3 * (mb << 20) // resource.getpagesize())
"""


def faults(kind: str, env: dict[str, str] | None = None, mb: int = 3) -> tuple[bool, int, int]:
    done = subprocess.run([sys.executable, "-c", STEPS, kind, str(mb)], cwd=ROOT, capture_output=True, text=True,
                          check=True, env=env)
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
def test_make_datas_process_keeps_a_tables_chunks_and_a_steps_process_does_not():
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    tuned, count, pages = faults("chunks", env, mb=8)
    assert tuned and count < pages
    tuned, count, pages = faults("tuned", env, mb=8)
    assert tuned and count > 2 * pages  # above the step's threshold they are mapped afresh, round after round


@pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc's")
@pytest.mark.parametrize("name, value", [("MALLOC_TRIM_THRESHOLD_", "131072"),
                                         ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=131072")])
def test_a_setting_the_environment_gives_is_left_as_given(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    monkeypatch.setattr(ctypes, "CDLL", lambda *args: pytest.fail("mallopt called"))
    assert not allocator.keep_step_memory()


def test_the_c_library_is_told_apart_as_the_platform_module_tells_it():
    assert allocator.is_glibc() == GLIBC
