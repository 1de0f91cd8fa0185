"""What a run plan depends on besides the settings and the data set, looked up once at the edge.

`find_context` touches the world (the files the settings name, the checkpoint --resume means,
the machine's cores); `make_plan` (common/train/run_plan.py) then only computes, so it can be
called and tested with any context and reads no file.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from common.config import TrainConfig
from common.errors import UserError
from common.overlap import pinned_apart, usable_cores
from common.train.checkpoints import find_checkpoint

RANDOM_INIT = "random"


@dataclasses.dataclass(frozen=True)
class RunContext:
    """What the plan depends on besides the settings and the data set: the processes, the
    machine's cores, and the files the settings name. `find_context` looks them up (file I/O,
    the process group); `make_plan` then only computes."""
    num_processes: int
    sharing: int                   # processes sharing this one's cores: those on this machine, or 1 where
                                   # each is pinned to cores of its own (common/overlap.pinned_apart)
    cores: int                     # those this process may use (common/overlap.usable_cores)
    memory: int | None             # bytes the machine has free (MemAvailable and free swap); None: unknown
    data: str                      # the data set, as an absolute path
    init: str                      # RANDOM_INIT, or the absolute path of the weights to start from
    resume: str                    # the checkpoint folder --resume names; "" for a fresh run


def find_context(cfg: TrainConfig, num_processes: int, local_processes: int) -> RunContext:
    """The files the settings name, found and checked, and the process facts."""
    if cfg.init_from and not Path(cfg.init_from).is_file():
        raise UserError(f"--init-from {cfg.init_from}: no such file: pass a model.safetensors that train.py wrote")
    return RunContext(
        num_processes=num_processes, sharing=1 if pinned_apart() else local_processes, cores=usable_cores(),
        memory=free_memory(),
        data=str(Path(cfg.data).resolve()),
        init=str(Path(cfg.init_from).resolve()) if cfg.init_from else RANDOM_INIT,
        resume=str(find_checkpoint(cfg.ckpt_dir, cfg.resume)) if cfg.resume else "",
    )


MEMINFO = Path("/proc/meminfo")


def free_memory() -> int | None:
    """Bytes the machine can still give: Linux's MemAvailable plus free swap; None elsewhere."""
    try:
        fields = dict(line.split(":", 1) for line in MEMINFO.read_text().splitlines() if ":" in line)
        return sum(int(fields[name].split()[0]) * 1024 for name in ("MemAvailable", "SwapFree"))
    except (OSError, KeyError, ValueError, IndexError):
        return None
