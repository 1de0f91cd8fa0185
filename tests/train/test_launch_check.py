"""The launch trap (common/train/launch_check.py): `accelerate launch --num_processes N` that started
fewer than N processes is read from the launcher's command line and refused in one line that names a
command that works on this machine."""
import pytest

from common.errors import UserError
from common.train.launch_check import refuse_lost_processes, requested_device, requested_processes, trap_message


@pytest.mark.parametrize("argv,expected", [
    (["/usr/bin/python3", "/venv/bin/accelerate", "launch", "--num_processes", "4", "train.py"], 4),
    (["accelerate", "launch", "--num_processes=3", "train.py", "--epochs", "2"], 3),
    (["accelerate", "launch", "--num-processes", "2", "train.py"], 2),
    (["python", "-m", "accelerate.commands.launch", "--num_processes", "2", "train.py"], 2),
    (["/venv/bin/python3", "/venv/bin/accelerate-launch", "--num_processes", "2", "train.py"], 2),
    (["accelerate", "launch", "train.py"], None),  # no request, and no default config here
    (["bash", "-c", "python train.py"], None),     # not Accelerate's launcher
])
def test_the_launchers_request_is_read_from_its_command_line(argv, expected, monkeypatch):
    import accelerate.commands.config as config

    monkeypatch.setattr(config, "default_config_file", "/nonexistent/default_config.yaml")
    assert requested_processes(argv) == expected


def test_a_config_files_process_count_counts(tmp_path):
    (tmp_path / "c.yaml").write_text("distributed_type: 'NO'\nnum_processes: 3\n")
    assert requested_processes(["accelerate", "launch", "--config_file", str(tmp_path / "c.yaml"), "t.py"]) == 3


def test_one_process_where_several_were_asked_for_is_refused(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError) as info:
        refuse_lost_processes(1, ["accelerate", "launch", "--num_processes", "4", "train.py"])
    message = str(info.value)
    assert "asked for 4 processes but started 1" in message
    assert "--multi_gpu --num_processes 4" in message and "multi_cpu.yaml --num_processes 4" in message
    refuse_lost_processes(4, ["accelerate", "launch", "--num_processes", "4", "train.py"])  # they were started


@pytest.mark.parametrize("gpus,words", [(0, ["--multi_gpu --num_processes 4 --main_process_port 0"]),
                                        (1, ["one GPU", "`python train.py`", "CUDA_VISIBLE_DEVICES="]),
                                        (2, ["--multi_gpu --num_processes 2 train.py"]),
                                        (8, ["--multi_gpu --num_processes 4 train.py"])])
def test_the_refusal_names_a_command_that_works_on_this_machine(gpus, words):
    message = trap_message(4, gpus)
    assert all(word in message for word in words), message


@pytest.mark.parametrize("launch,expected", [
    (["--config_file", "accelerate_configs/single_gpu.yaml"], "gpu"),
    (["--config_file", "accelerate_configs/multi_gpu_bf16.yaml"], "gpu"),
    (["--config_file", "accelerate_configs/cpu.yaml"], "cpu"),
    (["--config_file", "accelerate_configs/multi_cpu.yaml"], "cpu"),  # a MULTI_GPU launch that asks for the CPU
    (["--cpu", "--num_processes", "2"], "cpu"),
    ([], None),  # no config: Accelerate takes a GPU where there is one, the CPU elsewhere
])
def test_the_device_a_launch_asks_for_is_read_from_its_config(launch, expected, monkeypatch):
    import accelerate.commands.config as config

    monkeypatch.setattr(config, "default_config_file", "/nonexistent/default_config.yaml")
    assert requested_device(["accelerate", "launch", *launch, "train.py"]) == expected
    assert requested_device(["python", "train.py"]) is None
