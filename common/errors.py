"""User-facing errors: one line that names the problem and the fix, no traceback."""
from __future__ import annotations

import atexit
import contextlib
import errno
import gc
import io
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

# A process that leaves an error to another one to print waits this long before it exits: the
# torch launcher stops every process as soon as one has ended, which could otherwise cut the
# reporting process off before it has printed.
QUIET_EXIT_DELAY_S = 2.0


class UserError(Exception):
    """Bad input or a bad setting; the message says what is wrong and what to do."""

    prefix, exit_code = "error", 2
    says_what_was_written = False  # its message says it itself: run_cli adds no note of what was written


def warn_at_caller(message: str, category: type[Warning]) -> None:
    """A warning at the caller's line: the first outside this package (the API's own, or its
    scikit-learn estimators'), so that Python's once-per-line filter counts the caller's calls."""
    import inspect
    import warnings

    package, level = os.path.dirname(os.path.abspath(__file__)) + os.sep, 2
    frame = inspect.currentframe()
    frame = frame.f_back if frame is not None else None
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


class InputNote(UserWarning):
    """What reading rows noticed that the user should hear of (values the model has no level for,
    blanks where training had none), said by the Python API as a warning where infer.py prints a
    note: `warnings.simplefilter("ignore", InputNote)` silences them."""


class ProcessError(UserError):
    """A UserError that one process of a multi-process run may meet alone (its own files)."""


class Interrupted(UserError):
    """Ctrl-C: where the work stopped and how to go on, in one line; the shell's code for SIGINT."""

    prefix, exit_code = "stopped", 130


class Stopped(Interrupted):
    """A run stopped by a signal at a step boundary: where, and how to go on; exit 143 for SIGTERM."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class OutputLost(UserError):
    """Standard output failed while the run went on (GuardedOutput): what it printed stops
    short, though its files are whole; exit 1, as for any command whose output failed."""

    exit_code = 1


class OutOfMemory(ProcessError):
    """An allocation the machine refused (a setting or an input too large for it): one line, said
    by the process that met it, exit 1."""

    exit_code = 1


def out_of_memory(err: BaseException) -> OutOfMemory | None:
    """`err` as one line where it is a refused allocation: Python's and numpy's MemoryError, torch's
    OutOfMemoryError (a GPU's), and torch's CPU allocator's RuntimeError, known by its words alone."""
    torch_cpu = isinstance(err, RuntimeError) and "can't allocate memory" in str(err)
    if not (isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError" or torch_cpu):
        return None
    asked = re.search(r"tried to allocate (\d+) bytes", str(err))
    detail = f"{int(asked[1]) / 1e9:,.1f} GB asked for" if asked else (str(err).splitlines() or [""])[0].strip()
    return OutOfMemory(f"out of memory ({detail or type(err).__name__}): ask for less (fewer rows, narrower "
                       "layers, smaller batches), or run where there is more memory")


class HelpPrinted(SystemExit):
    """argparse's exit after --help (common/config.parse_config), told apart from other exits
    with code 0 (a relaunched group's), so that run_cli can say where the help was lost."""


class Terminated(BaseException):
    """SIGTERM outside a training loop, raised like KeyboardInterrupt so that every `finally` and
    context manager on the way out runs: staged files are removed, nothing earlier is replaced."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


def quiet_start(module: str) -> None:
    """A script's first call, `quiet_start(__name__)`, before it loads torch (seconds on a small
    machine): run as a script, a Ctrl-C meanwhile ends in one line instead of a traceback from
    inside an import. run_cli puts Python's own handler back; a SIGINT ignored by the shell (a
    background job) stays ignored; a process that imports the script keeps its own handler.

    Run as a script, Python's cyclic collector also waits until run_cli: torch and its company
    make ~170k objects that live as long as the process, and each full collection walked them
    all, 20-80 ms apiece, several while they load and one more inside a prediction (0.13 s of
    infer.py's 1.5 s start-up, and 80 ms of a million-row prediction's 0.35 s)."""
    global _collector_paused, _script_process
    if module != "__main__":
        return
    _script_process = True
    for stream in (sys.stdout, sys.stderr):
        # A character the stream's encoding lacks (an importance bar's █ under PYTHONIOENCODING=ascii)
        # is a ?, not an error that loses a finished run.
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="replace")
    if sys.stdout is not None:  # None: started with it closed (`>&-`); console.py writes nowhere then
        sys.stdout = GuardedOutput(sys.stdout)
    if gc.isenabled():
        gc.disable()
        _collector_paused = True
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _stopped_while_starting)
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _stopped_while_starting)


_collector_paused = False
_script_process = False  # quiet_start was called by a script run as such: the process is the script's
_written: list[str] = []  # what the run has finished writing (written): a signal after it says so
_lost_output: list[OSError] = []  # standard output's first failure (GuardedOutput); run_cli says so at the end
_stop_noted = False  # a stop signal came while the script was already stopping (run_cli)


def collect_from_here() -> None:
    """The collector back on, past what the script loaded: frozen (never walked again; the
    little garbage the imports left is kept), so a collection walks only the run's own objects."""
    global _collector_paused
    if _collector_paused:
        gc.freeze()
        gc.enable()
        _collector_paused = False


def stopped_while_starting(signum: int) -> str:
    """The line of a script stopped by `signum` before it did anything."""
    return f"{Interrupted.prefix}: interrupted by {'Ctrl-C' if signum == signal.SIGINT else 'SIGTERM'} while " \
           "starting; nothing was written"


def _stopped_while_starting(signum: int, frame: object) -> None:
    # Under a launcher every worker gets the Ctrl-C; no Accelerator exists yet to pick the one
    # that reports, so the first of each machine does (LOCAL_RANK, set by torch's launcher).
    code = Interrupted.exit_code if signum == signal.SIGINT else 143
    if os.environ.get("LOCAL_RANK", "0") == "0":
        print(stopped_while_starting(signum), file=sys.stderr, flush=True)
    # At once: nothing is written yet, and an exception raised here, inside an import, was
    # swallowed by importlib (the run went on) or aborted torch's extension loading.
    os._exit(code)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait for the block to end (files swapped in one by one, which a stop
    midway would leave mixed): noted while it runs, then handed to the handlers from before. Off
    the main thread, where no handler can be set, the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, frame: noted.append(signum))
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for held in dict.fromkeys(noted):
            signal.raise_signal(held)


def forget_written() -> None:
    """A new run of a script's work in this process: nothing of it is written yet."""
    _written.clear()


def written(what: str) -> None:
    """`what` (a file, in words) is written whole and in place: a Ctrl-C or SIGTERM from here on
    says so, instead of that the files written before were left as they were."""
    _written.append(what)


class GuardedOutput:
    """A script's standard output (quiet_start puts it in place of sys.stdout). What a script
    prints reports work whose results are files, so a reader that went away (`| head`) or a full
    disk under `> log` must neither stop a run nor end it in a traceback: rich's own answer to a
    closed pipe is a silent exit 1, mid-training, and print's is an OSError. The first failure is
    kept, nothing more is written, and run_cli says so once the work is done."""

    def __init__(self, stream: Any):
        self._stream = stream

    def write(self, text: str) -> int:
        self._guarded("write", text)
        return len(text)

    def flush(self) -> None:
        self._guarded("flush")

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...: the stream's own
        return getattr(self._stream, name)

    def _guarded(self, method: str, *args: str) -> None:
        if _lost_output:
            return
        try:
            getattr(self._stream, method)(*args)
        except OSError as err:
            _lost_output.append(err)
            # What the stream still buffers would fail again as the interpreter ends. The failing
            # descriptor is kept till then: a group this process starts (common/train/relaunch.py)
            # inherits it, and meets and reports the same failure.
            atexit.register(self._silenced)

    def _silenced(self) -> None:
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)


def _lost_output_error(after: str = "what the run printed stops short, but the run finished and its files are "
                                      "whole") -> OutputLost | None:
    """A reader that went away (`| head`) asked for no more, as a closed pipe ends any Unix
    filter: no error. A full disk or a failing device under `> log` lost output the user wanted."""
    if not _lost_output or _lost_output[0].errno == errno.EPIPE:
        return None
    reason = _lost_output[0].strerror or type(_lost_output[0]).__name__
    return OutputLost(f"standard output failed ({reason}): {after}; make room, or send the output elsewhere")


def unwritten_note() -> str:
    """What a stop leaves: the outputs written whole (`written`) before it, and that the rest
    were left as they were."""
    if not _written:
        return "files written before were left as they were"
    return f"{', '.join(_written)} had been written before it; other files were left as they were"


def written_note(err: UserError) -> str:
    """What an error after some output was written adds to its line: that output stands (a failed
    --metrics-json after infer.py's predictions, a tracker's failure after train.py's model; a
    stop says it in its own words, and so do errors marked `says_what_was_written`)."""
    if isinstance(err, Interrupted) or err.says_what_was_written or not _written:
        return ""
    return f" ({', '.join(_written)} had been written)"


def _error_in_flight(err: BaseException) -> UserError | None:
    """The UserError a second signal cut short, if any: a Ctrl-C that lands while a Stopped is
    unwinding must not replace the line that names the checkpoint with a vaguer one."""
    seen = err.__context__
    while seen is not None and not isinstance(seen, UserError):
        seen = seen.__context__
    return seen


def _note_stop(signum: int, frame: object) -> None:
    global _stop_noted
    _stop_noted = True


def _hold_stops() -> None:
    """From here a script process has only its line left to say. A further signal (torch's
    launcher follows its SIGINT with a SIGTERM milliseconds later) is noted, not raised, lest it
    cut that line into a traceback; a process that leaves the line to another ends at once on it."""
    if _script_process:
        signal.signal(signal.SIGINT, _note_stop)
        signal.signal(signal.SIGTERM, _note_stop)


def _deaf() -> None:
    """Said and decided: a signal now could only cut the interpreter's shutdown short, into a
    traceback from an exit handler or an exit code saying the run failed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def run_cli(main: Callable[[], object], reports: Callable[[UserError], bool] = lambda err: True,
            allocator: Callable[[], bool] | None = None) -> None:
    """Run a script's `main`, turning a UserError into one line on stderr and exit code 2.

    In a multi-process run every process meets the same error; `reports` says whether this
    one prints it, so the user reads it once. The others exit with the same code, quietly.
    Ctrl-C and SIGTERM (what schedulers send first) end in one line too, with the shell's codes
    130 and 143, after the writes under way have been undone. The process is the script's, so
    its C allocator is set first: for torch's steps, or as `allocator` says (common/allocator.py)."""
    from common.allocator import keep_step_memory

    (allocator or keep_step_memory)()
    collect_from_here()
    if signal.getsignal(signal.SIGINT) is _stopped_while_starting:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    if previous is _stopped_while_starting:
        previous = signal.SIG_DFL
    global _stop_noted
    finished, _stop_noted = False, False
    forget_written()  # a process that runs more than one script's main (tests) starts each afresh
    _lost_output.clear()
    try:
        try:
            main()
            if _script_process:  # the work is done and in place
                _deaf()
                finished = True
            lost = _lost_output_error()
            if lost is not None:
                raise lost
        except HelpPrinted:  # what --help printed is all it does
            lost = _lost_output_error("the help stops short")
            if lost is None:
                raise
            raise lost from None
        except (MemoryError, RuntimeError) as err:
            refused = out_of_memory(err)
            if refused is None:
                raise
            raise refused from None
        except OSError as err:
            if err.errno != errno.ENAMETOOLONG:  # a path given: whichever call met it first, the user's to fix
                raise
            raise UserError(f"{err.filename}: a name in this path is longer than the file system allows "
                            f"({os.strerror(err.errno)}): choose a shorter one") from None
        except KeyboardInterrupt as err:
            _hold_stops()
            raise _error_in_flight(err) or Interrupted(f"interrupted by Ctrl-C; {unwritten_note()}") from None
        except Terminated as err:
            _hold_stops()
            raise _error_in_flight(err) or Stopped(f"SIGTERM received; {unwritten_note()}", 143) from None
    except UserError as err:
        _hold_stops()
        if reports(err):
            # A further Ctrl-C while the line is written would cut it off and print a traceback.
            interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)
            with contextlib.suppress(OSError):  # stderr failing too: the exit code is all that is left
                print(f"{err.prefix}: {err}{written_note(err)}", file=sys.stderr, flush=True)
            signal.signal(signal.SIGINT, interrupt)
        else:
            # The launcher stops the quiet ones once the reporter has ended (SIGTERM); one that
            # came while this process was stopping already said so.
            with contextlib.suppress(Terminated):
                signal.signal(signal.SIGTERM, _raise_terminated)
                if not _stop_noted:
                    time.sleep(QUIET_EXIT_DELAY_S)
        if _script_process:
            _deaf()
            finished = True
        sys.exit(err.exit_code)
    finally:
        if not finished:
            signal.signal(signal.SIGTERM, previous)
