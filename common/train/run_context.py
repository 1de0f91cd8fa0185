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
from common.model_folder import MODEL_FILE
from common.overlap import processes_sharing, usable_cores
from common.train.checkpoints import find_checkpoint

RANDOM_INIT = "random"


@dataclasses.dataclass(frozen=True)
class RunContext:
    """What the plan depends on besides the settings and the data set: the processes, the
    machine's cores, and the files the settings name. `find_context` looks them up (file I/O,
    the process group); `make_plan` then only computes."""
    num_processes: int
    local_processes: int           # processes on this machine, which share its memory
    sharing: int                   # processes sharing this one's cores: those on this machine, or fewer where
                                   # each is pinned to a part of them (common/overlap.processes_sharing)
    cores: int                     # those this process may use (common/overlap.usable_cores)
    memory: int | None             # bytes free for the weights: the host's (the least any process of the run
                                   # found, so all judge alike), None on a GPU or where unknown
    data: str                      # the data set, as an absolute path
    init: str                      # RANDOM_INIT, or the absolute path of the weights to start from
    resume: str                    # the checkpoint folder --resume names; "" for a fresh run


def find_context(cfg: TrainConfig, num_processes: int, local_processes: int,
                 memory: int | None = None) -> RunContext:
    """The files the settings name, found and checked, and the process facts (`memory`: the
    caller's, agreed over the process group: common/train/process_group.least_free_memory)."""
    init = Path(cfg.init_from) / MODEL_FILE if cfg.init_from and Path(cfg.init_from).is_dir() else cfg.init_from
    if init and not Path(init).is_file():
        what = f"holds no {MODEL_FILE}" if cfg.init_from and Path(cfg.init_from).is_dir() else "no such file"
        raise UserError(f"--init-from {cfg.init_from}: {what}: pass a model folder or a model.safetensors that "
                        "train.py wrote")
    return RunContext(
        num_processes=num_processes, local_processes=local_processes,
        sharing=processes_sharing(local_processes), cores=usable_cores(), memory=memory,
        data=str(Path(cfg.data).resolve()),
        init=str(Path(init).resolve()) if init else RANDOM_INIT,
        resume=str(find_checkpoint(cfg.ckpt_dir, cfg.resume)) if cfg.resume else "",
    )

