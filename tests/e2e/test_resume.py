"""Checkpoints, resume, early stopping and the NaN stop."""
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from builders import (
    ROOT,
    make_data,
    people,
    read_config,
    read_metrics,
    script_env,
    train,
    train_args,
    user_error,
    write,
)
from safetensors.torch import load_file

import train as train_script
from common.data.dataset import load_dataset
from common.serve.predict import load_model_dir, model_outputs


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
@pytest.mark.e2e
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
    keys = ("best_epoch", "best_val_loss", "weights", "final_metrics")
    assert [read_config(tmp_path / "cut")[k] for k in keys] == [read_config(tmp_path / "whole")[k] for k in keys]
    kept = sorted(p.name for p in (tmp_path / "cut" / "checkpoints").iterdir())
    assert kept == ["epoch_000021", "epoch_000023"]  # the last --keep-checkpoints


def test_interrupted_saves_are_never_taken_for_checkpoints(small_cls, tmp_path, capsys):
    extra = ["--epochs", "4", "--checkpoint-every", "2", "--batch-size", "256"]
    train(*train_args(small_cls, tmp_path, *extra))
    root = tmp_path / "checkpoints"
    # What a crash mid-save or mid-delete leaves: a staging or discarded folder, or a folder
    # without its state file.
    for leftover in (".epoch_000009.tmp", ".epoch_000001.old"):
        (root / leftover).mkdir()
        (root / leftover / "model.safetensors").write_bytes(b"half")
    (root / "epoch_000008").mkdir()
    (root / "epoch_000008" / "model.safetensors").write_bytes(b"half")
    capsys.readouterr()
    train(*train_args(small_cls, tmp_path, *extra, "--resume"))
    out = capsys.readouterr().out
    assert "epoch_000003" in out and "continuing at epoch 4" in out
    assert not (root / ".epoch_000009.tmp").exists() and not (root / ".epoch_000001.old").exists()


def test_resume_refuses_other_settings(small_cls, tmp_path):
    extra = ["--epochs", "2", "--checkpoint-every", "1", "--batch-size", "256"]
    train(*train_args(small_cls, tmp_path, *extra))
    before = (tmp_path / "model.safetensors").read_bytes()
    message = user_error(train_script.main, *train_args(small_cls, tmp_path, *extra, "--lr", "0.5", "--resume"))
    assert "lr: 0.001 -> 0.5" in message
    message = user_error(train_script.main, *train_args(small_cls, tmp_path, *extra, "--epochs", "3", "--resume"))
    assert "epochs: 2 -> 3" in message and "optimizer_steps" in message
    # Run-only settings may change.
    train(*train_args(small_cls, tmp_path, "--epochs", "2", "--batch-size", "256", "--checkpoint-every", "5",
                      "--keep-checkpoints", "1", "--threads", "1", "--resume"))
    # A fresh run must not silently mix with or delete the earlier run's checkpoints.
    assert "--resume" in user_error(train_script.main, *train_args(small_cls, tmp_path, *extra))
    assert "no checkpoint" in user_error(train_script.main, *train_args(small_cls, tmp_path / "new", "--resume"))
    assert (tmp_path / "model.safetensors").read_bytes() == before


def test_early_stopping_keeps_the_best_weights(small_val, tmp_path):
    # A large learning rate makes the validation loss wander, so patience runs out early.
    train(*train_args(small_val, tmp_path, "--epochs", "60", "--eval-every", "1", "--patience", "3",
                      "--lr", "0.3", "--batch-size", "64"))
    records = read_metrics(tmp_path)
    losses = [r["val_loss"] for r in records]
    best = int(np.argmin(losses))
    config = read_config(tmp_path)
    assert len(records) < 60                       # it stopped early ...
    assert len(records) - 1 - best == 3            # ... after exactly `patience` evaluations without progress
    assert config["best_epoch"] == records[best]["epoch"] and config["weights"] == "best"
    assert config["final_metrics"] == records[best]  # the saved weights' figures, not the last epoch's
    # The saved weights are the best epoch's: they reproduce its validation and test losses.
    data = load_dataset(small_val)
    record, model = load_model_dir(tmp_path)
    for split in ("val", "test"):
        X, y = data.split(split)
        logits = torch.from_numpy(model_outputs(model, X, 4096, record))
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(np.array(y))).item()
        assert loss == pytest.approx(records[best][f"{split}_loss"], rel=1e-5)


def test_patience_needs_validation_rows(small_cls, tmp_path):
    message = user_error(train_script.main, *train_args(small_cls, tmp_path, "--patience", "3"))
    assert "--val-size" in message and not tmp_path.joinpath("metrics.jsonl").exists()


def test_nan_loss_stops_and_keeps_what_was_saved(reg_data, tmp_path):
    train(*train_args(reg_data, tmp_path, "--epochs", "2"))
    before = (tmp_path / "model.safetensors").read_bytes()
    config_before = (tmp_path / "config.json").read_text()
    message = user_error(train_script.main, *train_args(reg_data, tmp_path, "--epochs", "50", "--lr", "3",
                                                        "--checkpoint-every", "1"))
    assert "diverged" in message and "epoch" in message
    bad_epoch = int(message.split(" in epoch ")[1].split(";")[0])
    assert bad_epoch > 0
    assert (tmp_path / "model.safetensors").read_bytes() == before
    assert (tmp_path / "config.json").read_text() == config_before
    last_good = tmp_path / "checkpoints" / f"epoch_{bad_epoch - 1:06d}"
    assert all(torch.isfinite(t).all() for t in load_file(str(last_good / "model.safetensors")).values())


@pytest.mark.parametrize("small,accum,big", [("100", "2", "200"), ("300", "2", "600"), ("150", "3", "450")])
def test_gradient_accumulation_equals_a_larger_batch(reg_data, tmp_path, small, accum, big):
    """800 rows: accumulated batches are one larger batch, step for step, also where the
    epoch's last group is short (300+300 | 200 against 600 | 200; 150x3 | 150+50 against 450 | 350)."""
    common = ["--epochs", "5", "--optimizer", "sgd", "--lr", "0.05"]
    train(*train_args(reg_data, tmp_path / "acc", *common, "--batch-size", small, "--grad-accum", accum))
    train(*train_args(reg_data, tmp_path / "big", *common, "--batch-size", big))
    a = load_file(str(tmp_path / "acc" / "model.safetensors"))
    b = load_file(str(tmp_path / "big" / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


def test_init_weights_of_another_shape_name_the_settings_to_change(small_cls, tmp_path):
    train(*train_args(small_cls, tmp_path / "a", "--epochs", "1", "--hidden", "8"))
    message = user_error(train_script.main, *train_args(small_cls, tmp_path / "b", "--epochs", "1",
                                                        "--init-from", tmp_path / "a" / "model.safetensors"))
    assert "do not match the model" in message and "--hidden" in message


def test_resuming_a_finished_run_says_so(small_cls, tmp_path, capsys):
    extra = ["--epochs", "2", "--checkpoint-every", "1", "--batch-size", "512"]
    train(*train_args(small_cls, tmp_path, *extra))
    before = (tmp_path / "model.safetensors").read_bytes()
    capsys.readouterr()
    train(*train_args(small_cls, tmp_path, *extra, "--resume"))
    assert "had finished: nothing left to train" in capsys.readouterr().out
    assert (tmp_path / "model.safetensors").read_bytes() == before


@pytest.mark.e2e
def test_a_killed_cross_fitted_run_resumes_to_bit_identical_weights(tmp_path):
    """The users' default: five members, their folds, the best out-of-fold F1 so far and the
    cosine schedule all travel in the checkpoint."""
    write(tmp_path / "people.csv", people(rows=600))
    make_data("--csv", tmp_path / "people.csv", "--target", "label", "--out-dir", tmp_path)
    args = ["--data", str(tmp_path / "people"), "--epochs", "12", "--checkpoint-every", "2"]
    train(*args, "--ckpt-dir", tmp_path / "whole")
    kill_after_checkpoint([*args, "--ckpt-dir", str(tmp_path / "cut")], tmp_path / "cut", epoch=5)
    train(*args, "--ckpt-dir", tmp_path / "cut", "--resume")
    assert read_config(tmp_path / "whole")["model"]["members"] == 5
    weights = [(tmp_path / run / "model.safetensors").read_bytes() for run in ("cut", "whole")]
    assert weights[0] == weights[1]
    assert read_metrics(tmp_path / "cut") == read_metrics(tmp_path / "whole")
