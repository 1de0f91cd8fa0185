"""The launch trap: `accelerate launch --num_processes N` that started fewer than N processes.

`accelerate launch --num_processes 4 train.py` starts four processes only where Accelerate sees
several GPUs (or is given --multi_gpu or a multi-process config). Elsewhere its simple launcher
runs the script once, with no error: a user who asked for 4 processes would silently train on
one, with a quarter of the global batch they planned for. That launcher sets no world size, but
its own command line, our parent process's, still holds the request.

Nothing here imports torch or Accelerate at module level: the check runs in every process.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from common.errors import UserError


def _option(argv: Sequence[str], *names: str) -> str | None:
    """The value of `--name V` or `--name=V` in a command line, the last one winning as in argparse."""
    value = None
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                value = argv[i + 1]
            elif arg.startswith(name + "="):
                value = arg.split("=", 1)[1]
    return value


def _launch_config(config_file: str | None) -> dict:
    """The launch's config file as parsed YAML (Accelerate's default one where none is named); {}
    where there is none or it cannot be read (Accelerate itself then says why)."""
    if config_file is None:
        try:
            from accelerate.commands.config import default_config_file
        except ImportError:
            return {}
        config_file = default_config_file
    try:
        import yaml

        with open(config_file) as fh:
            config = yaml.safe_load(fh)
    except (OSError, ValueError, ImportError):
        return {}
    return config if isinstance(config, dict) else {}


def launch_options(launcher_argv: Sequence[str]) -> list[str] | None:
    """The arguments after `launch` of an `accelerate launch` command line; None for another command."""
    argv = list(launcher_argv)
    launch_at = next((i for i, arg in enumerate(argv[:-1]) if Path(arg).name == "accelerate"
                      and argv[i + 1] == "launch"), None)
    if launch_at is None:  # Accelerate's second entry point, or the module run with -m
        launch_at = next((i for i, arg in enumerate(argv) if Path(arg).name == "accelerate-launch"
                          or arg == "accelerate.commands.launch"), None)
    return None if launch_at is None else argv[launch_at + 1:]


def requested_processes(launcher_argv: Sequence[str]) -> int | None:
    """How many processes an `accelerate launch` command line asks for; None for another command."""
    args = launch_options(launcher_argv)
    if args is None:
        return None
    value = _option(args, "--num_processes", "--num-processes")
    if value is not None:
        return int(value) if value.lstrip("-").isdigit() else None
    processes = _launch_config(_option(args, "--config_file", "--config-file")).get("num_processes")
    return processes if isinstance(processes, int) else None


def requested_device(launcher_argv: Sequence[str]) -> str | None:
    """"cpu" where an `accelerate launch` asks for the CPU (--cpu, or its config's `use_cpu: true`),
    "gpu" where its config file asks for an accelerator (`use_cpu: false`), None where nothing says
    (`python train.py`, or a launch without a config, which takes a GPU where there is one)."""
    args = launch_options(launcher_argv)
    if args is None:
        return None
    if "--cpu" in args:
        return "cpu"
    use_cpu = _launch_config(_option(args, "--config_file", "--config-file")).get("use_cpu")
    return None if use_cpu is None else "cpu" if use_cpu else "gpu"


# Device files a GPU driver makes (NVIDIA's, AMD ROCm's, WSL's GPU): with none, torch finds no GPU.
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/kfd", "/dev/dxg")


def surely_no_gpu() -> bool:
    """Linux without any GPU driver's device file: no GPU for torch, known without loading it."""
    return sys.platform.startswith("linux") and not any(os.path.exists(path) for path in GPU_DEVICE_FILES)


def gpu_count() -> int:
    """The GPUs torch can use; 0 without loading torch where surely_no_gpu says so."""
    if surely_no_gpu():
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def launcher_command_line() -> list[str]:
    try:
        import psutil

        parent = psutil.Process().parent()
        return parent.cmdline() if parent is not None else []
    except Exception:  # psutil missing or the parent gone: nothing to check against
        return []


def trap_message(requested: int, gpus: int, script: str = "train.py") -> str:
    """`script`: the script and its arguments, as the user gave them."""
    asked = f"`accelerate launch` was asked for {requested} processes but started 1"
    cpu_command = (f"`accelerate launch --multi_gpu --num_processes {requested} --main_process_port 0 {script}`, "
                   f"or `accelerate launch --config_file accelerate_configs/multi_cpu.yaml --num_processes "
                   f"{requested} {script}`")
    if gpus == 0:
        return f"{asked} (without GPUs it needs --multi_gpu or a multi-process config): run {cpu_command}"
    if gpus == 1:
        return (f"{asked} (this machine has one GPU, and DDP takes one GPU per process): train on it with "
                f"`python {script}`, or on the CPUs with CUDA_VISIBLE_DEVICES= and {cpu_command}")
    usable = min(requested, gpus)
    return (f"{asked} (DDP takes one GPU per process, and this machine has {gpus}): run `accelerate launch "
            f"--multi_gpu --num_processes {usable} {script}`")


def refuse_lost_processes(started: int, launcher_argv: Sequence[str]) -> None:
    """Stop before any work when the launch (`launcher_argv`) asked for N > 1 processes and `started` fewer."""
    requested = requested_processes(launcher_argv)
    if requested is not None and requested > started:
        import shlex

        raise UserError(trap_message(requested, gpu_count(), shlex.join(["train.py", *sys.argv[1:]])))
