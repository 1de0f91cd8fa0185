"""SIGTERM to a training process: it stops at a step boundary, saves a checkpoint there and says
how to resume in one line (to the launcher of two: test_distributed.py, which shares its run)."""
import os
import signal
import subprocess
import sys
import time

from builders import ROOT, script_env


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
