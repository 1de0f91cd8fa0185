"""This process in its group (common/train/process_group.py): who prints an error."""
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
