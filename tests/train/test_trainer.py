"""The recipe's research section: a Sigmoid MLP with Adam, and a network from raw tensors."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import train as train_script
from builders import make_data, read_config, read_metrics, train, train_args, user_error
from common.data.dataset import load_dataset

RESEARCH_DATA = ["--task", "regression", "--n-informative", "5", "--bias", "0", "--noise", "0.001"]


@pytest.fixture(scope="module")
def research_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("research")
    make_data(*RESEARCH_DATA, "--out-dir", out)
    return out / "reg_data"


def test_sigmoid_mlp_with_adam(reg_data, tmp_path):
    """(a) train.py --hidden 128 --activation sigmoid --optimizer adam --lr 1e-3 --batch-size 116."""
    train("--data", reg_data, "--ckpt-dir", tmp_path, "--hidden", "128", "--activation", "sigmoid",
          "--optimizer", "adam", "--lr", "1e-3", "--batch-size", "116")
    last = read_metrics(tmp_path)[-1]
    assert last["epoch"] == 400 and last["test_r2"] >= 0.99


def raw_network_sgd(X, y, params, lr, steps):
    """The recipe's network from raw tensors, with hand-written updates w -= lr * grad."""
    w1, b1, w2, b2 = (p.clone().requires_grad_(True) for p in params)
    for _ in range(steps):
        hidden = torch.relu(X.mm(w1) + b1)
        loss = torch.mean((hidden.mm(w2) + b2 - y) ** 2)
        loss.backward()
        with torch.no_grad():
            for p in (w1, b1, w2, b2):
                p -= lr * p.grad
                p.grad.zero_()
    return [p.detach() for p in (w1, b1, w2, b2)]


def test_raw_tensor_network_and_train_py_reach_the_same_weights(research_data, tmp_path):
    """(b) An independent check of our loop: full-batch SGD from the same initial weights."""
    data = load_dataset(research_data)
    X, y = torch.from_numpy(np.array(data.X_train)), torch.from_numpy(np.array(data.y_train))
    gen = torch.Generator().manual_seed(0)
    # Scaled down from the recipe's plain randn so that 40 steps at lr 0.01 stay far from overflow.
    w1, b1 = torch.randn(5, 128, generator=gen) * 0.3, torch.randn(128, generator=gen) * 0.3
    w2, b2 = torch.randn(128, 1, generator=gen) * 0.1, torch.randn(1, generator=gen) * 0.1
    # nn.Linear keeps weights as (out, in): the transposes of x.mm(w)'s (in, out).
    save_file({"0.weight": w1.T.contiguous(), "0.bias": b1, "2.weight": w2.T.contiguous(), "2.bias": b2},
              str(tmp_path / "init.safetensors"))
    steps, lr = 40, 0.01
    train("--data", research_data, "--ckpt-dir", tmp_path / "run", "--init-from", tmp_path / "init.safetensors",
          "--hidden", "128", "--activation", "relu", "--optimizer", "sgd", "--lr", lr, "--batch-size", len(X),
          "--epochs", steps)
    ours = load_file(str(tmp_path / "run" / "model.safetensors"))
    r1, rb1, r2, rb2 = raw_network_sgd(X, y, (w1, b1, w2, b2), lr, steps)
    assert not torch.allclose(r1, w1, atol=1e-3)  # training moved the weights
    for mine, raw in ((ours["0.weight"], r1.T), (ours["0.bias"], rb1), (ours["2.weight"], r2.T), (ours["2.bias"], rb2)):
        torch.testing.assert_close(mine, raw, rtol=1e-4, atol=1e-5)


def test_out_of_fold_validation_scores_every_labelled_row_once(crossfit_run):
    config = read_config(crossfit_run / "run")
    assert config["training"]["folds"] == 5 and config["model"]["members"] == 5
    assert config["outcome"]["final_metrics"]["val_n"] == 500  # every row, by the one member that never trained on it
    outcome = config["outcome"]
    assert outcome["weights"] == "best" and outcome["best"]["epoch"] == outcome["final_metrics"]["epoch"]


def test_evaluation_reads_in_chunks_and_counts_every_row(small_cls, tmp_path, monkeypatch):
    from common.train import trainer as loop

    monkeypatch.setattr(loop, "EVAL_CHUNK", 100)
    train("--data", small_cls, "--ckpt-dir", tmp_path, "--epochs", "1")
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["test_n"] == len(load_dataset(small_cls).y_test) > 100


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


def test_same_seed_same_weights(small_cls, tmp_path):
    runs = []
    for name in ("a", "b"):
        train("--data", small_cls, "--ckpt-dir", tmp_path / name, "--epochs", "3")
        runs.append((tmp_path / name / "model.safetensors").read_bytes())
    assert runs[0] == runs[1]
    train("--data", small_cls, "--ckpt-dir", tmp_path / "c", "--epochs", "3", "--seed", "7")
    assert (tmp_path / "c" / "model.safetensors").read_bytes() != runs[0]
