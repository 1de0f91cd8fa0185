"""Starting the processes that `accelerate launch --num_processes N` asked for and did not start.

Without GPUs, Accelerate's simple launcher runs the script once, whatever N (see launch_check).
Doing what was asked beats refusing: where no GPU is present, train.py then starts the N-process
group itself, exactly as `accelerate launch --config_file accelerate_configs/multi_cpu.yaml
--num_processes N --main_process_port 0 train.py ...` does, waits for it, and exits with its code.
This first process only waits: it passes SIGINT and SIGTERM on to the group, and stops the group
when its own launcher is gone (a signal sent to Accelerate's launcher alone ends that launcher,
not us). The group's launcher runs in a process group of its own, so that Ctrl-C in a terminal
reaches it once, through us; on Linux it also gets SIGTERM should we die without a word (kill -9).
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from common.config import asks_for_help
from common.errors import stopped_while_starting
from common.train.launch_check import gpu_count, requested_processes, surely_no_gpu

STARTED_HERE = "TABULAR_GROUP_STARTED_HERE"  # set in the group's environment: it never starts another one
MULTI_CPU_CONFIG = Path(__file__).resolve().parents[2] / "accelerate_configs" / "multi_cpu.yaml"
LAUNCHER_CHECK_S = 0.5
FORWARDED = (signal.SIGINT, signal.SIGTERM)


def processes_to_start(launcher_argv: Sequence[str], gpus: int) -> int | None:
    """N where the launcher asked for N > 1 processes, started this one alone, and the machine has
    no GPU; None elsewhere (a GPU machine keeps the one-line refusal: DDP takes one GPU a process)."""
    if "WORLD_SIZE" in os.environ or os.environ.get(STARTED_HERE) or gpus > 0:
        return None
    requested = requested_processes(launcher_argv)
    return requested if requested is not None and requested > 1 else None


# The group's launcher, run as `python -m accelerate.commands.launch` would run it, with one
# difference: Ctrl-C or SIGTERM while it is still importing (a second or two, before it has started
# any process) ends it at once with the line train.py says then, not in a KeyboardInterrupt
# traceback from inside torch (nor, at a second signal, in one from an exit handler). Once it
# starts the processes, torch's launcher puts its own handlers in place, which stop the group.
QUIET_LAUNCHER = (
    "import os, runpy, signal\n"
    f"LINES = {{{signal.SIGINT.value}: {stopped_while_starting(signal.SIGINT)!r}, "
    f"{signal.SIGTERM.value}: {stopped_while_starting(signal.SIGTERM)!r}}}\n"
    "def stop(signum, frame):\n"
    "    try:\n"
    "        os.write(2, (LINES[signum] + '\\n').encode())\n"
    "    finally:\n"  # a closed stderr (`2>&-`, a pipe whose reader left) must not keep it running
    "        os._exit(128 + signum)\n"
    "signal.signal(signal.SIGINT, stop)\n"
    "signal.signal(signal.SIGTERM, stop)\n"
    "runpy.run_module('accelerate.commands.launch', run_name='__main__', alter_sys=True)\n"
)


def group_command(processes: int, script_argv: Sequence[str], mixed_precision: str | None = None) -> list[str]:
    """The multi_cpu.yaml launch of the same script and arguments; the outer launcher's mixed
    precision (which its simple launcher passed on in the environment) is kept."""
    precision = ["--mixed_precision", mixed_precision] if mixed_precision else []
    return [sys.executable, "-c", QUIET_LAUNCHER, "--config_file", str(MULTI_CPU_CONFIG),
            "--num_processes", str(processes), "--main_process_port", "0", *precision, *script_argv]


def _own_group_dying_with_us() -> Callable[[], None]:
    """What the group's launcher runs before it starts: a process group of its own, and (Linux)
    SIGTERM when this process dies."""
    prctl = None
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):  # no libc to ask: a kill -9 of this process leaves the group running
            prctl = None

    def setup() -> None:
        os.setpgrp()
        if prctl is not None:
            prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return setup


def run_group(command: Sequence[str], env: dict[str, str]) -> int:
    """Run the group's launcher to its end; its exit code, a signal's as the shell reports it (128 + n)."""
    launcher_pid = os.getppid()
    child = subprocess.Popen(list(command), env=env, preexec_fn=_own_group_dying_with_us())
    forwarded = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal forwarded
        forwarded = True
        with contextlib.suppress(ProcessLookupError):  # the group has ended already
            os.killpg(child.pid, signum)

    previous = {signum: signal.signal(signum, forward) for signum in FORWARDED
                if signal.getsignal(signum) is not signal.SIG_IGN}  # ignored here, and in the group
    try:
        while True:
            try:
                code = child.wait(timeout=LAUNCHER_CHECK_S)
                break
            except subprocess.TimeoutExpired:
                if not forwarded and os.getppid() != launcher_pid:  # our launcher is gone: so is the run
                    forward(signal.SIGTERM, None)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return code if code >= 0 else 128 - code


def relaunch_before_loading(module: str) -> None:
    """train.py's second call, before it loads torch: where the machine surely has no GPU, a
    process that must start the group (start_missing_processes) does so at once. It only waits
    for the group, so the seconds of loading torch, Accelerate and the rest would be spent for
    nothing. Elsewhere the question waits for torch, in start_processes."""
    if module == "__main__" and surely_no_gpu() and not asks_for_help(sys.argv[1:]):
        from common.train.launch_check import launcher_command_line

        start_missing_processes(launcher_command_line())


def start_missing_processes(launcher_argv: Sequence[str]) -> None:
    """Where Accelerate's simple launcher (`launcher_argv`) ran this script alone although N > 1
    processes were asked for, on a machine without GPUs: run the N-process group and exit with its
    code. Else return."""
    if "WORLD_SIZE" in os.environ or os.environ.get(STARTED_HERE):  # a process of a group: nothing to check
        return
    processes = processes_to_start(launcher_argv, gpu_count())
    if processes is None:
        return
    command = group_command(processes, sys.argv, os.environ.get("ACCELERATE_MIXED_PRECISION"))
    print(f"Accelerate's launcher started 1 of the {processes} processes asked for (it needs GPUs for more); "
          f"starting the {processes} here, as `accelerate launch --config_file accelerate_configs/multi_cpu.yaml "
          f"--num_processes {processes}` does", flush=True)
    sys.exit(run_group(command, {**os.environ, STARTED_HERE: "1"}))
