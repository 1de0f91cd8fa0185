"""run_cli (common/errors.py): what reaches the user as one line, and what keeps its traceback."""
import errno
import io
import sys

import numpy as np
import pytest
import torch

from common.errors import GuardedOutput, run_cli


@pytest.mark.parametrize("error, line", [
    (lambda: np.empty((10**13, 10)), "out of memory (Unable to allocate 728. TiB for an array with shape"),
    # Past any address space (128 TiB): refused whatever the machine's overcommit policy.
    (lambda: torch.empty(10**14, dtype=torch.float64), "out of memory (800,000.0 GB asked for): ask for less"),
])
def test_an_allocation_the_machine_refuses_is_one_line(error, line, capsys):
    """numpy's MemoryError, torch's CPU allocator's RuntimeError (a table read whole that is larger than memory)."""
    with pytest.raises(SystemExit) as info:
        run_cli(error)
    assert info.value.code == 1
    (said,) = capsys.readouterr().err.strip().splitlines()
    assert said.startswith(f"error: {line}"), said


def test_another_runtime_error_keeps_its_traceback():
    with pytest.raises(RuntimeError, match="a bug"):
        run_cli(lambda: (_ for _ in ()).throw(RuntimeError("a bug")))


def test_a_name_too_long_for_the_file_system_is_one_line_whichever_call_met_it(tmp_path, capsys):
    """A path component over 255 bytes (a --ckpt-dir, --out-dir or --output): each script ended in
    the OSError of whichever call met it first."""
    import make_data

    long = tmp_path / ("a" * 300)
    with pytest.raises(SystemExit) as info:
        run_cli(lambda: make_data.main(["--n-samples", "100", "--out-dir", str(long)]))
    assert info.value.code == 2
    (said,) = capsys.readouterr().err.strip().splitlines()
    assert said.startswith(f"error: {long}") and said.endswith(
        "a name in this path is longer than the file system allows (File name too long): choose a shorter one")
    with pytest.raises(OSError, match="Permission"):  # any other OSError is not taken for the user's
        run_cli(lambda: (_ for _ in ()).throw(PermissionError(errno.EACCES, "Permission denied")))


class _FullDisk:
    def write(self, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    def flush(self):
        pass

    def fileno(self):  # nothing for GuardedOutput to silence as the interpreter ends
        raise io.UnsupportedOperation("fileno")


@pytest.mark.parametrize("argv, code, said", [
    (["--help"], 1, "error: standard output failed (No space left on device): the help stops short; make room, "
                    "or send the output elsewhere"),
    (["--epochs", "x"], 2, None),  # argparse's own usage error: its line on stderr is the one that counts
    ([], 0, ""),  # another exit with 0 (a relaunched group's): its output was the run's, not the help's
])
def test_help_printed_to_a_full_disk_is_said_as_such(argv, code, said, capsys, monkeypatch):
    """`train.py --help > /dev/full`: argparse prints, then exits 0 as if all was read."""
    from common.config import TrainConfig, parse_config

    monkeypatch.setattr(sys, "stdout", GuardedOutput(_FullDisk()))

    def main():
        parse_config(TrainConfig, argv)
        sys.exit(0)

    with pytest.raises(SystemExit) as info:
        run_cli(main)
    assert info.value.code == code
    err = capsys.readouterr().err.strip()
    assert err == said if said is not None else "invalid int value" in err


def test_a_script_that_said_its_error_ignores_further_signals_while_it_shuts_down(monkeypatch, capsys):
    """A second Ctrl-C as the interpreter ran its exit handlers (torch's) printed a traceback
    after the one line."""
    import signal

    from common import errors

    monkeypatch.setattr(errors, "_script_process", True)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(SystemExit) as info:
            run_cli(lambda: (_ for _ in ()).throw(KeyboardInterrupt()))
        assert info.value.code == 130
        assert {s: signal.getsignal(s) for s in handlers} == {s: signal.SIG_IGN for s in handlers}
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
    assert capsys.readouterr().err.startswith("stopped: interrupted by Ctrl-C")


def test_a_second_signal_while_a_stopped_script_says_so_is_ignored(monkeypatch, capsys):
    """torch's launcher sends SIGINT, then SIGTERM milliseconds later: the SIGTERM landed while
    the Ctrl-C's line was being made and printed a traceback of Terminated instead."""
    import os
    import signal

    from common import errors

    monkeypatch.setattr(errors, "_script_process", True)
    def note_as_the_sigterm_lands():
        os.kill(os.getpid(), signal.SIGTERM)
        return "nothing was written"

    monkeypatch.setattr(errors, "unwritten_note", note_as_the_sigterm_lands)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(SystemExit) as info:
            run_cli(lambda: (_ for _ in ()).throw(KeyboardInterrupt()))
        assert info.value.code == 130
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
    assert capsys.readouterr().err == "stopped: interrupted by Ctrl-C; nothing was written\n"


@pytest.mark.parametrize("reporter", [True, False])
def test_a_stop_signal_while_a_stopped_run_decides_who_says_it_is_held(monkeypatch, capsys, reporter):
    """A run stopped at a step boundary raises Stopped from main; the launcher's SIGTERM landing
    while the process asked whether it reports raised Terminated there: a traceback, exit 1. A
    process that leaves the line to another ends at once on it, without its wait."""
    import os
    import signal

    from common import errors
    from common.errors import Stopped

    monkeypatch.setattr(errors, "_script_process", True)
    slept = []
    monkeypatch.setattr(errors.time, "sleep", slept.append)

    def asked(err):
        os.kill(os.getpid(), signal.SIGTERM)
        return reporter

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(SystemExit) as info:
            run_cli(lambda: (_ for _ in ()).throw(Stopped("SIGTERM in epoch 2: go on with --resume", 143)), asked)
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
    assert info.value.code == 143 and slept == []
    said = capsys.readouterr().err
    assert said == ("stopped: SIGTERM in epoch 2: go on with --resume\n" if reporter else "")
