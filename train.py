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
end, with what a person reads: importance.json (which columns matter), curves.png,
importance.png, confusion.png and README.md (a model card); with --checkpoint-every N the full
training state under <ckpt-dir>/checkpoints/. The run itself is common/train/session.py, which
the Python API (common/api.py) runs too.
"""
from __future__ import annotations

from common.errors import quiet_start

quiet_start(__name__)  # first: a Ctrl-C while the modules below load (seconds) is one line too

from common.train.relaunch import relaunch_before_loading

relaunch_before_loading(__name__)  # a bare `--num_processes N` on a CPU: the group started before torch loads

if __name__ == "__main__":
    import sys

    from common.figures import start_early

    start_early(sys.argv[1:])  # the pictures' process: matplotlib loads beside torch, not after it

from collections.abc import Sequence

from common.config import TrainConfig, parse_config
from common.errors import UserError, run_cli
from common.train.process_group import reports
from common.train.session import run_training


def main(argv: Sequence[str] | None = None) -> None:
    try:
        cfg, bad_arguments = parse_config(TrainConfig, argv, __doc__), None
    except UserError as err:  # reported once the process group can say which process reports
        cfg, bad_arguments = TrainConfig(), err
    run_training(cfg, bad_arguments)


if __name__ == "__main__":
    run_cli(main, reports=reports)
