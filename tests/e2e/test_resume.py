"""A run killed (SIGKILL) right after a checkpoint resumes to the weights and metrics of a run
never stopped: the recipe's settings, and a user's table with its cross-fitted members."""
import signal
import subprocess
import sys
import time

import pytest

from builders import ROOT, make_data, people, read_config, read_metrics, script_env, train, train_args, write


def kill_after_checkpoint(args, ckpt, epoch, timeout=120):
    """Start train.py, SIGKILL it as soon as the checkpoint of `epoch` is committed."""
    proc = subprocess.Popen([sys.executable, "train.py", *args], cwd=ROOT, env=script_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = ckpt / "checkpoints" / f"epoch_{epoch:06d}" / "trainer_state.json"
    deadline = time.monotonic() + timeout
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"


@pytest.mark.parametrize("schedule,accum,patience,order", [
    ("cosine", "3", "0", ["--shuffle", "rows"]),
    ("step", "1", "20", ["--shuffle", "blocks", "--chunk-rows", "100"]),  # many gathers from the mapped file
])
def test_killed_run_resumes_to_bit_identical_weights(small_val, tmp_path, schedule, accum, patience, order, capsys):
    extra = ["--epochs", "24", "--batch-size", "32", "--eval-every", "3", "--checkpoint-every", "2",
             "--lr-schedule", schedule, "--grad-accum", accum, "--keep-checkpoints", "2", "--patience", patience,
             *order]
    train(*train_args(small_val, tmp_path / "whole", *extra))
    kill_after_checkpoint(train_args(small_val, tmp_path / "cut", *extra), tmp_path / "cut", epoch=7)
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    capsys.readouterr()
    train(*train_args(small_val, tmp_path / "cut", *extra, "--resume"))
    assert "Resumed from" in capsys.readouterr().out
    whole = (tmp_path / "whole" / "model.safetensors").read_bytes()
    assert (tmp_path / "cut" / "model.safetensors").read_bytes() == whole
    epochs = [r["epoch"] for r in read_metrics(tmp_path / "cut")]
    assert epochs == [r["epoch"] for r in read_metrics(tmp_path / "whole")] == [0, 3, 6, 9, 12, 15, 18, 21, 23]
    assert read_metrics(tmp_path / "cut") == read_metrics(tmp_path / "whole")
    # The best-so-far record travelled inside the checkpoint: both runs agree on it.
    keys = ("best", "weights", "final_metrics")
    assert [read_config(tmp_path / "cut")["outcome"][k] for k in keys] == \
        [read_config(tmp_path / "whole")["outcome"][k] for k in keys]
    kept = sorted(p.name for p in (tmp_path / "cut" / "checkpoints").iterdir())
    assert kept == ["epoch_000021", "epoch_000023"]  # the last --keep-checkpoints


def test_a_killed_cross_fitted_run_resumes_to_bit_identical_weights(tmp_path):
    """The users' default: five members, their folds, the best out-of-fold F1 so far and the
    cosine schedule all travel in the checkpoint; so does a leg begun where the best came late,
    killed right at its start (the checkpoint of the planned run's last epoch)."""
    write(tmp_path / "people.csv", people(rows=1200))
    make_data("--csv", tmp_path / "people.csv", "--target", "label", "--out-dir", tmp_path)
    args = ["--data", str(tmp_path / "people"), "--epochs", "3", "--extend-epochs", "8", "--checkpoint-every", "1",
            "--batch-size", "100"]
    train(*args, "--ckpt-dir", tmp_path / "whole")
    kill_after_checkpoint([*args, "--ckpt-dir", str(tmp_path / "cut")], tmp_path / "cut", epoch=2)
    train(*args, "--ckpt-dir", tmp_path / "cut", "--resume")
    assert read_config(tmp_path / "whole")["model"]["members"] == 5
    weights = [(tmp_path / run / "model.safetensors").read_bytes() for run in ("cut", "whole")]
    assert weights[0] == weights[1]
    assert read_metrics(tmp_path / "cut") == read_metrics(tmp_path / "whole")
    assert [r["epoch"] for r in read_metrics(tmp_path / "whole")] == [0, 1, 2, 3, 4]  # a leg of 2 epochs ran
    assert [read_config(tmp_path / run)["outcome"]["legs"] for run in ("cut", "whole")] == [[2], [2]]
