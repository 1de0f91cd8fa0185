"""`accelerate launch --num_processes N` starts N processes (or, on GPUs it cannot use, stops in one
line); errors print once."""
import contextlib
import signal
import subprocess
import time

import numpy as np
import psutil
import pytest
from builders import ROOT, accelerate_cli, launch, read_config, run_script, script_env

from common.data.dataset import TabularData, dataset_meta, save_dataset
from common.data.preprocess import Preprocessor
from common.errors import ProcessError, UserError
from common.train import process_group as launch_module
from common.train import relaunch
from common.train.launch_check import refuse_lost_processes, requested_processes, trap_message


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


def test_who_prints_an_error(monkeypatch):
    class State:
        is_local_main_process = False

    monkeypatch.setattr(launch_module, "_state", State())
    assert not launch_module.reports(UserError("the same on every process"))
    assert launch_module.reports(ProcessError("this process's own checkpoint file"))
    State.is_local_main_process = True
    assert launch_module.reports(UserError("the same on every process"))


CPU_ONLY = script_env(CUDA_VISIBLE_DEVICES="")  # on a GPU machine too, these launches are about the CPU


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


def bare_launch(*args: str) -> list[str]:
    """`accelerate launch --num_processes 2 --main_process_port 0 train.py ...`, no config file."""
    return [accelerate_cli(), "launch", "--num_processes", "2", "--main_process_port", "0", "train.py", *args]


def no_config_env(tmp_path):
    return script_env(CUDA_VISIBLE_DEVICES="", HF_HOME=str(tmp_path / "hf"))  # no default accelerate config


@pytest.mark.e2e
def test_accelerate_launch_num_processes_2_on_a_cpu_starts_2(small_cls, tmp_path):
    args = ["--data", str(small_cls), "--epochs", "2"]
    proc = run_script(*bare_launch(*args, "--ckpt-dir", str(tmp_path / "bare")), env=no_config_env(tmp_path))
    assert read_config(tmp_path / "bare")["num_processes"] == 2 and "2 process(es)" in proc.stdout
    assert "Traceback" not in proc.stderr and "error:" not in proc.stderr, proc.stderr
    launch("multi_cpu", *args, "--ckpt-dir", str(tmp_path / "yaml"), launcher_args=("--num_processes", "2"),
           env=CPU_ONLY)
    weights = (tmp_path / "yaml" / "model.safetensors").read_bytes()
    assert (tmp_path / "bare" / "model.safetensors").read_bytes() == weights


@pytest.mark.e2e
def test_an_error_in_the_group_started_here_is_one_line_and_no_traceback_of_ours(small_cls, tmp_path):
    proc = run_script(*bare_launch("--data", str(small_cls), "--ckpt-dir", str(tmp_path / "bad"), "--lr", "-1"),
                      check=False, env=no_config_env(tmp_path))
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and errors == ["error: --lr must be a positive number, got -1.0"], proc.stderr
    # torch's and Accelerate's launchers add tracebacks of their own; none passes through our files.
    assert f'File "{ROOT}' not in proc.stderr and 'File "train.py' not in proc.stderr, proc.stderr
    assert not (tmp_path / "bad").exists()


@pytest.mark.e2e
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_outer_launcher_leaves_no_process_behind(small_cls, tmp_path, signum):
    run = tmp_path / "run"
    args = ["--data", str(small_cls), "--ckpt-dir", str(run), "--epochs", "100000", "--batch-size", "32",
            "--eval-every", "50"]
    proc = subprocess.Popen(bare_launch(*args), cwd=ROOT, env=no_config_env(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    family: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 90
        while not (run / "metrics.running.jsonl").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        family = psutil.Process(proc.pid).children(recursive=True)
        assert len(family) >= 4  # train.py here, the group's launcher, its two workers
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=120)  # a loaded 2-core machine needs the headroom
        assert proc.returncode != 0
        _, alive = psutil.wait_procs(family, timeout=20)
        assert not alive, [p.cmdline() for p in alive]
    finally:  # a failed test leaves nothing running either
        for process in [*family, psutil.Process(proc.pid)] if proc.poll() is None else family:
            with contextlib.suppress(psutil.Error):
                process.kill()


@pytest.mark.e2e
def test_the_working_command_forms_a_group_of_two_and_reports_errors_once(small_cls, tmp_path):
    run = tmp_path / "run"
    proc = run_script(accelerate_cli(), "launch", "--multi_gpu", "--num_processes", "2", "--main_process_port", "0",
                      "train.py", "--data", str(small_cls), "--ckpt-dir", str(run), "--epochs", "1", env=CPU_ONLY)
    assert read_config(run)["num_processes"] == 2 and "2 process(es)" in proc.stdout
    for bad, line in ((["--lr", "-1"], "error: --lr must be a positive number, got -1.0"),
                      (["--epochs", "x"], "error: argument --epochs: invalid int value: 'x' (see --help)")):
        proc = launch("multi_cpu", "--data", str(small_cls), "--ckpt-dir", str(tmp_path / "bad"), *bad,
                      check=False, env=CPU_ONLY)
        errors = [text for text in proc.stderr.splitlines() if text.startswith("error:")]
        assert proc.returncode != 0 and errors == [line], proc.stderr
    assert not (tmp_path / "bad").exists()


@pytest.mark.e2e
def test_more_processes_than_training_rows(tmp_path):
    one_row = TabularData(np.zeros((1, 2), np.float32), np.zeros(1, np.int64), np.zeros((2, 2), np.float32),
                          np.zeros(2, np.int64), dataset_meta("classification", Preprocessor.all_numeric(
                              ["a", "b"], [0, 0], [1, 1]), [0, 1], (None, None), {"train": 1, "val": 0, "test": 2},
                              [], {}))
    save_dataset(one_row, tmp_path / "one")
    proc = launch("multi_cpu", "--data", str(tmp_path / "one"), "--ckpt-dir", str(tmp_path / "run"), check=False)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: 2 processes but only 1 training rows: launch fewer processes"]  # once, not per process
    assert not (tmp_path / "run" / "model.safetensors").exists()
