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
    model = build_model(plan.model)
    if plan.init != RANDOM_INIT:
        load_state(model, load_weights(plan.init), plan.init,
                   fix="give --hidden (and --data) that build the model these weights came from")
    optimizer = make_optimizer(plan.optim, model.parameters())
    scheduler = make_scheduler(plan, optimizer)
    return accelerator.prepare(model, optimizer, scheduler)  # a None scheduler passes through


def train(plan: TrainPlan, data: TabularData, accelerator: Accelerator) -> None:
    torch.set_num_threads(plan.run.threads)
    with RunFolder(plan, accelerator) as folder, StopSignal(accelerator) as stop:
        trainer = Trainer(accelerator, *build(plan, accelerator), data, plan)
        best = BestTracker(plan.loop.patience, plan.loop.monitor, keep_best=plan.model.members > 0)
        start = folder.resume(trainer, best)
        accelerator.print(plan.describe())
        if plan.run.log_with:
            accelerator.init_trackers(TRACKER_PROJECT, config=scalar_settings(plan.as_dict()))
        if start.epoch >= plan.loop.epochs or best.stopped:
            accelerator.print(f"The run in {plan.run.ckpt_dir} had finished: nothing left to train")
        startup, started = round(seconds_since_start(), 3), time.perf_counter()  # a small table's time is start-up
        epochs_run = start.epoch
        title = f"{plan.task} on {plan.num_processes} process(es), {accelerator.device}"
        try:
            with TrainingDisplay(title, plan.loop.epochs, start.epoch, accelerator.is_main_process) as display:
                for epoch in range(start.epoch, plan.loop.epochs):
                    if best.stopped:  # an early stop; a run resumed after one only finishes
                        break
                    train_loss = trainer.run_epoch(epoch, start.first_step(epoch), stop)
                    if train_loss is None:  # a signal, mid-epoch
                        raise folder.stopped(stop, trainer)
                    epochs_run = epoch + 1
                    check_finite(train_loss, epoch)
                    display.epoch_done(train_loss)
                    if plan.loop.evaluates(epoch):
                        record = trainer.evaluate(epoch, train_loss)
                        check_finite(record[plan.loop.monitor], epoch)
                        display.add(record)
                        folder.add_record(record)
                        best.update(record, trainer.net)
                    folder.checkpoint_if_due(epoch)
                    if stop.agreed(0, boundary=True) and epochs_run < plan.loop.epochs and not best.stopped:
                        raise folder.stopped(stop, trainer)
        except KeyboardInterrupt:  # a second Ctrl-C, which does not wait for the step to end
            raise folder.interrupted(trainer.epoch) from None
        report_stop(plan.loop.monitor, best, accelerator)
        outcome = best.outcome(epochs_run, startup, round(time.perf_counter() - started, 3))
        folder.commit(best.final_weights(trainer.net), run_record(plan, data, accelerator, outcome))


def report_stop(monitor: str, best: BestTracker, accelerator: Accelerator) -> None:
    if best.stopped:
        accelerator.print(f"Early stop after epoch {best.last['epoch']}: best {monitor} "
                          f"{best.best_value():.4f} at epoch {best.epoch}")
    if best.weights is not None:
        accelerator.print(f"Kept the weights of epoch {best.epoch}, the best {monitor} ({best.best_value():.4f})")
    if best.best_was_first():
        accelerator.print(f"Warning: no evaluation after the first beat its {monitor}: the kept weights barely "
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
        raise lost_peers(err, plan.run.timeout) from None
    # The DDP model must be gone before the process group is: a DDP reducer outliving its gloo
    # group until interpreter exit aborts the process now and then ("terminate called without
    # an active exception"). train() has returned, so only the accelerator still holds it.
    accelerator.free_memory()
    accelerator.wait_for_everyone()
    accelerator.end_training()


if __name__ == "__main__":
    run_cli(main, reports=reports)
