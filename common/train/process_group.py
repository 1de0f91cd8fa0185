"""Starting train.py's processes: the launch trap, the process group, the Accelerator.

The trap: `accelerate launch --num_processes 4 train.py` starts four processes only where
Accelerate sees several GPUs (or is given --multi_gpu or a multi-process config). Elsewhere its
simple launcher runs the script once, with no error: a user who asked for 4 processes would
silently train on one, with a quarter of the global batch they planned for. That launcher
sets no world size, but its own command line, our parent process's, still holds the request.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.errors import ProcessError, UserError

if TYPE_CHECKING:
    from common.train.run_plan import TrainPlan

_state: Any = None  # the PartialState of this process, once start_processes made it


def use_cpu() -> bool:
    """Without CUDA, ask for the CPU backend ourselves: then a multi-process launch forms one
    gloo group instead of N processes that each believe they are alone."""
    import torch

    return not torch.cuda.is_available()


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


def _config_processes(config_file: str | None) -> int | None:
    if config_file is None:
        try:
            from accelerate.commands.config import default_config_file
        except ImportError:
            return None
        config_file = default_config_file
    try:
        import yaml

        with open(config_file) as fh:
            value = (yaml.safe_load(fh) or {}).get("num_processes")
    except (OSError, ValueError, AttributeError, ImportError):
        return None
    return value if isinstance(value, int) else None


def requested_processes(launcher_argv: Sequence[str]) -> int | None:
    """How many processes an `accelerate launch` command line asks for; None for another command."""
    argv = list(launcher_argv)
    launch_at = next((i for i, arg in enumerate(argv[:-1]) if Path(arg).name == "accelerate"
                      and argv[i + 1] == "launch"), None)
    if launch_at is None:  # Accelerate's second entry point, or the module run with -m
        launch_at = next((i for i, arg in enumerate(argv) if Path(arg).name == "accelerate-launch"
                          or arg == "accelerate.commands.launch"), None)
    if launch_at is None:
        return None
    args = argv[launch_at + 1:]
    value = _option(args, "--num_processes", "--num-processes")
    if value is not None:
        return int(value) if value.lstrip("-").isdigit() else None
    return _config_processes(_option(args, "--config_file", "--config-file"))


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


def refuse_lost_processes(started: int, launcher_argv: Sequence[str] | None = None) -> None:
    """Stop before any work when the launch asked for N > 1 processes and `started` fewer."""
    requested = requested_processes(launcher_command_line() if launcher_argv is None else launcher_argv)
    if requested is not None and requested > started:
        import shlex
        import sys

        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        raise UserError(trap_message(requested, gpus, shlex.join(["train.py", *sys.argv[1:]])))


DEFAULT_TIMEOUT_S = 600
LAUNCHER_CHECK_S = 1.0


def start_processes(timeout_s: int = DEFAULT_TIMEOUT_S) -> Any:
    """Join the process group (a PartialState, which the Accelerator made later shares), then
    refuse the launch trap. From here on a user error is printed once per machine.

    A process of a multi-process run says where it waits for the others and for how long, gives
    up after `timeout_s` with one line, and stops by itself when its launcher is gone."""
    global _state
    from datetime import timedelta

    from accelerate import PartialState

    world = int(os.environ.get("WORLD_SIZE", "1"))  # the launcher's word, before any group exists
    where = f"{os.environ.get('MASTER_ADDR', 'localhost')}:{os.environ.get('MASTER_PORT', '?')}"
    if world > 1:
        watch_launcher(os.getppid())
        if os.environ.get("LOCAL_RANK", "0") == "0":
            print(f"Waiting for {world} processes at {where} (up to {timeout_s} s)", flush=True)
    try:
        _state = PartialState(cpu=use_cpu(), timeout=timedelta(seconds=timeout_s))
    except (RuntimeError, ValueError) as err:  # torch's DistStoreError and gloo's timeouts are RuntimeErrors
        raise UserError(f"the {world} processes did not all meet at {where} within {timeout_s} s "
                        f"({str(err).splitlines()[0][:160]}): start the launch on every machine with the same "
                        "address and port, or raise --timeout") from None
    refuse_lost_processes(_state.num_processes)
    if world > 1:
        start_heartbeat(_state.process_index, _state.num_processes)
    return _state


HEARTBEAT_S = 1.0
_heartbeat: Heartbeat | None = None


class Heartbeat:
    """Each process of a multi-process run bumps a counter in the process group's key-value store
    every second, so that when a collective times out the survivors can name the processes (and
    machines) that went silent. The store is torch's default one, reached through a private
    function: where torch has moved it, runs go on without names (said in the message)."""

    def __init__(self, rank: int, world: int):
        import socket
        import threading

        import torch.distributed.distributed_c10d as c10d

        self.store: Any = c10d._get_default_store()
        self.world = world
        self.store.set(f"tabular/who/{rank}", f"{socket.gethostname()} (rank {rank}, pid {os.getpid()})")
        threading.Thread(target=self._beat, args=(rank,), name="heartbeat", daemon=True).start()

    def _beat(self, rank: int) -> None:
        import time

        while True:
            try:
                self.store.add(f"tabular/beat/{rank}", 1)
            except Exception:  # the store's machine is gone: nothing left to tell
                return
            time.sleep(HEARTBEAT_S)

    def silent(self) -> list[str]:
        """The processes whose counter did not move over three heartbeats."""
        import time

        def counts() -> list[int]:
            return [self.store.add(f"tabular/beat/{r}", 0) for r in range(self.world)]

        before = counts()
        time.sleep(3 * HEARTBEAT_S)
        after = counts()
        return [self.store.get(f"tabular/who/{r}").decode() for r in range(self.world) if after[r] == before[r]]


def start_heartbeat(rank: int, world: int) -> None:
    global _heartbeat
    try:
        _heartbeat = Heartbeat(rank, world)
    except Exception:  # torch moved its default store: no names in timeout messages
        _heartbeat = None


def silent_processes() -> str:
    if _heartbeat is None:
        return "which one is not known here"
    try:
        silent = _heartbeat.silent()
    except Exception:  # the store lives with the main process: it is the one that went
        return "the main process's machine, which holds the run's store, did not answer"
    return f"silent: {', '.join(silent)}" if silent else "all are answering again"


def lost_peers(err: RuntimeError, timeout_s: int) -> Exception:
    """A collective that timed out (a process stopped answering, a machine lost) or whose peer
    went away (it ended on an error of its own, which it reports) as one line; any other
    RuntimeError as it is."""
    text = str(err).lower()
    first = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
    if "timed out" in text or "timeout" in text:
        return UserError(f"a process stopped answering for {timeout_s} s ({silent_processes()}; {first}): check "
                         "that process and its machine, then --resume from the last checkpoint")
    if "connection closed by peer" in text or "connection reset" in text or "broken pipe" in text:
        return UserError(f"another process of the run has stopped ({first}); its own message says why")
    return err


def watch_launcher(launcher_pid: int) -> None:
    """Stop this worker within a second or two of its launcher's death (a job scheduler's
    kill -9 of the launcher's process group does not reach workers, which torch starts in
    sessions of their own): an orphan would train on, racing any resume in the same folder."""
    import sys
    import threading
    import time

    def watch() -> None:
        while os.getppid() == launcher_pid:
            time.sleep(LAUNCHER_CHECK_S)
        print(f"stopped: the launcher (pid {launcher_pid}) is gone; this worker (pid {os.getpid()}) stops too",
              file=sys.stderr, flush=True)
        os._exit(143)

    threading.Thread(target=watch, name="launcher-watch", daemon=True).start()


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


def make_accelerator(plan: TrainPlan) -> Any:
    from accelerate import Accelerator

    # The scheduler is stepped by hand once per optimizer step, whatever the process count.
    # Trackers go through the Accelerator's constructor: one created earlier would make a second
    # "main" process on CPU.
    return Accelerator(cpu=use_cpu(), gradient_accumulation_steps=plan.grad_accum,
                       step_scheduler_with_optimizer=False, log_with=list(plan.log_with) or None,
                       project_dir=plan.ckpt_dir)
