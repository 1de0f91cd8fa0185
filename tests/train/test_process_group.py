"""This process in its group (common/train/process_group.py): who prints an error."""
from typing import Any

import pytest

from common.errors import ProcessError, UserError
from common.train import process_group as launch_module


def test_who_prints_an_error(monkeypatch):
    class State:
        is_local_main_process = False

    monkeypatch.setattr(launch_module, "_state", State())
    assert not launch_module.reports(UserError("the same on every process"))
    assert launch_module.reports(ProcessError("this process's own checkpoint file"))
    State.is_local_main_process = True
    assert launch_module.reports(UserError("the same on every process"))


def gpu_launch(config: str) -> list[str]:
    return ["/venv/bin/accelerate", "launch", "--config_file", f"accelerate_configs/{config}.yaml", "train.py"]


def test_a_gpu_config_on_a_machine_without_one_says_so_at_the_start(small_cls, tmp_path, monkeypatch, capsys):
    import torch

    from builders import read_config, train

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(launch_module, "launcher_command_line", lambda: gpu_launch("single_gpu"))
    train("--data", small_cls, "--ckpt-dir", tmp_path / "gpu", "--epochs", "1")
    said = capsys.readouterr().out
    assert "No GPU here" in said and "training on the CPU" in said and said.index("No GPU") < said.index("epoch")
    assert read_config(tmp_path / "gpu")["device"] == "cpu"
    monkeypatch.setattr(launch_module, "launcher_command_line", lambda: gpu_launch("cpu"))
    train("--data", small_cls, "--ckpt-dir", tmp_path / "cpu", "--epochs", "1")
    assert "No GPU" not in capsys.readouterr().out


class _State:
    def __init__(self, device: str, processes: int = 1):
        import torch

        self.device, self.num_processes = torch.device(device), processes


def test_the_free_memory_judged_is_the_hosts_on_cpu_and_none_on_a_gpu(tmp_path, monkeypatch):
    """A GPU run's weights live in the device's memory; one process reads its machine's alone."""
    from common.train import process_group

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 100 kB\nMemAvailable:    2048 kB\nSwapFree: 1024 kB\n")
    monkeypatch.setattr(process_group, "MEMINFO", meminfo)
    assert process_group.least_free_memory(_State("cpu")) == 3072 * 1024
    assert process_group.least_free_memory(_State("cuda:0")) is None
    meminfo.write_text("MemTotal: 100 kB\n")  # no MemAvailable (an old kernel): not judged
    assert process_group.least_free_memory(_State("cpu")) is None


def _data_set_check(rank: int, port: int, identity: str, said: Any) -> None:
    """One process of a two-process gloo group (forked, torch already imported): its verdict."""
    import types

    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        launch_module.require_one_data_set("data/t", identity, types.SimpleNamespace(num_processes=2))
        said.put((rank, "same"))
    except UserError as err:
        said.put((rank, str(err)))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("identities,verdict", [
    (("620b7be691891d3f", "620b7be691891d3f"), "same"),
    (("620b7be691891d3f", "620b7be691891d3e"), "the processes read different data sets at --data data/t"),
])
def test_machines_with_different_copies_of_the_data_set_are_refused_on_every_process(identities, verdict):
    """Two machines' copies at the same path, one stale: the run trained on both without a word."""
    import multiprocessing
    import socket

    import torch  # noqa: F401 - imported before the fork, as each launched process has it

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fork = multiprocessing.get_context("fork")
    said = fork.Queue()
    processes = [fork.Process(target=_data_set_check, args=(rank, port, identities[rank], said)) for rank in (0, 1)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(60)
    verdicts = dict(said.get(timeout=5) for _ in processes)
    assert all(v.startswith(verdict) for v in verdicts.values()) and sorted(verdicts) == [0, 1]
