"""Train a small PyTorch model on a tabular data set, on any hardware Accelerate supports.

    python train.py                                                    # CPU, one process
    accelerate launch --config_file accelerate_configs/cpu.yaml train.py
    accelerate launch --config_file accelerate_configs/multi_cpu.yaml train.py   # 2 processes, gloo
    accelerate launch --config_file accelerate_configs/single_gpu.yaml train.py
    accelerate launch --config_file accelerate_configs/multi_gpu.yaml train.py   # 4 GPUs, DDP
    accelerate launch --config_file accelerate_configs/multi_node.yaml --machine_rank R train.py

The task comes from the data set (make_data.py); every setting left unset takes the recipe's
value for that task. Writes <ckpt-dir>/model.safetensors, config.json and metrics.jsonl, and
with --checkpoint-every N the full training state under <ckpt-dir>/checkpoints/ (--resume).
"""
from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from common.artifacts import (CONFIG_FILE, METRICS_FILE, MODEL_FILE, append_jsonl, load_weights, save_weights,
                              truncate_metrics, write_json)
from common.checkpoint import clear_staging, find_checkpoint, load_checkpoint, refuse_stale, save_checkpoint
from common.config import TrainConfig, parse_config, to_dict
from common.console import TrainingDisplay, console
from common.data import load_dataset
from common.errors import UserError, run_cli
from common.model import build_model, load_state, model_spec
from common.training import (BestTracker, Trainer, check_finite, cpu_threads, lighten_accelerate_step,
                             make_optimizer, make_scheduler, optimizer_steps_per_epoch, resolve_train_config,
                             run_record, scalar_settings, validate_train_config)


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    if cfg.log_with and importlib.util.find_spec(cfg.log_with) is None:
        raise UserError(f"--log-with {cfg.log_with} needs the {cfg.log_with} package: pip install {cfg.log_with}")
    # Without CUDA, ask for the CPU backend ourselves: then a multi-process launch forms one
    # gloo group instead of N processes that each believe they are alone (see README).
    # The scheduler is stepped by hand once per optimizer step, whatever the process count.
    # Trackers go through the Accelerator's constructor: one created earlier would make a second
    # "main" process on CPU.
    return Accelerator(cpu=not torch.cuda.is_available(), gradient_accumulation_steps=cfg.grad_accum,
                       step_scheduler_with_optimizer=False, log_with=cfg.log_with, project_dir=cfg.ckpt_dir)


def build(cfg: TrainConfig, data, accelerator: Accelerator):
    n_out = len(data.meta["class_labels"]) if data.task == "classification" else data.y_train.shape[1]
    spec = model_spec(data.X_train.shape[1], cfg.hidden, n_out, cfg.activation)
    set_seed(cfg.seed)  # the same initial weights on every process and every run
    model = build_model(spec)
    if cfg.init_from:
        load_state(model, load_weights(cfg.init_from), cfg.init_from)
    optimizer = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr)
    steps = cfg.epochs * optimizer_steps_per_epoch(len(data.X_train), cfg, accelerator.num_processes)
    scheduler = make_scheduler(cfg.lr_schedule, optimizer, steps)
    if scheduler is None:
        model, optimizer = accelerator.prepare(model, optimizer)
    else:
        model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    return spec, model, optimizer, scheduler


def settings(cfg: TrainConfig, accelerator: Accelerator) -> dict:
    """The resolved settings as recorded with a run and compared on --resume."""
    return {**to_dict(cfg), "data": str(Path(cfg.data).resolve()), "num_processes": accelerator.num_processes}


def start_epoch(cfg: TrainConfig, accelerator: Accelerator, best: BestTracker, metrics_path: Path) -> int:
    """0 for a fresh run; after the checkpoint's epoch for --resume (its later metrics are dropped)."""
    if cfg.resume:
        path = find_checkpoint(cfg.ckpt_dir, cfg.resume)
        start = load_checkpoint(accelerator, path, settings(cfg, accelerator), best)
        if accelerator.is_main_process:
            truncate_metrics(metrics_path, start - 1)
            console.print(f"Resumed from {path}: continuing at epoch {start}")
    else:
        if cfg.checkpoint_every:
            refuse_stale(cfg.ckpt_dir)
        start = 0
        if accelerator.is_main_process:
            metrics_path.parent.mkdir(parents=True, exist_ok=True)
            metrics_path.write_text("")  # a new run starts a new metrics log
    if accelerator.is_main_process:
        clear_staging(cfg.ckpt_dir)
    accelerator.wait_for_everyone()
    return start


def save(cfg, spec, data, accelerator: Accelerator, model, last: dict, best: BestTracker, timing: dict) -> None:
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        out = Path(cfg.ckpt_dir)
        weights = best.weights if best.weights is not None else accelerator.unwrap_model(model).state_dict()
        save_weights(out / MODEL_FILE, weights)
        write_json(out / CONFIG_FILE, run_record(cfg, spec, data, accelerator, last, best, timing))
        console.print(f"Saved: {out / MODEL_FILE}, {out / CONFIG_FILE}, {out / METRICS_FILE}")


def log_record(accelerator: Accelerator, metrics_path: Path, record: dict) -> None:
    if accelerator.is_main_process:
        append_jsonl(metrics_path, record)
    accelerator.log({k: v for k, v in record.items() if k != "epoch"}, step=record["epoch"])


def train(cfg: TrainConfig, accelerator: Accelerator) -> None:
    data = load_dataset(cfg.data)
    cfg = resolve_train_config(cfg, data.task)
    validate_train_config(cfg, len(data.X_train), accelerator.num_processes)
    spec, model, optimizer, scheduler = build(cfg, data, accelerator)
    local_procs = int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes))
    step_macs = cfg.batch_size * sum(p.numel() for p in model.parameters())
    torch.set_num_threads(cpu_threads(cfg.threads, local_procs, step_macs))
    lighten_accelerate_step()
    trainer, best = Trainer(accelerator, model, optimizer, scheduler, data, cfg), BestTracker(cfg.patience)
    metrics_path = Path(cfg.ckpt_dir) / METRICS_FILE
    first = start_epoch(cfg, accelerator, best, metrics_path)
    if cfg.log_with:
        accelerator.init_trackers(cfg.log_with, config=scalar_settings(settings(cfg, accelerator)))
    title = f"{data.task} on {accelerator.num_processes} process(es), {accelerator.device}"
    last, epochs_run, started = {}, 0, time.perf_counter()
    with TrainingDisplay(title, cfg.epochs, first, accelerator.is_main_process) as display:
        for epoch in range(first, cfg.epochs):
            train_loss = trainer.run_epoch(epoch)
            epochs_run += 1
            check_finite(train_loss, epoch)
            display.epoch_done(train_loss)
            stop = False
            if epoch % cfg.eval_every == 0 or epoch == cfg.epochs - 1:
                last = trainer.evaluate(epoch, train_loss)
                check_finite(last["test_loss"], epoch)
                display.add(last)
                log_record(accelerator, metrics_path, last)
                stop = best.update(last, model)
            if cfg.checkpoint_every and (epoch + 1) % cfg.checkpoint_every == 0:
                state = {"epoch": epoch, "settings": settings(cfg, accelerator), "best": best.state()}
                save_checkpoint(accelerator, cfg.ckpt_dir, epoch, state, cfg.keep_checkpoints, best)
            if stop:
                accelerator.print(f"Early stop after epoch {epoch}: best test loss {best.loss:.4f} at epoch {best.epoch}")
                break
    timing = {"epochs_run": epochs_run, "train_seconds": round(time.perf_counter() - started, 3)}
    save(cfg, spec, data, accelerator, model, last, best, timing)


def main(argv=None) -> None:
    cfg = parse_config(TrainConfig, argv, __doc__)
    accelerator = make_accelerator(cfg)
    train(cfg, accelerator)
    # The DDP model must be gone before the process group is: a DDP reducer outliving its gloo
    # group until interpreter exit aborts the process now and then ("terminate called without
    # an active exception"). train() has returned, so only the accelerator still holds it.
    accelerator.free_memory()
    accelerator.wait_for_everyone()
    accelerator.end_training()


if __name__ == "__main__":
    run_cli(main)
