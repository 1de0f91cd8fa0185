"""Train a small PyTorch model on a tabular data set, on any hardware Accelerate supports.

    python train.py                                                    # CPU, one process
    accelerate launch --config_file accelerate_configs/cpu.yaml train.py
    accelerate launch --config_file accelerate_configs/multi_cpu.yaml train.py   # 2 processes, gloo
    accelerate launch --config_file accelerate_configs/single_gpu.yaml train.py
    accelerate launch --config_file accelerate_configs/multi_gpu.yaml train.py   # 4 GPUs, DDP
    accelerate launch --config_file accelerate_configs/multi_node.yaml --machine_rank R train.py

The task comes from the data set (make_data.py); a setting left unset takes the recipe's value
on the recipes' synthetic data and a value sized from the data on any other table (printed at
the start). Writes <ckpt-dir>/model.safetensors, config.json and metrics.jsonl together at the
end, and with --checkpoint-every N the full training state under <ckpt-dir>/checkpoints/.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from common.config import TrainConfig, parse_config
from common.console import TrainingDisplay, console
from common.data.dataset import TabularData, load_dataset
from common.errors import Interrupted, UserError, run_cli
from common.files import check_writable, load_weights
from common.model import build_model, load_state
from common.model_folder import CONFIG_FILE, METRICS_FILE, MODEL_FILE
from common.train.checkpoints import (
    check_checkpoint_root,
    check_same_epoch_everywhere,
    clear_staging,
    commits_checkpoints,
    complete_checkpoints,
    keep_a_copy_on_each_machine,
    read_state,
    refuse_stale,
    restore_checkpoint,
    run_lock,
    save_checkpoint,
)
from common.train.early_stopping import BestTracker
from common.train.optim import make_optimizer, make_scheduler
from common.train.process_group import (
    local_process_count,
    lost_peers,
    make_accelerator,
    reports,
    seconds_since_start,
    start_processes,
)
from common.train.run_folder import RunLog, clear_commit_leftovers, commit_run
from common.train.run_plan import RANDOM_INIT, TrainPlan, check_resumable, make_plan
from common.train.run_record import run_record, scalar_settings
from common.train.trainer import Trainer, check_finite

TRACKER_PROJECT = "logs"  # trackers that write locally write under <ckpt-dir>/logs


def build(plan: TrainPlan, accelerator: Accelerator) -> tuple[Any, Any, Any]:
    set_seed(plan.seed)  # the same initial weights on every process and every run
    model = build_model(plan.model_spec())
    if plan.init != RANDOM_INIT:
        load_state(model, load_weights(plan.init), plan.init,
                   fix="give --hidden (and --data) that build the model these weights came from")
    optimizer = make_optimizer(plan.optimizer, model.parameters(), plan.lr)
    scheduler = make_scheduler(plan, optimizer)
    return accelerator.prepare(model, optimizer, scheduler)  # a None scheduler passes through


def start_epoch(plan: TrainPlan, accelerator: Accelerator) -> tuple[int, RunLog]:
    """(0 for a fresh run, or the epoch after the checkpoint's for --resume; the run's log of evaluations)."""
    records: list[dict[str, Any]] = []
    if plan.resume:
        state = read_state(plan.resume)
        check_resumable(state["plan"], plan, plan.resume)
        check_same_epoch_everywhere(accelerator, state["epoch"], plan.resume)
        restore_checkpoint(accelerator, plan.resume)
        start, records = state["epoch"] + 1, state["metrics"]
        accelerator.print(f"Resumed from {plan.resume}: continuing at epoch {start}")
    else:
        refuse_stale(plan.ckpt_dir)  # with or without --checkpoint-every: never mix with an earlier run's
        if plan.checkpoint_every:
            check_checkpoint_root(plan.ckpt_dir)
        start = 0
    log = RunLog(plan.ckpt_dir, records, accelerator.is_main_process)
    if accelerator.is_main_process:
        clear_commit_leftovers(plan.ckpt_dir)
    if commits_checkpoints(accelerator):
        clear_staging(plan.ckpt_dir)
    accelerator.wait_for_everyone()
    return start, log


def save(plan: TrainPlan, data: TabularData, accelerator: Accelerator, model: Any, best: BestTracker,
         outcome: dict[str, Any]) -> None:
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        weights = best.weights if best.weights is not None else accelerator.unwrap_model(model).state_dict()
        commit_run(plan.ckpt_dir, weights, run_record(plan, data, accelerator, {**outcome, **best.summary()}))
        out = Path(plan.ckpt_dir)
        console.print(f"Saved: {out / MODEL_FILE}, {out / CONFIG_FILE}, {out / METRICS_FILE}")


def log_record(accelerator: Accelerator, log: RunLog, record: dict[str, Any]) -> None:
    log.add(record)
    accelerator.log({k: v for k, v in record.items() if k != "epoch"}, step=record["epoch"])


def train(plan: TrainPlan, data: TabularData, accelerator: Accelerator) -> None:
    check_writable(plan.ckpt_dir)  # every process: each writes its part of a checkpoint
    if keep_a_copy_on_each_machine(accelerator, plan.ckpt_dir):
        accelerator.print(f"{plan.ckpt_dir} is not shared between the machines: each keeps its own checkpoints")
    with run_lock(plan.ckpt_dir, accelerator):
        train_locked(plan, data, accelerator)


def train_locked(plan: TrainPlan, data: TabularData, accelerator: Accelerator) -> None:
    torch.set_num_threads(plan.threads)
    model, optimizer, scheduler = build(plan, accelerator)
    trainer = Trainer(accelerator, model, optimizer, scheduler, data, plan)
    best = BestTracker(plan.patience, plan.monitor)
    accelerator.register_for_checkpointing(best)
    first, log = start_epoch(plan, accelerator)
    accelerator.print(plan.describe())
    if plan.log_with:
        accelerator.init_trackers(TRACKER_PROJECT, config=scalar_settings(plan.as_dict()))
    if first >= plan.epochs or best.stopped:
        accelerator.print(f"The run in {plan.ckpt_dir} had finished: nothing left to train")
    title = f"{plan.task} on {plan.num_processes} process(es), {accelerator.device}"
    startup = round(seconds_since_start(), 3)  # what a small table's wall time is mostly made of
    done, started = first, time.perf_counter()  # done: epochs trained, before a resume too
    try:
        with TrainingDisplay(title, plan.epochs, first, accelerator.is_main_process) as display:
            while done < plan.epochs and not best.stopped:  # a run resumed after an early stop only finishes
                run_epoch(plan, accelerator, trainer, best, display, log, done)
                done += 1
    except KeyboardInterrupt:
        raise Interrupted(interrupted_where(plan, done)) from None
    if best.stopped:
        accelerator.print(f"Early stop after epoch {best.last['epoch']}: best {plan.monitor} {best.loss:.4f} at "
                          f"epoch {best.epoch}")
    if best.weights is not None:
        accelerator.print(f"Kept the weights of epoch {best.epoch}, the lowest {plan.monitor} ({best.loss:.4f})")
    outcome = {"final_metrics": best.final_metrics(), "epochs_run": done, "startup_seconds": startup,
               "train_seconds": round(time.perf_counter() - started, 3)}
    save(plan, data, accelerator, model, best, outcome)


def run_epoch(plan: TrainPlan, accelerator: Accelerator, trainer: Trainer, best: BestTracker,
              display: TrainingDisplay, log: RunLog, epoch: int) -> None:
    """One epoch: train, evaluate when due, checkpoint when due; sets best.stopped when patience ends."""
    train_loss = trainer.run_epoch(epoch)
    check_finite(train_loss, epoch)
    display.epoch_done(train_loss)
    if epoch % plan.eval_every == 0 or epoch == plan.epochs - 1:
        record = trainer.evaluate(epoch, train_loss)
        check_finite(record[plan.monitor], epoch)
        display.add(record)
        log_record(accelerator, log, record)
        best.update(record, accelerator.unwrap_model(trainer.model))
    if plan.checkpoint_every and (epoch + 1) % plan.checkpoint_every == 0:
        state = {"epoch": epoch, "plan": plan.as_dict(), "metrics": log.records}
        save_checkpoint(accelerator, plan.ckpt_dir, epoch, state, plan.keep_checkpoints)


def interrupted_where(plan: TrainPlan, epoch: int) -> str:
    found = complete_checkpoints(plan.ckpt_dir) if plan.checkpoint_every else []
    if found:
        return (f"interrupted in epoch {epoch}: continue with the same arguments and --resume (from {found[-1]}); "
                f"{plan.ckpt_dir} keeps the earlier run's model files")
    return (f"interrupted in epoch {epoch}, with no checkpoint to resume from (--checkpoint-every N keeps some); "
            f"{plan.ckpt_dir} keeps the earlier run's model files")


def main(argv: Sequence[str] | None = None) -> None:
    try:
        cfg, bad_arguments = parse_config(TrainConfig, argv, __doc__), None
    except UserError as err:  # reported once the process group can say which process reports
        cfg, bad_arguments = TrainConfig(), err
    state = start_processes(cfg.timeout)
    if bad_arguments:
        raise bad_arguments
    data = load_dataset(cfg.data)
    plan = make_plan(cfg, data, state.num_processes, local_process_count(state))
    accelerator = make_accelerator(plan)
    try:
        train(plan, data, accelerator)
    except RuntimeError as err:
        raise lost_peers(err, plan.timeout) from None
    # The DDP model must be gone before the process group is: a DDP reducer outliving its gloo
    # group until interpreter exit aborts the process now and then ("terminate called without
    # an active exception"). train() has returned, so only the accelerator still holds it.
    accelerator.free_memory()
    accelerator.wait_for_everyone()
    accelerator.end_training()


if __name__ == "__main__":
    run_cli(main, reports=reports)
