"""This process in its group: joining it, who reports errors, and the Accelerator.

The launch check (common/train/launch_check.py), the heartbeats that name silent peers
(heartbeat.py) and the launcher watchdog (watchdog.py) are started from here.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.errors import ProcessError, UserError
from common.train.heartbeat import start_heartbeat
from common.train.launch_check import launcher_command_line, refuse_lost_processes, requested_device
from common.train.relaunch import start_missing_processes
from common.train.watchdog import watch_launcher

if TYPE_CHECKING:
    from common.train.run_plan import TrainPlan

_state: Any = None  # the PartialState of this process, once start_processes made it
_cpu: bool | None = None  # whether this run uses the CPU, once start_processes decided it

DEFAULT_TIMEOUT_S = 600


def use_cpu() -> bool:
    """Without CUDA, ask for the CPU backend ourselves: then a multi-process launch forms one
    gloo group instead of N processes that each believe they are alone. A launch whose config
    asks for the CPU gets it on a GPU machine too: Accelerate's multi-process launcher does not
    pass `use_cpu` on to its workers."""
    import torch

    return _cpu if _cpu is not None else not torch.cuda.is_available()


def no_gpu_notice() -> str:
    import torch

    return (f"No GPU here (torch {torch.__version__} finds no CUDA device): training on the CPU, although the "
            "launch's config asks for a GPU; check the driver and that torch is a CUDA build, or launch with "
            "accelerate_configs/cpu.yaml")


def start_processes(timeout_s: int = DEFAULT_TIMEOUT_S) -> Any:
    """Join the process group (a PartialState, which the Accelerator made later shares), then
    refuse the launch trap. From here on a user error is printed once per machine. A process that
    Accelerate started alone although several were asked for, without GPUs, starts them instead
    (common/train/relaunch.py) and exits with their code.

    A process of a multi-process run says where it waits for the others and for how long, gives
    up after `timeout_s` with one line, and stops by itself when its launcher is gone."""
    global _state, _cpu
    from datetime import timedelta

    import torch
    from accelerate import PartialState

    launcher = launcher_command_line()
    world = int(os.environ.get("WORLD_SIZE", "1"))  # the launcher's word, before any group exists
    if world == 1:
        start_missing_processes(launcher)
    device = requested_device(launcher)
    _cpu = device == "cpu" or not torch.cuda.is_available()
    where = f"{os.environ.get('MASTER_ADDR', 'localhost')}:{os.environ.get('MASTER_PORT', '?')}"
    if world > 1:
        watch_launcher(os.getppid())
        if os.environ.get("LOCAL_RANK", "0") == "0":
            print(f"Waiting for {world} processes at {where} (up to {timeout_s} s)", flush=True)
    try:
        _state = PartialState(cpu=_cpu, timeout=timedelta(seconds=timeout_s))
    except (RuntimeError, ValueError) as err:  # torch's DistStoreError and gloo's timeouts are RuntimeErrors
        raise UserError(f"the {world} processes did not all meet at {where} within {timeout_s} s "
                        f"({str(err).splitlines()[0][:160]}): start the launch on every machine with the same "
                        "address and port, or raise --timeout") from None
    refuse_lost_processes(_state.num_processes, launcher)
    if device == "gpu" and not torch.cuda.is_available() and _state.is_local_main_process:
        print(no_gpu_notice(), flush=True)  # a mistyped driver install should not show only as a slow run
    if world > 1:
        start_heartbeat(_state.process_index, _state.num_processes)
    return _state


def reports(err: UserError) -> bool:
    """Whether this process prints `err`. Errors that every process meets alike (settings, the
    data set, the plan) are printed by each machine's main process; a ProcessError (this
    process's own files) by the process that met it."""
    return _state is None or isinstance(err, ProcessError) or bool(_state.is_local_main_process)


def seconds_since_start() -> float:
    """Wall time since this process started: interpreter, imports, data and set-up included."""
    import time

    try:
        import psutil

        return time.time() - psutil.Process().create_time()
    except Exception:  # no psutil, or no process table: unknown
        return float("nan")


def local_process_count(state: Any) -> int:
    """Processes on this machine, which share its cores (torch's launcher says how many)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", state.num_processes))


MEMINFO = Path("/proc/meminfo")


def free_memory() -> int | None:
    """Bytes the machine can still give: Linux's MemAvailable plus free swap; None elsewhere."""
    try:
        fields = dict(line.split(":", 1) for line in MEMINFO.read_text().splitlines() if ":" in line)
        return sum(int(fields[name].split()[0]) * 1024 for name in ("MemAvailable", "SwapFree"))
    except (OSError, KeyError, ValueError, IndexError):
        return None


def least_free_memory(state: Any) -> int | None:
    """The free host memory of the process that found least, the same figure on every process so
    that all judge the plan alike (common/train/run_plan.check_fits); None on a GPU, where the
    weights live in the device's memory, or where any process cannot tell."""
    if state.device.type != "cpu":
        return None
    free = free_memory()
    if state.num_processes == 1:
        return free
    import torch
    import torch.distributed as dist

    least = torch.tensor([-1 if free is None else free], dtype=torch.int64)
    dist.all_reduce(least, op=dist.ReduceOp.MIN)
    return None if int(least) < 0 else int(least)


def require_one_data_set(path: str, identity: str, state: Any) -> None:
    """Every process trains on the same data set. Machines each read their own copy at the same
    path, and a stale or other copy on one of them trained one model on two tables without a
    word: their content identities (common/data/dataset.content_identity, a hash) are compared
    here, in one collective of four numbers on the group's device (NCCL takes CUDA tensors only)."""
    if state.num_processes == 1:
        return
    import torch
    import torch.distributed as dist

    # the hash as whole numbers of 32 bits (in int64), then their negatives: one MAX gives each
    # number's largest and smallest value over the processes, equal where every process's is
    words = [int(identity[i:i + 8], 16) for i in range(0, 16, 8)] if re.fullmatch(r"[0-9a-f]{16}", identity) \
        else [-1, -1]
    bounds = torch.tensor(words + [-w for w in words], dtype=torch.int64, device=state.device)
    dist.all_reduce(bounds, op=dist.ReduceOp.MAX)
    if bounds[:2].tolist() != (-bounds[2:]).tolist():
        raise UserError(f"the processes read different data sets at --data {path}: a machine holds "
                        "another version there; give every machine the same copy (make_data.py's folder as made "
                        "once), then start again")


def make_accelerator(plan: TrainPlan) -> Any:
    from accelerate import Accelerator

    # The scheduler is stepped by hand once per optimizer step, whatever the process count.
    # Trackers go through the Accelerator's constructor: one created earlier would make a second
    # "main" process on CPU.
    return Accelerator(cpu=use_cpu(), gradient_accumulation_steps=plan.batches.grad_accum,
                       step_scheduler_with_optimizer=False, log_with=list(plan.run.log_with) or None,
                       project_dir=plan.run.ckpt_dir)
