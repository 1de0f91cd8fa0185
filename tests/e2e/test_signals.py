"""SIGTERM and Ctrl-C stop a run at a step boundary, save a checkpoint there, and say how to resume."""
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from builders import ROOT, accelerate_cli, launch, read_metrics, script_env, train

from common.errors import Stopped
from common.train.trainer import Trainer

ARGS = ["--epochs", "3", "--batch-size", "64", "--eval-every", "1", "--grad-accum", "2", "--lr-schedule", "cosine"]


def signal_after_batches(monkeypatch, batches: int, signum: int) -> None:
    """This process receives `signum` once `batches` batches have run: the moment is exact."""
    calls = []
    run_batch = Trainer._run_batch

    def counting(self, *args):
        run_batch(self, *args)
        calls.append(1)
        if len(calls) == batches:
            os.kill(os.getpid(), signum)

    monkeypatch.setattr(Trainer, "_run_batch", counting)


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_epoch_saves_that_step_and_resumes_bit_identically(small_val, tmp_path, monkeypatch,
                                                                         signum, code):
    data = ["--data", small_val, *ARGS]
    train(*data, "--ckpt-dir", tmp_path / "whole")
    signal_after_batches(monkeypatch, 66 + 23, signum)  # 66 steps an epoch: in epoch 1, inside a group of 2
    with pytest.raises(Stopped) as info:
        train(*data, "--ckpt-dir", tmp_path / "cut", "--save-on-signal")
    saved = tmp_path / "cut" / "checkpoints" / "epoch_000001_step_000024"
    assert info.value.exit_code == code and f"--resume (from {saved})" in str(info.value)
    assert "no model was saved" in str(info.value)
    monkeypatch.undo()
    train(*data, "--ckpt-dir", tmp_path / "cut", "--resume")
    whole = (tmp_path / "whole" / "model.safetensors").read_bytes()
    assert (tmp_path / "cut" / "model.safetensors").read_bytes() == whole
    assert read_metrics(tmp_path / "cut") == read_metrics(tmp_path / "whole")  # the cut epoch's loss too


def test_without_saving_a_signal_says_nothing_was_saved(small_val, tmp_path, monkeypatch):
    signal_after_batches(monkeypatch, 10, signal.SIGTERM)
    with pytest.raises(Stopped) as info:
        train("--data", small_val, *ARGS, "--ckpt-dir", tmp_path)
    assert "no checkpoint was written (--checkpoint-every N or --save-on-signal" in str(info.value)
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "model.safetensors").exists()


@pytest.mark.e2e
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


@pytest.mark.parametrize("script", ["make_data", "infer"])
def test_sigterm_while_a_script_writes_keeps_the_earlier_output_and_no_leftovers(script, small_model, small_cls,
                                                                                   tmp_path, monkeypatch, capsys):
    """SIGTERM arrives once the new output is staged, just before it would replace the earlier one."""
    import infer as infer_script
    import make_data as make_data_script
    from common import files
    from common.errors import run_cli

    if script == "make_data":
        shutil.copytree(small_cls, tmp_path / "cls_data")
        earlier = tmp_path / "cls_data"
        argv = ["--n-samples", "3000", "--out-dir", str(tmp_path)]
        main = make_data_script.main
    else:
        np.save(tmp_path / "rows.npy", np.load(small_cls / "X_test.npy")[:50])
        earlier = tmp_path / "pred.csv"
        earlier.write_text("earlier\n")
        argv = ["--ckpt-dir", str(small_model), "--input", str(tmp_path / "rows.npy"), "--output", str(earlier)]
        main = infer_script.main
    before = snapshot_of(earlier)
    seal = files._seal

    def sealed_then_terminated(path):
        seal(path)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(files, "_seal", sealed_then_terminated)
    with pytest.raises(SystemExit) as info:
        run_cli(lambda: main(argv))
    assert info.value.code == 143
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("stopped: SIGTERM received")
    assert snapshot_of(earlier) == before
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock")]


def snapshot_of(path):
    if path.is_dir():
        return {p.name: p.read_bytes() for p in path.iterdir()}
    return path.read_bytes()


@pytest.mark.e2e
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
