"""Everything that touches file formats: JSON, npy/npz and safetensors, written atomically.

A write goes to a temporary file (or folder) in the same folder and is renamed over the
target, so a crash mid-write leaves the previous good file in place, never half a file.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import hashlib
import json
import math
import os
import re
import shutil
import socket
import stat
import tempfile
import time
import tokenize
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

from common.errors import UserError


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success, fsync and rename it over `target`.
    Any failure to write (a full disk, a read-only folder, a file where a folder should be)
    is one line, and `target` keeps what it held."""
    final = Path(target)
    if is_a_stream(final):  # a device or a pipe (/dev/null, /dev/stdout): a file renamed over it would replace it
        try:
            yield final
        except OSError as err:
            raise write_error(final, err) from None
        return
    if final.is_symlink():  # the file it points to is replaced; the link stays
        final = Path(os.path.realpath(final))
    tmp: Path | None = None
    try:
        make_folder(final.parent)
        tmp = _staged(final)
        yield tmp
        _seal(tmp)
        os.replace(tmp, final)
    except OSError as err:
        raise write_error(final, err) from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def is_a_stream(path: Path) -> bool:
    """A character or block device, a pipe or a socket (through any links): written in place."""
    try:
        mode = os.stat(path).st_mode
    except OSError:  # not there yet, or not to be looked at: a file to write
        return False
    return stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def write_together(writers: dict[Path, Callable[[Path], object]]) -> None:
    """Write each file beside its target, then rename them all into place: a failure while
    writing (a full disk) leaves every target as it was, and a reader never finds one file of a
    new set beside the others of an old one (short of a crash between the renames themselves)."""
    staged: dict[Path, Path] = {}
    target = next(iter(writers))
    # A rename onto a folder fails: found before the first rename, not after some had replaced
    # their files (a model's weights replaced, its config.json kept, the run said to have failed).
    folder = next((t for t in writers if t.is_dir() and not t.is_symlink()), None)
    if folder is not None:
        raise write_error(folder, IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)))
    try:
        for target, write in writers.items():
            staged[target] = _staged(target)
            write(staged[target])
            _seal(staged[target])
        for target, tmp in staged.items():
            os.replace(tmp, target)
    except OSError as err:
        raise write_error(target, err) from None
    finally:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)


@contextmanager
def exclusive_lock(lock_file: Path) -> Iterator[str | None]:
    """Hold an advisory lock on `lock_file` while the context lasts; yields None, or who holds it
    ("pid N on HOST") where another process does. The kernel drops the lock when its process
    ends, however it ends, so a killed writer never leaves it held."""
    with _lock_file(lock_file) as fh:
        try:
            _lock_now_or_soon(fh)
        except OSError:
            yield _holder(fh)
            return
        # Who holds it, for a second run's message; written past Python's buffer, so that a full
        # disk leaves it unsaid here and not a failed flush when the file closes.
        with contextlib.suppress(OSError):
            os.ftruncate(fh.fileno(), 0)
            os.write(fh.fileno(), f"pid {os.getpid()} on {socket.gethostname()}".encode())
        try:
            yield None
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _lock_file(lock_file: Path) -> Any:
    """The lock file, opened to read and append (made where absent). A link is not followed (a
    run's lock, as root, would truncate whatever file it names), nor a folder taken for it."""
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as err:
        if isinstance(err, IsADirectoryError) or err.errno == errno.ELOOP:
            kind = "a folder" if isinstance(err, IsADirectoryError) else "a link"
            raise UserError(f"{lock_file} is {kind}, not the lock file a run keeps there: remove it") from None
        raise write_error(lock_file, err) from None
    return os.fdopen(fd, "a+")


LOCK_TRIES = 6  # a reader's lock_holder holds a lock for a moment to look: asked again, 10-160 ms apart


def _lock_now_or_soon(fh: Any) -> None:
    """The lock, or OSError where another process holds it for longer than readers looking at it
    do (a writer holds it for its whole run): asked LOCK_TRIES times, about 0.3 s in all."""
    for attempt in range(LOCK_TRIES):
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError:
            if attempt == LOCK_TRIES - 1:
                raise
            time.sleep(0.01 * 2**attempt)


def lock_holder(lock_file: Path) -> str | None:
    """Who holds the advisory lock of exclusive_lock on `lock_file` ("pid N on HOST"), or None
    where nobody does or there is no such file; the lock is never taken, the file never made."""
    try:
        with open(lock_file) as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return _holder(fh)
            fcntl.flock(fh, fcntl.LOCK_UN)
    except OSError:  # no such file: no run ever held it
        pass
    return None


def _holder(fh: Any) -> str:
    """What the process holding the lock wrote in its file ("pid N on HOST"); it may not have yet."""
    fh.seek(0)
    return fh.read().strip() or "a live process"


def folder_lock_file(final: Path) -> Path:
    """The lock of a folder that atomic_folder writes: beside it, since the folder itself is swapped."""
    return final.parent / f".{final.name}.lock"


@contextmanager
def atomic_folder(target: str | os.PathLike, owned: Callable[[str], bool]) -> Iterator[Path]:
    """Yield an empty hidden folder beside `target`; on success, swap it in for `target` (two
    renames). A failure while filling it (a full disk) leaves `target` as it was; so does a kill,
    whose leftovers the next write of the same target, or the next reader, puts right. One
    writer at a time: a second one stops in one line. `owned(name)` tells the files such a folder
    holds: a folder holding anything else is never replaced."""
    final = Path(target)
    with contextlib.ExitStack() as stack:
        try:
            make_folder(final.parent)
            holder = stack.enter_context(exclusive_lock(folder_lock_file(final)))
        except OSError as err:
            raise write_error(final, err) from None
        if holder:
            raise UserError(f"another process is writing {final} ({holder}): wait for it to end, or choose another "
                            "--out-dir")
        with _swapped_in(final, owned) as stage:
            yield stage


@contextmanager
def _swapped_in(final: Path, owned: Callable[[str], bool]) -> Iterator[Path]:
    stage: Path | None = None
    try:
        restore_or_clear_leftovers(final)
        if final.exists() and not final.is_dir():
            raise UserError(f"{final} exists and is a file, not a data set folder: move it away or choose another "
                            "--out-dir")
        foreign = sorted(p.name for p in final.iterdir() if not owned(p.name)) if final.exists() else []
        if foreign:  # named: a run's folder or a user's file among the arrays is what to move
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise UserError(f"{final} exists and is not a data set folder (it holds {shown}): move it away or "
                            "choose another --out-dir")
        stage = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.stage-", suffix=".part"))
        yield stage
        for item in stage.iterdir():
            _seal(item)
        os.chmod(stage, 0o755)
        previous = final.parent / f".{final.name}.{os.getpid()}.old.part"
        if final.exists():
            os.replace(final, previous)
        os.replace(stage, final)
        shutil.rmtree(previous, ignore_errors=True)
    except OSError as err:
        raise write_error(final, err) from None
    except WriteFailed as err:  # a file of the stage, whose hidden name tells the user nothing: said of `final`
        if err.errno is None:
            raise
        raise write_error(final, OSError(err.errno, os.strerror(err.errno))) from None
    finally:
        if stage is not None and stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def repair_interrupted_swap(target: str | os.PathLike) -> None:
    """For a reader of a folder that atomic_folder writes: where a writer was killed between its
    two renames, the earlier folder goes back into place, unless a writer is at work right now
    (it completes the swap itself) or the reader may not write there (nothing to do then)."""
    final = Path(target)
    if final.exists() or not any(_leftovers(final, _EARLIER)):
        return
    try:
        with exclusive_lock(folder_lock_file(final)) as holder:
            if holder is None:
                restore_or_clear_leftovers(final)
    except OSError:
        pass


def restore_or_clear_leftovers(final: Path) -> None:
    """After a kill between the two renames of atomic_folder, the earlier folder is the `.old.part`
    one: it goes back into place. Every other leftover (a half-filled stage) is removed."""
    for old in sorted(_leftovers(final, _EARLIER)):
        if not final.exists():
            os.replace(old, final)
        else:
            shutil.rmtree(old, ignore_errors=True)
    for stage in _leftovers(final, _STAGE):
        shutil.rmtree(stage, ignore_errors=True)


# What follows `.<name>` in the hidden folders atomic_folder leaves beside <name>: the earlier
# folder moved aside by process N, and a stage (`.stage-` and mkdtemp's random letters; the
# stages of earlier versions had mkdtemp's eight letters alone). Matched whole, so that the
# leftovers of `sales.v2` are never taken for those of `sales`.
_EARLIER = re.compile(r"\.\d+\.old\.part")
_STAGE = re.compile(r"\.(stage-[a-z0-9_]+|[a-z0-9_]{8})\.part")


def _leftovers(final: Path, rest: re.Pattern[str]) -> list[Path]:
    prefix = f".{final.name}"
    return [p for p in final.parent.glob(f"{glob.escape(prefix)}.*.part") if rest.fullmatch(p.name[len(prefix):])]


def _staged(target: Path) -> Path:
    """An empty hidden file beside `target` (same filesystem, so the final rename is atomic),
    named with this process's id. Staged files of processes that are gone (a kill, a
    scheduler's SIGKILL: gigabytes at scale) are removed first."""
    clear_dead_leftovers(target)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    return Path(name)


def clear_dead_leftovers(target: Path) -> None:
    """Remove `target`'s staged files whose writer no longer runs on this machine. A live
    writer's are left alone, also another process's writing the same file now."""
    for leftover in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        pid = leftover.name[len(target.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            leftover.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    """Whether process `pid` of this machine runs: one that ended but is not yet collected by its
    parent (a zombie) does not."""
    try:
        return not re.search(r"^State:\s+[ZX]", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE)
    except FileNotFoundError:
        return False
    except OSError:  # no /proc here: ask the process table
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _seal(tmp: Path) -> None:
    """On disk before it is renamed into place, and readable by others (mkstemp makes 0600; a
    model folder is meant to be shared)."""
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o644)


class WriteFailed(UserError):
    """A write that failed, in one line; `errno` says why, for a caller that words it its own way."""

    def __init__(self, message: str, code: int | None):
        super().__init__(message)
        self.errno = code


def write_error(path: Path, err: BaseException) -> WriteFailed:
    reason, fix = write_problem(err, path.parent)
    kept = f"; {path.name} keeps what it held before" if path.exists() else ""  # a new file: nothing to keep
    return WriteFailed(f"cannot write {path} ({reason}): {fix}{kept}", failure_errno(err, path.parent))


NO_ROOM = (errno.ENOSPC, errno.EDQUOT)
NOT_ALLOWED = (errno.EACCES, errno.EPERM, errno.EROFS)


def write_problem(err: BaseException, folder: Path) -> tuple[str, str]:
    """What stopped a write, and what to do, in the user's words whichever library wrote: torch's
    serializer reports a full disk as "[enforce fail at inline_container.cc:672] unexpected pos",
    safetensors a file-size limit as "I/O error: File too large (os error 27)". Where the error
    carries no errno, the machine is asked: a file-size limit in force, or a full disk."""
    code = failure_errno(err, folder)
    if code == errno.EFBIG:
        limit = _file_size_limit()
        return (os.strerror(code) + (f": the file-size limit (ulimit -f) is {limit:,} bytes" if limit else ""),
                "raise the limit (ulimit -f unlimited) or write to another folder")
    if code in NO_ROOM:
        return os.strerror(code), "free some space or choose another folder"
    if code in NOT_ALLOWED:
        return os.strerror(code), "choose a folder you can write in"
    if code == errno.EISDIR:
        return "a folder stands where the file goes", "move that folder away"
    if code in (errno.EEXIST, errno.ENOTDIR):  # a folder to make, or to write in, that is a file
        return "a file stands where a folder goes", "move that file away"
    if code == errno.ENAMETOOLONG:
        return os.strerror(code), "choose a shorter name"
    if code:
        reason = os.strerror(code)
    elif "enforce fail" in str(err):  # torch's serializer, on a write that did not all reach the file
        reason = "the write was cut short"
    else:
        reason = (str(err).splitlines() or [type(err).__name__])[0]
    return reason, "free some space or choose a writable folder"


def failure_errno(err: BaseException, folder: Path) -> int | None:
    return getattr(err, "errno", None) or _errno_in_text(str(err)) or _errno_of_the_machine(folder)


def _errno_in_text(text: str) -> int | None:
    import re

    found = re.search(r"\[Errno (\d+)\]|\(os error (\d+)\)", text)
    return int(found.group(1) or found.group(2)) if found else None


def _file_size_limit() -> int | None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else soft


def _errno_of_the_machine(folder: Path) -> int | None:
    if _file_size_limit() is not None:
        return errno.EFBIG
    try:
        full = shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return None
    return errno.ENOSPC if full else None


def make_folder(folder: Path) -> None:
    """`folder` and its parents; a link to nowhere and a file on the way are named as such (mkdir
    would say "File exists" of either)."""
    for path in (folder, *folder.parents):
        if path.is_symlink() and not path.exists():
            raise UserError(f"{path} is a link to {os.readlink(path)}, which does not exist: create that folder "
                            "or remove the link")
        if path.exists() and not path.is_dir():
            raise UserError(f"cannot write in {path}: it is a file, not a folder; choose another path")
    folder.mkdir(parents=True, exist_ok=True)


def check_writable(folder: str | os.PathLike) -> None:
    """Before any work: a folder we can create files in (not a file, not read-only)."""
    folder = Path(folder)
    try:
        make_folder(folder)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as err:
        raise UserError(f"cannot write in {folder} ({err.strerror or err}): choose another folder") from None


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        write_json_file(tmp, obj)


def write_json_file(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


def strict_json(obj: Any) -> Any:
    """`obj` with each non-finite number (an R² of rows whose targets are all equal: NaN) as null,
    for a file other programs read: Python's json writes NaN, which JSON itself has not."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: strict_json(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(value) for value in obj]
    return obj


def require_file(path: str | os.PathLike, what: str) -> None:
    """`path` is a file to read; else one line saying what it is instead (`what`: "table", ...)."""
    path = Path(path)
    if path.is_file():
        return
    if path.is_dir():
        raise UserError(f"{what} {path} is a folder, not a file: pass the file itself")
    if path.exists():
        raise UserError(f"{what} {path} is not a regular file (a pipe or a device): save the rows to a file first")
    raise UserError(f"{what} {path} not found: check the path")


def read_json(path: str | os.PathLike, what: str) -> dict[str, Any]:
    path = Path(path)
    require_file(path, what)
    try:
        return json.loads(path.read_text())
    except RecursionError:  # `[[[[...` nested deeper than the parser's stack
        raise UserError(f"{what} {path} is not valid JSON (nested too deeply to read): regenerate it") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{what} {path} is not valid JSON ({err}): regenerate it") from None


def append_jsonl(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """One line per record, written whole or not at all: a failed append (a full disk, a file-size
    limit) is cut back to where the file ended, so no half line is left behind."""
    path = Path(path)
    line = (json.dumps(record) + "\n").encode()
    with open(path, "ab", buffering=0) as fh:  # unbuffered: a failure surfaces here, not at close
        end = fh.tell()
        try:
            write_whole(fh, line)
        except OSError as err:
            with suppress(OSError):
                fh.truncate(end)
            raise write_error(path, err) from None


def write_whole(fh: Any, data: bytes) -> None:
    """All of `data`, or an OSError: a raw write may write less than asked (a file-size limit lets
    the first bytes through and reports how many) and say nothing."""
    view = memoryview(data)
    while view:
        written = fh.write(view)
        if not written:
            raise OSError(errno.EFBIG, f"wrote {len(data) - len(view)} of {len(data)} bytes")
        view = view[written:]


def write_weights_file(path: Path, state_dict: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save  # torch is imported where weights are, not by make_data.py

    # contiguous() + clone(): safetensors refuses views and tensors that share memory. The bytes
    # are written here (save_file's, to the bit): save_file writes a temporary file of its own
    # beside `path`, which a kill then left behind under a name no clean-up knew.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    path.write_bytes(save(tensors, metadata={"format": "pt"}))


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load, load_file

    path = Path(path)
    if path.exists() and not path.is_file():
        raise UserError(f"model weights {path} are not a file (a folder, a pipe or a device): restore the "
                        "model.safetensors train.py wrote, or retrain")
    if not path.is_file():
        raise UserError(f"model weights {path} not found: train a model first or pass --ckpt-dir")
    try:
        if not is_utf8(path):  # safetensors opens UTF-8 paths only: the bytes are read here instead
            return load(path.read_bytes())
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise UserError(f"model weights {path} are unreadable ({err}): retrain or restore the file") from None


def is_utf8(path: Path) -> bool:
    """Whether a path's bytes are UTF-8 text (a folder named in another encoding is not)."""
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def weights_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the tensors' names, types, shapes and bytes, as written and as loaded back."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().to("cpu").contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())  # bf16 has no numpy type
    return digest.hexdigest()


# What numpy's reading of a `.npy` header raises for a damaged one, besides a short or unreadable
# file: it tokenizes and evaluates the header's text, which may then be no Python at all.
NPY_ERRORS = (OSError, ValueError, EOFError, SyntaxError, tokenize.TokenError)


def map_npy(path: Path) -> np.ndarray:
    """A `.npy` array memory-mapped read-only: pages are read when touched and shared, through the
    page cache, by every process on the machine that maps the same file."""
    if not path.is_file():
        raise UserError(f"data file {path} not found: regenerate the data set with make_data.py")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except NPY_ERRORS as err:
        raise UserError(f"data file {path} is unreadable ({err}): regenerate the data set with make_data.py") \
            from None


