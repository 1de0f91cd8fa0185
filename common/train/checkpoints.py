"""Training checkpoints: Accelerate's `save_state` folders, committed atomically and rotated.

A checkpoint is written to a hidden temporary folder and renamed to `epoch_NNNNNN` only once
every file is in it, `trainer_state.json` last. A crash mid-save leaves a hidden folder that
is never taken for a checkpoint; the previous one stays the latest. `save_state` writes
pickles (optimizer state, RNG states, the registered best-so-far tracker): fine for resuming
our own runs, which is all they are for. Inference never reads them.
"""
from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from common.errors import ProcessError, UserError
from common.files import check_writable, read_json, write_json

STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"^epoch_(\d{6})$")


def checkpoint_root(ckpt_dir: str | Path) -> Path:
    return Path(ckpt_dir) / "checkpoints"


def checkpoint_name(epoch: int) -> str:
    return f"epoch_{epoch:06d}"


def staging_dir(ckpt_dir: str | Path, epoch: int) -> Path:
    """The hidden folder a checkpoint is written to before it is committed."""
    return checkpoint_root(ckpt_dir) / f".{checkpoint_name(epoch)}.tmp"


def complete_checkpoints(ckpt_dir: str | Path) -> list[Path]:
    """Committed checkpoints, oldest first."""
    root = checkpoint_root(ckpt_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _NAME.match(p.name) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: p.name)


def commit_checkpoint(ckpt_dir: str | Path, epoch: int, state: dict[str, Any], keep: int) -> Path:
    """Main process only: finish the staged checkpoint, rename it into place, drop old ones."""
    staged = staging_dir(ckpt_dir, epoch)
    write_json(staged / STATE_FILE, state)
    final = checkpoint_root(ckpt_dir) / checkpoint_name(epoch)
    if final.exists():
        discard(final)
    staged.rename(final)
    for old in complete_checkpoints(ckpt_dir)[:-keep]:
        discard(old)
    return final


def discard(path: Path) -> None:
    """Rename out of sight first, then delete: a crash mid-delete leaves a hidden folder that
    the next run removes, never a half-deleted checkpoint folder."""
    hidden = path.with_name(f".{path.name}.old")
    shutil.rmtree(hidden, ignore_errors=True)
    path.rename(hidden)
    shutil.rmtree(hidden, ignore_errors=True)


def clear_staging(ckpt_dir: str | Path) -> None:
    """Remove leftovers of saves and deletions that a crash interrupted."""
    root = checkpoint_root(ckpt_dir)
    if root.is_dir():
        for p in [*root.glob(".epoch_*.tmp"), *root.glob(".epoch_*.old")]:
            shutil.rmtree(p, ignore_errors=True)


def find_checkpoint(ckpt_dir: str | Path, resume: str) -> Path:
    """`latest` -> the newest committed checkpoint; anything else is a checkpoint folder path."""
    if resume != "latest":
        path = Path(resume)
        if not (path / STATE_FILE).is_file():
            raise UserError(f"--resume {path}: not a complete checkpoint folder (no {STATE_FILE}): "
                            f"pass one under {checkpoint_root(ckpt_dir)}")
        return path
    found = complete_checkpoints(ckpt_dir)
    if not found:
        raise UserError(f"--resume: no checkpoint under {checkpoint_root(ckpt_dir)}: drop --resume to start afresh")
    return found[-1]


def read_state(path: str | Path) -> dict[str, Any]:
    """The checkpoint's own record: {"epoch": the last epoch it holds, "plan": the run plan,
    "metrics": the run's evaluations up to that epoch}."""
    state = read_json(Path(path) / STATE_FILE, "checkpoint state")
    if not isinstance(state.get("plan"), dict) or not isinstance(state.get("epoch"), int) \
            or not isinstance(state.get("metrics"), list):
        raise UserError(f"{Path(path) / STATE_FILE} is not a checkpoint state this version wrote: "
                        "start afresh in another --ckpt-dir")
    return state


def check_checkpoint_root(ckpt_dir: str | Path) -> None:
    """Before any training: checkpoints can be written (fails at the first save otherwise)."""
    root = checkpoint_root(ckpt_dir)
    if root.exists() and not root.is_dir():
        raise UserError(f"{root} is a file, and checkpoints need a folder there: move it or choose another "
                        "--ckpt-dir")
    check_writable(root)


def refuse_stale(ckpt_dir: str | Path) -> None:
    """A fresh run must not mix its checkpoints with an earlier run's, nor silently delete them."""
    if complete_checkpoints(ckpt_dir):
        raise UserError(f"{checkpoint_root(ckpt_dir)} holds an earlier run's checkpoints: pass --resume to "
                        "continue it, or choose another --ckpt-dir")


def folder_is_shared(accelerator: Any, ckpt_dir: str | Path) -> bool:
    """Whether every process sees the same --ckpt-dir (one disk, or a network one): the main
    process leaves a marker, every process looks for it. Every process calls this."""
    from accelerate.utils import broadcast_object_list, gather_object

    token = [uuid.uuid4().hex if accelerator.is_main_process else ""]
    broadcast_object_list(token)
    marker = Path(ckpt_dir) / f".shared-{token[0]}"
    if accelerator.is_main_process:
        marker.touch()
    accelerator.wait_for_everyone()
    seen = gather_object([marker.exists()])
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        marker.unlink(missing_ok=True)
    return all(seen)


def check_same_epoch_everywhere(accelerator: Any, epoch: int, path: str | Path) -> None:
    """Machines that keep their own checkpoints resume from the same epoch, or not at all."""
    if accelerator.num_processes == 1:
        return
    from accelerate.utils import gather_object

    epochs = sorted(set(gather_object([epoch])))
    if len(epochs) > 1:
        raise UserError(f"the machines' checkpoints to resume from differ (epochs {epochs}; here {path}): "
                        f"resume every machine from epoch_{epochs[0]:06d} with --resume PATH")


def commits_checkpoints(accelerator: Any) -> bool:
    """The process that commits, rotates and cleans checkpoints: the main one, or each machine's
    main one where every machine keeps its own copy (Accelerate's save_on_each_node)."""
    if accelerator.project_configuration.save_on_each_node:
        return bool(accelerator.is_local_main_process)
    return bool(accelerator.is_main_process)


def save_checkpoint(accelerator, ckpt_dir: str | Path, epoch: int, state: dict[str, Any], keep: int) -> None:
    """Every process calls this: each writes its part (RNG states), the main process commits.
    Objects registered with `accelerator.register_for_checkpointing` travel inside."""
    from safetensors import SafetensorError

    staged = staging_dir(ckpt_dir, epoch)
    try:
        accelerator.save_state(str(staged))
        accelerator.wait_for_everyone()
        if commits_checkpoints(accelerator):
            commit_checkpoint(ckpt_dir, epoch, state, keep)
    except (OSError, RuntimeError, SafetensorError) as err:  # torch.save says "enforce fail" on a full disk
        shutil.rmtree(staged, ignore_errors=True)
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ProcessError(f"cannot save the checkpoint of epoch {epoch} in {checkpoint_root(ckpt_dir)} ({first}): "
                           "free some space, then --resume from the last checkpoint, which was kept") from None
    accelerator.wait_for_everyone()


def restore_checkpoint(accelerator, path: str | Path) -> None:
    """Model, optimizer, scheduler, RNG states and the registered objects, as saved."""
    from safetensors import SafetensorError

    try:
        accelerator.load_state(str(path))
    except (OSError, RuntimeError, KeyError, ValueError, SafetensorError) as err:
        raise ProcessError(f"checkpoint {path} is unreadable ({err}): resume from another one") from None
