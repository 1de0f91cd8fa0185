"""Train a small PyTorch model on a tabular data set, on any hardware Accelerate supports.

    python train.py                                                    # CPU, one process
    accelerate launch --config_file accelerate_configs/cpu.yaml train.py
    accelerate launch --config_file accelerate_configs/multi_cpu.yaml train.py   # 2 processes, gloo
    accelerate launch --config_file accelerate_configs/single_gpu.yaml train.py
    accelerate launch --config_file accelerate_configs/multi_gpu.yaml train.py   # 4 GPUs, DDP
    accelerate launch --config_file accelerate_configs/multi_node.yaml --machine_rank R train.py

The task comes from the data set (make_data.py); every setting left unset takes the recipe's
value for that task. Writes <ckpt-dir>/model.safetensors, config.json and metrics.jsonl.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from common.artifacts import CONFIG_FILE, METRICS_FILE, MODEL_FILE, append_jsonl, load_weights, save_weights, write_json
from common.config import TrainConfig, parse_config, to_dict
from common.console import EvalDisplay, console
from common.data import load_dataset
from common.errors import run_cli
from common.model import build_model, load_state, model_spec
from common.training import (Trainer, cpu_threads, library_versions, lighten_accelerate_step, make_optimizer,
                             resolve_train_config, validate_train_config)


def make_accelerator() -> Accelerator:
    # Without CUDA, ask for the CPU backend ourselves: then a multi-process launch forms one
    # gloo group instead of N processes that each believe they are alone (see README).
    return Accelerator(cpu=not torch.cuda.is_available())


def build(cfg: TrainConfig, data, accelerator: Accelerator):
    n_out = len(data.meta["class_labels"]) if data.task == "classification" else data.y_train.shape[1]
    spec = model_spec(data.X_train.shape[1], cfg.hidden, n_out, cfg.activation)
    set_seed(cfg.seed)  # the same initial weights on every process and every run
    model = build_model(spec)
    if cfg.init_from:
        load_state(model, load_weights(cfg.init_from), cfg.init_from)
    optimizer = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr)
    model, optimizer = accelerator.prepare(model, optimizer)
    return spec, model, optimizer


def run_config(cfg: TrainConfig, spec, data, accelerator: Accelerator, last: dict) -> dict:
    """Everything needed to rebuild and use the model, and to trace it to its settings."""
    keys = ("feature_names", "class_labels", "x_mean", "x_scale", "y_mean", "y_scale")
    return {
        "task": data.task, "model": spec, **{k: data.meta[k] for k in keys},
        "data": str(Path(cfg.data).resolve()), "training": to_dict(cfg),
        "num_processes": accelerator.num_processes, "distributed_type": str(accelerator.distributed_type),
        "mixed_precision": accelerator.mixed_precision, "device": str(accelerator.device),
        "final_metrics": last, "versions": library_versions(),
    }


def save(cfg: TrainConfig, spec, data, accelerator: Accelerator, model, last: dict) -> None:
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        out = Path(cfg.ckpt_dir)
        save_weights(out / MODEL_FILE, accelerator.unwrap_model(model).state_dict())
        write_json(out / CONFIG_FILE, run_config(cfg, spec, data, accelerator, last))
        console.print(f"Saved: {out / MODEL_FILE}, {out / CONFIG_FILE}, {out / METRICS_FILE}")


def train(cfg: TrainConfig, accelerator: Accelerator) -> None:
    data = load_dataset(cfg.data)
    cfg = resolve_train_config(cfg, data.task)
    validate_train_config(cfg, len(data.X_train), accelerator.num_processes)
    spec, model, optimizer = build(cfg, data, accelerator)
    local_procs = int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes))
    step_macs = cfg.batch_size * sum(p.numel() for p in model.parameters())
    torch.set_num_threads(cpu_threads(cfg.threads, local_procs, step_macs))
    lighten_accelerate_step()
    trainer = Trainer(accelerator, model, optimizer, data, cfg)
    metrics_path = Path(cfg.ckpt_dir) / METRICS_FILE
    if accelerator.is_main_process:
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        metrics_path.write_text("")  # a new run starts a new metrics log
    title = f"{data.task} on {accelerator.num_processes} process(es), {accelerator.device}"
    last: dict = {}
    with EvalDisplay(title, accelerator.is_main_process) as display:
        for epoch in range(cfg.epochs):
            trainer.run_epoch(epoch)
            if epoch % cfg.eval_every == 0 or epoch == cfg.epochs - 1:
                last = trainer.evaluate(epoch)
                display.add(last)
                if accelerator.is_main_process:
                    append_jsonl(metrics_path, last)
    save(cfg, spec, data, accelerator, model, last)


def main(argv=None) -> None:
    cfg = parse_config(TrainConfig, argv, __doc__)
    accelerator = make_accelerator()
    train(cfg, accelerator)
    # The DDP model must be gone before the process group is: a DDP reducer outliving its gloo
    # group until interpreter exit aborts the process now and then ("terminate called without
    # an active exception"). train() has returned, so only the accelerator still holds it.
    accelerator.free_memory()
    accelerator.wait_for_everyone()
    accelerator.end_training()


if __name__ == "__main__":
    run_cli(main)
