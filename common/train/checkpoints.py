"""Training checkpoints: Accelerate's `save_state` folders, committed atomically, verified and rotated.

A checkpoint is written to a hidden temporary folder and renamed into place only once every
file is in it, `trainer_state.json` last. A crash mid-save leaves a hidden folder that is never
taken for a checkpoint; the previous one stays the latest. `trainer_state.json` carries a
manifest (size and SHA-256 of every other file), so a damaged checkpoint is named as damaged
on --resume instead of failing later in some other way. `save_state` writes pickles (optimizer
state, RNG states, the registered best-so-far tracker): fine for resuming our own runs, which
is all they are for. Inference never reads them.

A checkpoint sits at a position in the run: `epoch_000007` after epoch 7 is complete, and
`epoch_000008_step_000040` after 40 steps of epoch 8 (a run stopped by a signal mid-epoch).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common.errors import ProcessError, UserError
from common.files import check_writable, write_json, write_problem
from common.model_folder import STATE_FILE
from common.schema import is_finite, is_int

STATE_FORMAT = 2
_NAME = re.compile(r"^epoch_(\d{6})(?:_step_(\d{6}))?$")


def checkpoint_root(ckpt_dir: str | Path) -> Path:
    return Path(ckpt_dir) / "checkpoints"


def checkpoint_name(epoch: int, step: int | None = None) -> str:
    """`step`: steps done in `epoch` for a checkpoint taken mid-epoch; None once the epoch is complete."""
    return f"epoch_{epoch:06d}" if step is None else f"epoch_{epoch:06d}_step_{step:06d}"


def position_of(name: str) -> tuple[int, float] | None:
    """(epoch, steps done in it; inf when complete) of a checkpoint folder's name, None for another name."""
    match = _NAME.match(name)
    if not match:
        return None
    return int(match[1]), math.inf if match[2] is None else int(match[2])


def staging_dir(ckpt_dir: str | Path, name: str) -> Path:
    """The hidden folder a checkpoint is written to before it is committed."""
    return checkpoint_root(ckpt_dir) / f".{name}.tmp"


def complete_checkpoints(ckpt_dir: str | Path) -> list[Path]:
    """Committed checkpoints, oldest first."""
    return committed_in(checkpoint_root(ckpt_dir))


def committed_in(root: Path) -> list[Path]:
    """The committed checkpoints in the folder `root`, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if position_of(p.name) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: position_of(p.name) or (0, 0))


def manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """Size and SHA-256 of every file of a checkpoint folder but its state file."""
    found = {}
    for file in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != STATE_FILE):
        digest = hashlib.sha256()
        with open(file, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
        found[str(file.relative_to(folder))] = {"bytes": file.stat().st_size, "sha256": digest.hexdigest()}
    return found


def commit_checkpoint(ckpt_dir: str | Path, name: str, state: CheckpointState, keep: int) -> Path:
    """Main process only: finish the staged checkpoint, put the oldest ones out of sight, rename
    it into place, then delete those. A kill between the steps leaves at most `keep` checkpoints
    in sight and at least one where there was one: the newest of the earlier ones stays in sight
    until the new one is, so with --keep-checkpoints 1 there are two for a moment."""
    staged = staging_dir(ckpt_dir, name)
    write_json(staged / STATE_FILE, dataclasses.replace(state, manifest=manifest(staged)).to_json())
    final = checkpoint_root(ckpt_dir) / name
    if final.exists():
        discard(final)
    others = complete_checkpoints(ckpt_dir)
    excess = max(0, len(others) - (keep - 1))
    hidden = [hide(old) for old in others[:min(excess, len(others) - 1)]]
    staged.rename(final)
    hidden += [hide(old) for old in others[len(hidden):excess]]
    for path in hidden:
        shutil.rmtree(path, ignore_errors=True)
    return final


def hide(path: Path) -> Path:
    """Rename out of sight (a hidden name the next run clears); the hidden path."""
    hidden = path.with_name(f".{path.name}.old")
    shutil.rmtree(hidden, ignore_errors=True)
    path.rename(hidden)
    return hidden


def discard(path: Path) -> None:
    """Rename out of sight first, then delete: a crash mid-delete leaves a hidden folder that
    the next run removes, never a half-deleted checkpoint folder."""
    shutil.rmtree(hide(path), ignore_errors=True)


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
        if not path.exists():  # a typo, or a checkpoint since removed by --keep-checkpoints
            raise UserError(f"--resume {path}: no such checkpoint folder: pass one under {checkpoint_root(ckpt_dir)}, "
                            "or --resume alone for the latest there")
        if not (path / STATE_FILE).is_file():
            raise UserError(f"--resume {path}: not a complete checkpoint folder (no {STATE_FILE}): "
                            f"pass one under {checkpoint_root(ckpt_dir)}")
        return path
    found = complete_checkpoints(ckpt_dir)
    if not found:
        raise UserError(f"--resume: no checkpoint under {checkpoint_root(ckpt_dir)}: drop --resume to start afresh")
    return found[-1]


@dataclasses.dataclass
class CheckpointState:
    """trainer_state.json, a checkpoint's own record: its one schema. Format 1 (without a
    "format" key) and 2 hold the same fields; 2 says so."""

    epoch: int                             # the epoch it is in
    step: int | None                       # steps done in that epoch; None once it is complete
    plan: dict[str, Any]                   # the run plan it trained with (TrainPlan.as_dict)
    metrics: list[dict[str, Any]]          # the run's evaluations so far
    partial: list[dict[str, Any]] | None   # mid-epoch: each process's share of the epoch's loss so far
    manifest: dict[str, Any] = dataclasses.field(default_factory=dict)  # size and SHA-256 of every other file
    format: int = STATE_FORMAT
    train_seconds: float = 0.0             # training time up to it, over the run's every segment (0: not kept)

    @property
    def position(self) -> tuple[int, float]:
        return self.epoch, math.inf if self.step is None else self.step

    def to_json(self) -> dict[str, Any]:
        state = {"format": STATE_FORMAT, "epoch": self.epoch, "plan": self.plan, "metrics": self.metrics,
                 "manifest": self.manifest, "train_seconds": self.train_seconds}
        return {**state, **({} if self.step is None else {"step": self.step, "partial": self.partial})}

    @classmethod
    def read(cls, obj: Any, path: Path) -> CheckpointState:
        """The state as written, or a UserError: a file of another shape, or a checkpoint whose
        manifest is missing (its files could not be checked)."""
        fits = isinstance(obj, dict) and isinstance(obj.get("plan"), dict) and is_int(obj.get("epoch")) \
            and isinstance(obj.get("metrics"), list) and is_int(obj.get("step", 0)) \
            and obj.get("format", 1) in (1, STATE_FORMAT) \
            and (obj.get("partial") is None or isinstance(obj.get("partial"), list))
        if not fits:
            raise UserError(f"{path} is not a checkpoint state this version wrote: {resume_instead(path.parent)}")
        if not isinstance(obj.get("manifest"), dict):
            raise UserError(f"checkpoint damaged: {path} holds no valid manifest: {resume_instead(path.parent)}")
        seconds = obj.get("train_seconds", 0.0)
        return cls(obj["epoch"], obj.get("step"), obj["plan"], obj["metrics"], obj.get("partial"), obj["manifest"],
                   obj.get("format", 1), float(seconds) if is_finite(seconds) and seconds >= 0 else 0.0)


def read_state(path: str | Path) -> CheckpointState:
    """The checkpoint's own record, checked against its folder: its name's position and every
    file its manifest lists. A damaged checkpoint is one line."""
    path = Path(path)
    try:
        text = (path / STATE_FILE).read_bytes()
    except OSError as err:  # not the file's fault: the user's to put right
        raise UserError(f"checkpoint state {path / STATE_FILE} cannot be read ({err.strerror}): make it readable, "
                        f"or {resume_instead(path)}") from None
    try:
        obj = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:  # a JSONDecodeError is a ValueError
        raise UserError(f"checkpoint damaged: {path / STATE_FILE} is not valid JSON ({str(err)[:120]}): "
                        f"{resume_instead(path)}") from None
    state = CheckpointState.read(obj, path / STATE_FILE)
    position = position_of(path.name)
    if position is not None and position != state.position:
        raise UserError(f"checkpoint damaged: {path / STATE_FILE} says epoch {state.epoch}"
                        f"{'' if state.step is None else ' step ' + str(state.step)}, its folder's name another: "
                        f"{resume_instead(path)}")
    check_manifest(path, state.manifest)
    return state


def check_manifest(path: Path, recorded: dict[str, Any]) -> None:
    """Every file the checkpoint was committed with, with its size and hash."""
    found = manifest(path)
    for name, entry in recorded.items():
        if found.get(name) != entry:
            what = "missing" if name not in found else "changed since it was saved"
            raise UserError(f"checkpoint damaged: {path / name} is {what}: {resume_instead(path)}")


def resume_instead(path: Path) -> str:
    """What to do about the damaged checkpoint `path`: resume from the newest other one beside it,
    or, where there is none, start afresh."""
    others = [p for p in committed_in(path.parent) if p.name != path.name]
    if not others:
        return "no other checkpoint is kept: start afresh in another --ckpt-dir"
    return f"resume from the newest one kept beside it (--resume {others[-1]}), or start afresh in another --ckpt-dir"


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
        root = checkpoint_root(ckpt_dir)
        raise UserError(f"{root} holds an earlier run's checkpoints: pass --resume to continue that run (one "
                        f"that finished only saves again), delete {root} to start afresh there, or choose another "
                        "--ckpt-dir")


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


def check_same_place_everywhere(accelerator: Any, path: str | Path) -> None:
    """Machines that keep their own checkpoints resume from the same point of the run, or not at all."""
    if accelerator.num_processes == 1:
        return
    from accelerate.utils import gather_object

    names = sorted(set(gather_object([Path(path).name])), key=lambda name: position_of(name) or (0, 0))
    if len(names) > 1:
        raise UserError(f"the machines' checkpoints to resume from differ ({', '.join(names)}; here {path}): "
                        f"resume every machine from {names[0]} with --resume PATH")


def commits_checkpoints(accelerator: Any) -> bool:
    """The process that commits, rotates and cleans checkpoints: the main one, or each machine's
    main one where every machine keeps its own copy (Accelerate's save_on_each_node)."""
    if accelerator.project_configuration.save_on_each_node:
        return bool(accelerator.is_local_main_process)
    return bool(accelerator.is_main_process)


def save_checkpoint(accelerator, ckpt_dir: str | Path, name: str, state: CheckpointState, keep: int) -> Path:
    """Every process calls this: each writes its part (RNG states), the main process commits.
    Objects registered with `accelerator.register_for_checkpointing` travel inside."""
    staged = staging_dir(ckpt_dir, name)
    with saving(ckpt_dir, name, staged):
        accelerator.save_state(str(staged))
    # Outside the write's error handling: a peer lost during this barrier is a lost peer
    # (train.py reports it as such), not a full disk.
    accelerator.wait_for_everyone()
    if commits_checkpoints(accelerator):
        with saving(ckpt_dir, name, staged):
            commit_checkpoint(ckpt_dir, name, state, keep)
    accelerator.wait_for_everyone()
    return checkpoint_root(ckpt_dir) / name


@contextlib.contextmanager
def saving(ckpt_dir: str | Path, name: str, staged: Path) -> Iterator[None]:
    """A write of checkpoint `name` that fails (a full disk, a file-size limit) becomes one line
    saying where the last good checkpoint is; the staged folder goes."""
    from safetensors import SafetensorError

    try:
        yield
    except (OSError, RuntimeError, SafetensorError, UserError) as err:  # torch.save: "enforce fail" on a full disk
        reason, fix = write_problem(err, staged.parent)  # before the staged files go, freeing the disk
        shutil.rmtree(staged, ignore_errors=True)
        kept = complete_checkpoints(ckpt_dir)
        after = (f"then --resume from {kept[-1]}, the last checkpoint, which was kept" if kept
                 else "then run again: no checkpoint had been written yet")
        raise ProcessError(f"cannot save checkpoint {name} in {checkpoint_root(ckpt_dir)} ({reason}): "
                           f"{fix}, {after}") from None


def restore_checkpoint(accelerator, path: str | Path) -> None:
    """Model, optimizer, scheduler, RNG states and the registered objects, as saved."""
    from safetensors import SafetensorError

    try:
        accelerator.load_state(str(path))
    except (OSError, RuntimeError, KeyError, ValueError, SafetensorError) as err:
        raise ProcessError(f"checkpoint {path} is unreadable ({err}): resume from another one") from None
