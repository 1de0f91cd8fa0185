"""The recipe's research section: a Sigmoid MLP with Adam, and a network from raw tensors."""
import json

import numpy as np
import pytest
import torch
from builders import make_data, read_config, read_metrics, train
from safetensors.torch import load_file, save_file

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
    assert config["final_metrics"]["val_n"] == 500  # every row, by the one member that never trained on it
    assert config["weights"] == "best" and config["best_epoch"] == config["final_metrics"]["epoch"]


def test_evaluation_reads_in_chunks_and_counts_every_row(small_cls, tmp_path, monkeypatch):
    from common.train import trainer as loop

    monkeypatch.setattr(loop, "EVAL_CHUNK", 100)
    train("--data", small_cls, "--ckpt-dir", tmp_path, "--epochs", "1")
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["test_n"] == len(load_dataset(small_cls).y_test) > 100
