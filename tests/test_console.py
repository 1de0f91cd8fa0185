"""The console (common/console.py): its width off a terminal, from $COLUMNS whatever it holds."""
import io
import runpy
import sys

import pytest

from builders import ROOT
from common.console import _width_off_terminal


@pytest.mark.parametrize("value,width", [("", 120), ("abc", 120), ("0", 120), ("-3", 120), ("97", 97)])
def test_odd_columns_variable_does_not_break_the_console(monkeypatch, value, width):
    monkeypatch.setenv("COLUMNS", value)
    assert _width_off_terminal() == width


def test_importing_the_console_with_an_empty_columns_variable(monkeypatch):
    """The module's own top level, run as an import runs it, off a terminal with an empty $COLUMNS."""
    monkeypatch.setenv("COLUMNS", "")
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # not a terminal: a log file, a job scheduler
    module = runpy.run_path(str(ROOT / "common" / "console.py"))
    assert module["console"].width == 120


def test_a_script_started_with_its_output_closed_prints_nothing_and_fails_nothing():
    """`infer.py ... >&-`: Python has no sys.stdout; the console writes nowhere instead of failing."""
    import os
    import subprocess
    import sys

    from builders import ROOT, script_env

    done = subprocess.run([sys.executable, "-c", "import sys; from common.console import console; "
                                                 "console.print('shown'); print(sys.stdout is None, file=sys.stderr)"],
                          cwd=ROOT, env=script_env(), stderr=subprocess.PIPE, text=True, timeout=30,
                          preexec_fn=lambda: os.close(1))
    assert (done.returncode, done.stderr) == (0, "True\n")


def test_a_quiet_thread_silences_itself_alone_and_gives_stdout_back_however_quiet_calls_end(monkeypatch):
    """Quiet fits in threads (scikit-learn's threading backend) redirected the one process-wide
    sys.stdout: other threads' output went too, and calls ending out of order left it on a buffer."""
    import threading

    from common.console import quiet_thread

    heard = io.StringIO()
    monkeypatch.setattr(sys, "stdout", heard)
    entered, leave_first, first_left = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:  # quiet, and ends after the main thread's quiet call began and before it ended
        with quiet_thread():
            print("first, quiet")
            entered.set()
            leave_first.wait(10)
        first_left.set()

    thread = threading.Thread(target=first)
    thread.start()
    entered.wait(10)
    print("main, heard while another thread is quiet")
    with quiet_thread():
        print("main, quiet")
        leave_first.set()
        first_left.wait(10)
        print("main, still quiet")
    thread.join()
    print("main, heard again")
    assert sys.stdout is heard and not sys.stdout.isatty()
    assert heard.getvalue() == "main, heard while another thread is quiet\nmain, heard again\n"
