"""The run folder (--ckpt-dir): one object owns its protocol, so train.py only asks it to open,
resume, checkpoint and commit.

What it guarantees:
- one run at a time in a folder (an advisory lock the kernel drops however the run ends);
- a fresh run never mixes its checkpoints with an earlier run's, and a resumed one continues
  only the trajectory its checkpoint holds (the same plan, the same epoch on every machine);
- machines that do not share the folder each keep a full copy of every checkpoint;
- the model's files (model.safetensors, config.json, metrics.jsonl) change together, at the
  end of a run, or not at all: a run that fails or is killed leaves the earlier run's set as it
  was. While a run trains, its evaluations go to metrics.running.jsonl, which becomes
  metrics.jsonl when the run commits; a resumed run picks it up where its checkpoint ended;
- leftovers of a kill (staged checkpoints, staged model files) are cleared before any work.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from common.console import console
from common.data.dataset import DATASET_FILE
from common.errors import Interrupted, Stopped, UserError, signals_held
from common.errors import written as now_written
from common.files import (
    NO_ROOM,
    NOT_ALLOWED,
    append_jsonl,
    atomic_path,
    check_writable,
    exclusive_lock,
    lock_holder,
    weights_digest,
    write_error,
    write_json_file,
    write_together,
    write_weights_file,
)
from common.model_folder import (
    CARD_FILE,
    CONFIG_FILE,
    LOCK_FILE,
    METRICS_FILE,
    MODEL_FILE,
    ModelRecord,
    is_model_config,
    load_record,
)
from common.train.checkpoints import (
    CheckpointState,
    check_checkpoint_root,
    check_same_place_everywhere,
    checkpoint_name,
    checkpoint_root,
    clear_staging,
    commits_checkpoints,
    complete_checkpoints,
    folder_is_shared,
    read_state,
    refuse_stale,
    restore_checkpoint,
    save_checkpoint,
)
from common.train.process_group import local_process_count
from common.train.run_plan import TrainPlan, check_resumable
from common.train.run_report import REPORT_FILES, RunReport, owned_card
from common.train.stop_signal import StopSignal

RUNNING_METRICS_FILE = "metrics.running.jsonl"


class Start(NamedTuple):
    """Where a run starts: an epoch, and the steps of it a checkpoint taken mid-epoch had done."""
    epoch: int
    step: int

    def first_step(self, epoch: int) -> int:
        return self.step if epoch == self.epoch else 0


class RunFolder:
    """`with RunFolder(plan, accelerator) as folder:` holds the folder's lock for the run. Every
    process enters it and calls each method: the collectives inside keep them in step."""

    def __init__(self, plan: TrainPlan, accelerator: Any):
        self.plan, self.accelerator, self.path = plan, accelerator, Path(plan.run.ckpt_dir)
        self.log: RunLog | None = None
        self.committed = False  # the model files are swapped in (commit)
        self._stack = contextlib.ExitStack()
        self.trained_before = 0.0  # seconds trained before the checkpoint a --resume starts from
        self._clock = time.perf_counter()

    def __enter__(self) -> RunFolder:
        require_a_run_folder(self.path, self.plan.run.data)
        check_writable(self.path)  # every process: each writes its part of a checkpoint
        self._decide_copies()
        self._stack.enter_context(run_lock(self.path, self.accelerator))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _decide_copies(self) -> None:
        """One copy of each checkpoint where the folder is shared (one machine, or a network disk),
        one per machine where it is not, so that each machine can resume from its own disk."""
        acc = self.accelerator
        if acc.num_processes == local_process_count(acc):
            return  # one machine
        per_machine = not folder_is_shared(acc, self.path)
        # Accelerate's save_state reads this switch: each machine's main process then writes.
        acc.project_configuration.save_on_each_node = per_machine
        if per_machine:
            acc.print(f"{self.path} is not shared between the machines: each keeps its own checkpoints")

    def resume(self, trainer: Any, best: Any) -> Start:
        """Where training starts. For a fresh run, the start; for --resume, the point after the
        checkpoint's: model, optimizer, RNG states and `best` (registered with the accelerator,
        so every checkpoint carries it) restored, and a checkpoint taken mid-epoch gives the
        trainer its epoch's loss so far. Clears a kill's leftovers."""
        plan, acc = self.plan, self.accelerator
        acc.register_for_checkpointing(best)
        records: list[dict[str, Any]] = []
        start = Start(0, 0)
        if plan.run.resume:
            state = read_state(plan.run.resume)
            check_resumable(state.plan, plan, plan.run.resume)
            check_same_place_everywhere(acc, plan.run.resume)
            restore_checkpoint(acc, plan.run.resume)
            records = state.metrics
            self.trained_before = state.train_seconds
            if state.step is not None and state.partial:  # each process's share of the epoch's loss so far
                trainer.load_partial(state.partial[acc.process_index])
            start = Start(state.epoch, state.step) if state.step is not None else Start(state.epoch + 1, 0)
            where = f"epoch {start.epoch}" + (f", step {start.step}" if start.step else "")
            acc.print(f"Resumed from {plan.run.resume}: continuing at {where}")
        else:
            refuse_stale(self.path)  # with or without --checkpoint-every: never mix with an earlier run's
            if plan.run.checkpoint_every or plan.run.save_on_signal:
                check_checkpoint_root(self.path)
        self.log = RunLog(self.path, records, acc.is_main_process)
        if acc.is_main_process:
            clear_commit_leftovers(self.path)
        if commits_checkpoints(acc):
            clear_staging(self.path)
        acc.wait_for_everyone()
        return start

    @property
    def records(self) -> list[dict[str, Any]]:
        assert self.log is not None, "resume() first"
        return self.log.records

    def add_record(self, record: dict[str, Any]) -> None:
        """An evaluation: kept for the next checkpoint, appended to the running metrics, and given
        to the trackers."""
        assert self.log is not None, "resume() first"
        self.log.add(record)
        with tracker_writes(self.plan.run.ckpt_dir):
            self.accelerator.log(tracker_values(record), step=record["epoch"])

    def checkpoint_if_due(self, epoch: int) -> None:
        every = self.plan.run.checkpoint_every
        if every and (epoch + 1) % every == 0:
            self._checkpoint(epoch, None)

    def start_clock(self) -> None:
        """Training begins (or goes on, from a checkpoint): its seconds count from here."""
        self._clock = time.perf_counter()

    def training_seconds(self) -> float:
        """The run's training time so far: this segment's, and the segments' before a --resume."""
        return round(self.trained_before + time.perf_counter() - self._clock, 3)

    def _checkpoint(self, epoch: int, step: int | None, partial: list[dict[str, Any]] | None = None) -> Path:
        state = CheckpointState(epoch, step, self.plan.as_dict(), self.records, partial,
                                train_seconds=self.training_seconds())
        return save_checkpoint(self.accelerator, self.path, checkpoint_name(epoch, step), state,
                               self.plan.run.keep_checkpoints)

    def stopped(self, stop: StopSignal, trainer: Any) -> Stopped:
        """A signal stopped the run where `trainer` is (mid-epoch, or after a whole epoch): a
        checkpoint of that point where the run keeps them, and the line that says how to go on."""
        run = self.plan.run
        epoch, step = trainer.position()
        saved: Path | None = None
        if run.checkpoint_every or run.save_on_signal:
            every = run.checkpoint_every
            just_saved = step is None and every and (epoch + 1) % every == 0  # the same verdict on every process
            partial = self._gathered(trainer.partial()) if step is not None else None
            saved = checkpoint_root(self.path) / checkpoint_name(epoch) if just_saved else \
                self._checkpoint(epoch, step, partial)
        where = f"in epoch {epoch} after step {step}" if step is not None else f"after epoch {epoch}"
        return Stopped(f"{stop.name} {where}: {go_on_from(saved)}; {self._kept()}", stop.exit_code)

    def commit(self, weights: dict[str, Any], record: ModelRecord, report: RunReport | None) -> None:
        """The run's model files and its report (the main process's), swapped in together by the
        main process once every process is here."""
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            earlier = earlier_record(self.path)
            with signals_held():  # a stop waits for the swap's end, and then says the model was written
                written = commit_run(self.path, weights, record, report.writers if report else {})
                self.committed = True
                now_written(f"the model in {self.path}")
            replaced = replaced_model(self.path, earlier, self.plan.run.data, self.plan.data_identity)
            if replaced:
                console.print(f"Note: {replaced}")
            console.print(f"Saved: {self.path / MODEL_FILE}, {self.path / CONFIG_FILE}, {self.path / METRICS_FILE}"
                          + (f"; {', '.join(written)}" if written else ""))

    def _gathered(self, partial: dict[str, Any]) -> list[dict[str, Any]]:
        """Every process's `partial`, by process index (collective: every process calls it)."""
        if self.accelerator.num_processes == 1:
            return [partial]
        from accelerate.utils import gather_object

        return list(gather_object([partial]))

    def interrupted(self, epoch: int) -> Interrupted:
        """Ctrl-C pressed twice in `epoch` (the second one does not wait for the step): where to go on from."""
        found = complete_checkpoints(self.path)
        if found:
            return Interrupted(f"interrupted in epoch {epoch}: continue with the same arguments and --resume "
                               f"(from {found[-1]}); {self._kept()}")
        return Interrupted(f"interrupted in epoch {epoch}, with no checkpoint to resume from (--checkpoint-every N "
                           f"keeps some); {self._kept()}")

    def stopped_after_training(self, by: BaseException) -> Stopped:
        """A Ctrl-C or SIGTERM (`by`) once the last step was taken, before the model files were
        swapped in: they were not, and a checkpoint, where the run keeps them, goes on from there."""
        name, code = ("Ctrl-C", 130) if isinstance(by, KeyboardInterrupt) else ("SIGTERM", 143)
        found = complete_checkpoints(self.path)
        go_on = go_on_from(found[-1] if found else None)
        return Stopped(f"{name} after training, before the model was saved: {go_on}; {self._kept()}", code)

    def _kept(self) -> str:
        if (self.path / MODEL_FILE).is_file():
            return f"{self.path} keeps the earlier run's model files"
        return f"no model was saved in {self.path}"

def go_on_from(checkpoint: Path | None) -> str:
    """How a stopped run goes on: from its checkpoint, or, with none, how to keep one next time."""
    if checkpoint is not None:
        return f"continue with the same arguments and --resume (from {checkpoint})"
    return "no checkpoint was written (--checkpoint-every N or --save-on-signal keep one)"


TRACKER_PROJECT = "logs"  # trackers that write locally write under <ckpt-dir>/logs

# The trackers' disk errors, said of the logs folder; any other (a tracker's server out of reach,
# also an OSError) passes as it is.
DISK_ERRORS = frozenset({*NO_ROOM, *NOT_ALLOWED, errno.EFBIG, errno.EEXIST, errno.ENOTDIR, errno.EISDIR})


@contextlib.contextmanager
def tracker_writes(ckpt_dir: str | Path) -> Iterator[None]:
    """What the trackers write themselves (TensorBoard's event files, under <ckpt_dir>/logs, where
    Accelerate puts them): a write the disk refuses is one line, said of that folder."""
    try:
        yield
    except OSError as err:
        if err.errno not in DISK_ERRORS:
            raise
        raise write_error(Path(ckpt_dir) / TRACKER_PROJECT, err) from None


@contextlib.contextmanager
def tracker_threads_quiet() -> Iterator[None]:
    """TensorBoard writes on a thread of its own, when it chooses, and raises a write that failed
    there again in the thread that logs or ends next, where tracker_writes says it; threading's
    hook would first print the writer thread's traceback. Held from the trackers' start to their end."""
    previous = threading.excepthook

    def quiet_writer(args: Any) -> None:
        if not (isinstance(args.exc_value, OSError) and type(args.thread).__module__.startswith("tensorboard.")):
            previous(args)

    threading.excepthook = quiet_writer
    try:
        yield
    finally:
        threading.excepthook = previous


def tracker_values(record: dict[str, Any]) -> dict[str, Any]:
    """An evaluation as trackers take it: numbers, and the members' figures as a group of numbers."""
    values = {k: v for k, v in record.items() if k != "epoch" and not isinstance(v, list)}
    for key, members in record.items():
        if isinstance(members, list):
            values[key] = {f"member_{i}": v for i, v in enumerate(members) if v is not None}
    return values


@contextlib.contextmanager
def run_lock(ckpt_dir: str | Path, accelerator: Any) -> Iterator[None]:
    """One run at a time in a folder: the main process holds an advisory lock on
    <ckpt-dir>/.lock for as long as it trains. The kernel drops it when the process ends, however
    it ends, so a killed run never leaves the folder locked. Every process calls this and learns
    the verdict, so a refused run stops everywhere with one line, none left waiting."""
    from accelerate.utils import broadcast_object_list

    with contextlib.ExitStack() as stack:
        held_by_fit = os.path.realpath(ckpt_dir) in _held_by_this_thread()
        holder = stack.enter_context(exclusive_lock(Path(ckpt_dir) / LOCK_FILE)) \
            if accelerator.is_main_process and not held_by_fit else None
        refusal = [in_use(ckpt_dir, holder) if holder else None]
        if accelerator.num_processes > 1:
            broadcast_object_list(refusal)
        if refusal[0]:
            raise UserError(refusal[0])
        yield


def running_metrics(ckpt_dir: str | Path) -> Path:
    return Path(ckpt_dir) / RUNNING_METRICS_FILE


class RunLog:
    """The run's evaluations: kept in memory (each checkpoint carries them) and, on the main
    process, appended to metrics.running.jsonl as they come."""

    def __init__(self, ckpt_dir: str | Path, records: list[dict[str, Any]], writer: bool):
        self.path, self.records, self.writer = running_metrics(ckpt_dir), list(records), writer
        if writer:  # a fresh run starts empty; a resumed one with the checkpoint's records, no later ones
            with atomic_path(self.path) as tmp:
                tmp.write_text("".join(json.dumps(r) + "\n" for r in self.records))

    def add(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if self.writer:
            append_jsonl(self.path, record)


def clear_commit_leftovers(ckpt_dir: str | Path) -> None:
    """Staged model files that a kill during a commit left behind (hidden, never read)."""
    for name in (MODEL_FILE, CONFIG_FILE, METRICS_FILE, *REPORT_FILES):
        for leftover in Path(ckpt_dir).glob(f".{name}.*.tmp"):
            leftover.unlink(missing_ok=True)


def require_a_run_folder(ckpt_dir: Path, data: str | None) -> None:
    """Said before the run trains, not once it has (nor once fit has made its data set): a run's
    commit replaces the model files of an earlier run in its folder and removes the report files
    it does not write. A data set's folder (of `data`'s kind) would hold the model among its
    arrays; a folder standing where a model file goes stops the commit; in a folder whose
    config.json is not a model's, or which holds such files without one and was never a run's (no
    lock file of one: a run killed while it renamed its files into place leaves some of them),
    they are somebody else's (a user's results, another tool's weights)."""
    if (ckpt_dir / DATASET_FILE).is_file():
        raise UserError(f"--ckpt-dir {ckpt_dir} is a data set folder (make_data.py's): give the run a folder "
                        f"of its own, such as runs/{Path(data or 'data').name}")
    files = (MODEL_FILE, CONFIG_FILE, METRICS_FILE, *REPORT_FILES)
    for name in files:
        if (ckpt_dir / name).is_dir():
            raise UserError(f"cannot write {ckpt_dir / name} (a folder stands where the file goes): move that "
                            "folder away")
    config = ckpt_dir / CONFIG_FILE
    if config.exists():
        if not is_model_config(config):
            raise UserError(f"--ckpt-dir {ckpt_dir} holds a {CONFIG_FILE} that is no model config of train.py's, "
                            "which the run would replace: give the run a folder of its own")
        return
    found = [name for name in files if name != CARD_FILE and (ckpt_dir / name).exists()]
    if found and not (ckpt_dir / LOCK_FILE).exists():
        raise UserError(f"--ckpt-dir {ckpt_dir} holds {', '.join(found)} but no model's {CONFIG_FILE}: the run would "
                        "replace or remove them; give the run a folder of its own, or move them out")


def require_a_free_run_folder(ckpt_dir: Path, data: str | None) -> None:
    """What a run in `ckpt_dir` would be refused for before it trains (require_a_run_folder), and
    another run training there: said before anything is made for the run (fit's data set)."""
    require_a_run_folder(ckpt_dir, data)
    holder = lock_holder(ckpt_dir / LOCK_FILE)
    if holder:
        raise UserError(in_use(ckpt_dir, holder))


@contextlib.contextmanager
def held_run_folder(ckpt_dir: Path, data: str | None) -> Iterator[None]:
    """The run folder of the API's fit, checked as a run checks it before it trains
    (require_a_run_folder) and locked, from before its data set replaces an earlier one to the
    run's end: a second caller is refused before it replaces anything, and the run inside, in
    this thread, finds the lock its own (run_lock). A call that fails after this leaves the
    folder with its lock file: a lock file removed while another caller waits on it would let two
    runs hold the folder at once."""
    require_a_run_folder(ckpt_dir, data)
    check_writable(ckpt_dir)
    held, key = _held_by_this_thread(), os.path.realpath(ckpt_dir)
    with exclusive_lock(ckpt_dir / LOCK_FILE) as holder:
        if holder:
            raise UserError(in_use(ckpt_dir, holder))
        held.add(key)
        try:
            yield
        finally:
            held.discard(key)


_fit_holds = threading.local()  # the run folders whose lock this thread holds through held_run_folder


def _held_by_this_thread() -> set[str]:
    paths: set[str] = _fit_holds.__dict__.setdefault("paths", set())
    return paths


def in_use(ckpt_dir: str | Path, holder: str) -> str:
    """The refusal of a run folder another run holds (`holder`: "pid N on HOST")."""
    return f"another run is using {ckpt_dir} ({holder}): wait for it to end, or choose another --ckpt-dir"


def earlier_record(ckpt_dir: Path) -> ModelRecord | None:
    """The record of the model a run folder already holds (its data set among the rest); None
    where it holds none that can be read."""
    if not (ckpt_dir / CONFIG_FILE).is_file():
        return None
    try:
        return load_record(ckpt_dir)
    except UserError:  # damaged, or of a format this code no longer reads: replaced all the same
        return None


def replaced_model(ckpt_dir: Path, earlier: ModelRecord | None, data: str | None, data_identity: Any) -> str | None:
    """What a run folder held before where it was a model of other data (earlier_record), in words."""
    if earlier is None or earlier.training.get("data_identity") == data_identity:
        return None
    remade = earlier.data == data  # the same folder, made again from other rows
    return (f"{ckpt_dir} held a model of {'an earlier version of ' if remade else ''}the data set {earlier.data}, "
            "now replaced")


def commit_run(ckpt_dir: str | Path, weights: dict[str, Any], record: ModelRecord,
               report: dict[str, Callable[[Path], Any]]) -> list[str]:
    """The new weights, config.json, metrics.jsonl and the report's files, written beside the old
    ones and renamed into place together; an earlier run's report files this one does not write
    go. A README.md of the folder's own (not a card of ours) is left alone. Returns the report's
    file names written."""
    folder = Path(ckpt_dir)
    running = running_metrics(folder)
    if not owned_card(folder / CARD_FILE) and CARD_FILE in report:
        console.print(f"Note: {folder / CARD_FILE} is not a model card of ours: left as it is, no card written")
        report = {name: write for name, write in report.items() if name != CARD_FILE}
    config = dataclasses.replace(record, weights_sha256=weights_digest(weights)).to_json()
    write_together({
        folder / MODEL_FILE: lambda path: write_weights_file(path, weights),
        folder / CONFIG_FILE: lambda path: write_json_file(path, config),
        folder / METRICS_FILE: lambda path: shutil.copyfile(running, path),
        **{folder / name: write for name, write in report.items()},
    })
    running.unlink(missing_ok=True)
    for name in REPORT_FILES:
        if name not in report and (name != CARD_FILE or owned_card(folder / name)):
            (folder / name).unlink(missing_ok=True)
    return list(report)
