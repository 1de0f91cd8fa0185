"""Starting the processes that the launcher asked for and did not start (common/train/relaunch.py):
only on a CPU, only once, as multi_cpu.yaml would."""
from builders import ROOT
from common.train import relaunch


def test_a_group_is_started_here_only_where_the_launcher_lost_processes_on_a_cpu(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv(relaunch.STARTED_HERE, raising=False)
    asked = ["accelerate", "launch", "--num_processes", "3", "train.py"]
    assert relaunch.processes_to_start(asked, gpus=0) == 3
    assert relaunch.processes_to_start(asked, gpus=1) is None  # DDP wants a GPU a process: the refusal speaks
    assert relaunch.processes_to_start(["accelerate", "launch", "--num_processes", "1", "train.py"], gpus=0) is None
    assert relaunch.processes_to_start(["python", "train.py"], gpus=0) is None
    monkeypatch.setenv(relaunch.STARTED_HERE, "1")  # a process of the group started here: never again
    assert relaunch.processes_to_start(asked, gpus=0) is None
    monkeypatch.delenv(relaunch.STARTED_HERE)
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert relaunch.processes_to_start(asked, gpus=0) is None


def test_the_group_is_launched_as_multi_cpu_yaml_launches_it():
    command = relaunch.group_command(4, ["train.py", "--epochs", "2"], "bf16")
    i = command.index("accelerate.commands.launch")
    assert command[i + 1:] == ["--config_file", str(ROOT / "accelerate_configs" / "multi_cpu.yaml"),
                               "--num_processes", "4", "--main_process_port", "0", "--mixed_precision", "bf16",
                               "train.py", "--epochs", "2"]
