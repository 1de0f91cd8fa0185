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
from common.steps import Preprocessor

CPU_ONLY = script_env(CUDA_VISIBLE_DEVICES="")  # on a GPU machine too, these launches are about the CPU


def bare_launch(*args: str) -> list[str]:
    """`accelerate launch --num_processes 2 --main_process_port 0 train.py ...`, no config file."""
    return [accelerate_cli(), "launch", "--num_processes", "2", "--main_process_port", "0", "train.py", *args]


def no_config_env(tmp_path):
    return script_env(CUDA_VISIBLE_DEVICES="", HF_HOME=str(tmp_path / "hf"))  # no default accelerate config


def test_accelerate_launch_num_processes_2_on_a_cpu_starts_2_as_the_working_command_does(small_cls, tmp_path):
    """The bare `--num_processes 2` (train.py starts the group) and the command that forms a group
    of two without any config (`--multi_gpu`): two processes each, the same weights."""
    args = ["--data", str(small_cls), "--epochs", "1"]
    proc = run_script(*bare_launch(*args, "--ckpt-dir", str(tmp_path / "bare")), env=no_config_env(tmp_path))
    assert read_config(tmp_path / "bare")["num_processes"] == 2 and "2 process(es)" in proc.stdout
    assert "Traceback" not in proc.stderr and "error:" not in proc.stderr, proc.stderr
    proc = run_script(accelerate_cli(), "launch", "--multi_gpu", "--num_processes", "2", "--main_process_port", "0",
                      "train.py", *args, "--ckpt-dir", str(tmp_path / "multi_gpu"), env=no_config_env(tmp_path))
    assert read_config(tmp_path / "multi_gpu")["num_processes"] == 2 and "2 process(es)" in proc.stdout
    weights = (tmp_path / "multi_gpu" / "model.safetensors").read_bytes()
    assert (tmp_path / "bare" / "model.safetensors").read_bytes() == weights


def test_an_error_in_the_group_started_here_is_one_line_and_no_traceback_of_ours(small_cls, tmp_path):
    proc = run_script(*bare_launch("--data", str(small_cls), "--ckpt-dir", str(tmp_path / "bad"), "--lr", "-1"),
                      check=False, env=no_config_env(tmp_path))
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and errors == ["error: --lr must be a positive number, got -1.0"], proc.stderr
    # torch's and Accelerate's launchers add tracebacks of their own; none passes through our files.
    assert f'File "{ROOT}' not in proc.stderr and 'File "train.py' not in proc.stderr, proc.stderr
    assert not (tmp_path / "bad").exists()


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


def test_a_bad_argument_in_a_group_of_two_is_reported_once(small_cls, tmp_path):
    """The shipped config's two processes both meet the unparsable argument; one line says so.
    (A bad value of a parsed argument, in a group started here: test_an_error_in_the_group_started_here...)"""
    proc = launch("multi_cpu", "--data", str(small_cls), "--ckpt-dir", str(tmp_path / "bad"), "--epochs", "x",
                  check=False, env=CPU_ONLY)
    errors = [text for text in proc.stderr.splitlines() if text.startswith("error:")]
    assert proc.returncode != 0 and errors == ["error: argument --epochs: invalid int value: 'x' (see --help)"], \
        proc.stderr
    assert not (tmp_path / "bad").exists()


def test_more_processes_than_training_rows(tmp_path):
    one_row = TabularData(np.zeros((1, 2), np.float32), np.zeros(1, np.int64), np.zeros((2, 2), np.float32),
                          np.zeros(2, np.int64), dataset_meta("classification", Preprocessor.all_numeric(
                              ["a", "b"], [0, 0], [1, 1]), [0, 1], None, {"train": 1, "val": 0, "test": 2},
                              [], {}))
    save_dataset(one_row, tmp_path / "one")
    proc = launch("multi_cpu", "--data", str(tmp_path / "one"), "--ckpt-dir", str(tmp_path / "run"), check=False)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: 2 processes but only 1 training rows: launch fewer processes"]  # once, not per process
    assert not (tmp_path / "run" / "model.safetensors").exists()
