"""SIGTERM to a training process, and to the launcher of two: each stops at a step boundary,
saves a checkpoint there, says how to resume in one line, and resumes bit for bit."""
import os
import shutil
import signal
import subprocess
import sys
import time

from builders import ROOT, accelerate_cli, launch, read_metrics, script_env


def test_sigterm_to_a_training_process_is_one_line_and_exit_143(small_cls, tmp_path):
    """What a batch scheduler sends before SIGKILL: the run stops within the grace period."""
    args = ["--data", small_cls, "--ckpt-dir", tmp_path, "--epochs", "100000", "--batch-size", "32",
            "--eval-every", "50", "--save-on-signal"]
    proc = subprocess.Popen([sys.executable, "train.py", *map(str, args)], cwd=ROOT, env=script_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (tmp_path / "metrics.running.jsonl").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 143 and "Traceback" not in stderr, stderr
    (line,) = stderr.strip().splitlines()
    assert line.startswith("stopped: SIGTERM ") and "--resume (from" in line
    saved = line.split("--resume (from ")[1].split(")")[0]
    assert (tmp_path / "checkpoints").is_dir() and os.path.isfile(os.path.join(saved, "trainer_state.json"))
    assert not list((tmp_path / "checkpoints").glob(".*"))  # no staging left behind


def test_sigterm_to_two_processes_then_resume_elsewhere_is_bit_identical(small_cls, tmp_path):
    """A preempted 2-process job: SIGTERM to the launcher at some moment of training, which passes
    it to both workers; they stop at the same step and save it. The job restarts with its data
    moved to another folder and resumes to the weights of a run never stopped."""
    import psutil

    data = tmp_path / "data"
    shutil.copytree(small_cls, data)
    args = ["--epochs", "4", "--batch-size", "16", "--eval-every", "1", "--save-on-signal"]
    launch("multi_cpu", "--data", str(data), "--ckpt-dir", str(tmp_path / "whole"), *args)
    cmd = [accelerate_cli(), "launch", "--config_file", "accelerate_configs/multi_cpu.yaml", "train.py",
           "--data", str(data), "--ckpt-dir", str(tmp_path / "cut"), *args]
    launcher = subprocess.Popen(cmd, cwd=ROOT, env=script_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "cut" / "metrics.running.jsonl").exists() and launcher.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # somewhere in epoch 0 or 1
    workers = [p for p in psutil.Process(launcher.pid).children(recursive=True) if "train.py" in " ".join(p.cmdline())]
    launcher.send_signal(signal.SIGTERM)
    _, stderr = launcher.communicate(timeout=60)
    assert launcher.returncode != 0
    lines = [line for line in stderr.splitlines() if line.startswith("stopped: SIGTERM")]
    assert len(lines) == 1 and "--resume (from" in lines[0], stderr[-3000:]
    psutil.wait_procs(workers, timeout=10)
    assert not [p for p in workers if p.is_running()]
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    moved = tmp_path / "scratch" / "data"
    shutil.move(data, moved)
    launch("multi_cpu", "--data", str(moved), "--ckpt-dir", str(tmp_path / "cut"), *args, "--resume")
    whole = (tmp_path / "whole" / "model.safetensors").read_bytes()
    assert (tmp_path / "cut" / "model.safetensors").read_bytes() == whole
    assert read_metrics(tmp_path / "cut") == read_metrics(tmp_path / "whole")
