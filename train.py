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
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from common.config import TrainConfig, parse_config
from common.console import TrainingDisplay
from common.data.dataset import TabularData, load_dataset
from common.errors import UserError, run_cli
from common.files import load_weights
from common.model import build_model, load_state
from common.train.early_stopping import BestTracker
from common.train.heartbeat import lost_peers
from common.train.optim import make_optimizer, make_scheduler
from common.train.process_group import (
    local_process_count,
    make_accelerator,
    reports,
    seconds_since_start,
    start_processes,
)
from common.train.run_context import RANDOM_INIT, find_context
from common.train.run_folder import RunFolder
from common.train.run_plan import TrainPlan, make_plan
from common.train.run_record import run_record, scalar_settings
from common.train.stop_signal import StopSignal
from common.train.trainer import Trainer, check_finite

TRACKER_PROJECT = "logs"  # trackers that write locally write under <ckpt-dir>/logs


def build(plan: TrainPlan, accelerator: Accelerator) -> tuple[Any, Any, Any]:
    set_seed(plan.seed)  # the same initial weights on every process and every run
    model = build_model(plan.model_spec())
    if plan.init != RANDOM_INIT:
        load_state(model, load_weights(plan.init), plan.init,
                   fix="give --hidden (and --data) that build the model these weights came from")
    optimizer = make_optimizer(plan.optimizer, model.parameters(), plan.lr, plan.weight_decay)
    scheduler = make_scheduler(plan, optimizer)
    return accelerator.prepare(model, optimizer, scheduler)  # a None scheduler passes through


def train(plan: TrainPlan, data: TabularData, accelerator: Accelerator) -> None:
    torch.set_num_threads(plan.threads)
    with RunFolder(plan, accelerator) as folder, StopSignal(accelerator) as stop:
        model, optimizer, scheduler = build(plan, accelerator)
        trainer = Trainer(accelerator, model, optimizer, scheduler, data, plan)
        best = BestTracker(plan.patience, plan.monitor, keep_best=plan.members > 0)
        accelerator.register_for_checkpointing(best)  # restored by folder.resume(), saved by each checkpoint
        done, step = folder.resume()  # epochs trained so far, and steps of the next (a checkpoint taken mid-epoch)
        if folder.partial:
            trainer.restore_partial(folder.partial)
        accelerator.print(plan.describe())
        if plan.log_with:
            accelerator.init_trackers(TRACKER_PROJECT, config=scalar_settings(plan.as_dict()))
        if done >= plan.epochs or best.stopped:
            accelerator.print(f"The run in {plan.ckpt_dir} had finished: nothing left to train")
        startup, started = round(seconds_since_start(), 3), time.perf_counter()  # a small table's time is start-up
        title = f"{plan.task} on {plan.num_processes} process(es), {accelerator.device}"
        try:
            with TrainingDisplay(title, plan.epochs, done, accelerator.is_main_process) as display:
                while done < plan.epochs and not best.stopped:  # a run resumed after an early stop only finishes
                    if not run_epoch(plan, trainer, best, display, folder, done, step, stop):
                        raise folder.stopped(stop, done, trainer.steps_done, trainer.partial())
                    done, step = done + 1, 0
                    if stop.agreed(0, boundary=True) and done < plan.epochs and not best.stopped:
                        raise folder.stopped(stop, done - 1, None, {})
        except KeyboardInterrupt:  # a second Ctrl-C, which does not wait for the step to end
            raise folder.interrupted(done) from None
        report_stop(plan, best, accelerator)
        outcome = best.outcome(done, startup, round(time.perf_counter() - started, 3))
        weights = best.weights if best.weights is not None else accelerator.unwrap_model(model).state_dict()
        folder.commit(weights, run_record(plan, data, accelerator, outcome))


def run_epoch(plan: TrainPlan, trainer: Trainer, best: BestTracker, display: TrainingDisplay, folder: RunFolder,
              epoch: int, first_step: int, stop: StopSignal) -> bool:
    """One epoch: train, evaluate when due, checkpoint when due; sets best.stopped when patience
    ends. False where a signal stopped it before its end."""
    train_loss = trainer.run_epoch(epoch, first_step, stop)
    if train_loss is None:
        return False
    check_finite(train_loss, epoch)
    display.epoch_done(train_loss)
    if epoch % plan.eval_every == 0 or epoch == plan.epochs - 1:
        record = trainer.evaluate(epoch, train_loss)
        check_finite(record[plan.monitor], epoch)
        display.add(record)
        folder.add_record(record)
        best.update(record, trainer.accelerator.unwrap_model(trainer.model))
    folder.checkpoint_if_due(epoch)
    return True


def report_stop(plan: TrainPlan, best: BestTracker, accelerator: Accelerator) -> None:
    if best.stopped:
        accelerator.print(f"Early stop after epoch {best.last['epoch']}: best {plan.monitor} "
                          f"{best.best_value():.4f} at epoch {best.epoch}")
    if best.weights is not None:
        accelerator.print(f"Kept the weights of epoch {best.epoch}, the best {plan.monitor} ({best.best_value():.4f})")
    if best.best_was_first():
        accelerator.print(f"Warning: no evaluation after the first beat its {plan.monitor}: the kept weights barely "
                          "trained; try a lower --lr, or more rows (--folds gives each member more of them)")


def main(argv: Sequence[str] | None = None) -> None:
    try:
        cfg, bad_arguments = parse_config(TrainConfig, argv, __doc__), None
    except UserError as err:  # reported once the process group can say which process reports
        cfg, bad_arguments = TrainConfig(), err
    state = start_processes(cfg.timeout)
    if bad_arguments:
        raise bad_arguments
    data = load_dataset(cfg.data)
    plan = make_plan(cfg, data, find_context(cfg, state.num_processes, local_process_count(state)))
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
