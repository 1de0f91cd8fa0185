"""The recipes end to end: the README's launch in a real process, the rest in this one."""
import csv
import json
import re

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.torch import load_file

from builders import infer, read_config, read_csv_rows, read_metrics, train
from common.console import fmt
from common.data.dataset import load_dataset


def test_classification_reaches_the_recipes_accuracy(cls_run):
    ckpt, proc = cls_run
    records = read_metrics(ckpt)
    assert [r["epoch"] for r in records] == [0, 2, 4, 5]  # every 2 epochs, and after the last
    assert records[-1]["accuracy"] >= 0.9
    assert records[-1]["test_n"] == 20_000
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    # The table printed every evaluation's macro precision and recall, as metrics.jsonl holds them.
    printed = [re.split("[│┃]", line) for line in proc.stdout.splitlines() if len(re.findall("[│┃]", line)) > 3]
    header = [cell.strip() for cell in printed[0]]
    rows = {cell[header.index("epoch")].strip(): cell for cell in printed[1:]}
    for record in records:
        row = rows[str(record["epoch"])]
        assert row[header.index("precision")].strip() == fmt(record["precision_macro"])
        assert row[header.index("recall")].strip() == fmt(record["recall_macro"])


def test_saved_model_is_complete(cls_run):
    ckpt, proc = cls_run
    with safe_open(str(ckpt / "model.safetensors"), "pt") as f:
        assert sorted(f.keys()) == ["0.bias", "0.weight", "2.bias", "2.weight"]  # no "module." prefix
        assert tuple(f.get_tensor("0.weight").shape) == (20, 10)
    config = read_config(ckpt)
    assert config["task"] == "classification" and config["num_processes"] == 1
    assert config["model"] == {"in_features": 10, "hidden": [20], "out_features": 3, "activation": "relu"}
    assert config["training"]["optimizer"] == "adam" and config["training"]["batch_size"] == 1024
    assert config["training"]["steps_per_epoch"] == 79 and config["training"]["optimizer_steps"] == 6 * 79
    assert config["class_labels"] == [0, 1, 2] and len(config["preprocess"]["numeric"]) == 10
    assert {"torch", "accelerate", "scikit-learn"} <= config["versions"].keys()
    outcome = config["outcome"]
    assert outcome["epochs_run"] == 6 and outcome["train_seconds"] > 0
    # train.py's process start to the first epoch: inside the launch, which also ran the epochs.
    assert 0 < outcome["startup_seconds"] < proc.seconds - outcome["train_seconds"]


def test_infer_reproduces_the_final_evaluation(cls_run, tmp_path, capsys):
    ckpt, _ = cls_run
    out = tmp_path / "m.json"
    infer("--ckpt-dir", ckpt, "--metrics-json", out)
    figures = json.loads(out.read_text())
    last = read_metrics(ckpt)[-1]
    assert figures["accuracy"] == pytest.approx(last["accuracy"], abs=1e-12)
    assert figures["precision_macro"] == pytest.approx(last["precision_macro"], abs=1e-12)
    assert np.asarray(figures["confusion_matrix"]).sum() == 20_000
    assert "confusion matrix" in capsys.readouterr().out


def test_predicting_raw_rows_from_csv_and_npy(cls_run, recipe_cls, tmp_path):
    ckpt, _ = cls_run
    data = load_dataset(recipe_cls)
    steps = data.preprocessor.numeric
    raw = data.X_test[:50] * np.asarray([s.scale for s in steps]) + np.asarray([s.mean for s in steps])
    names = data.description.feature_names
    order = names[::-1]  # columns in another order, plus an id column to carry through
    with open(tmp_path / "rows.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", *order])
        for i, row in enumerate(raw):
            w.writerow([f"r{i}", *(repr(float(row[names.index(n)])) for n in order)])
    infer("--ckpt-dir", ckpt, "--input", tmp_path / "rows.csv", "--output", tmp_path / "p.csv")
    np.save(tmp_path / "rows.npy", raw)
    infer("--ckpt-dir", ckpt, "--input", tmp_path / "rows.npy", "--output", tmp_path / "q.csv")
    p, q = read_csv_rows(tmp_path / "p.csv"), read_csv_rows(tmp_path / "q.csv")
    assert [r["id"] for r in p] == [f"r{i}" for i in range(50)]
    assert [r["prediction"] for r in p] == [r["prediction"] for r in q]
    probs = np.array([[float(r[f"proba_{k}"]) for k in range(3)] for r in p])
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert [int(r["prediction"]) for r in p] == probs.argmax(1).tolist()
    assert np.mean(np.array([int(r["prediction"]) for r in p]) == data.y_test[:50]) >= 0.8


def test_regression_recipe(reg_data, tmp_path):
    ckpt = tmp_path / "reg"
    train("--data", reg_data, "--ckpt-dir", ckpt)
    records = read_metrics(ckpt)
    assert [r["epoch"] for r in records] == list(range(0, 401, 50))
    assert records[-1]["test_r2"] >= 0.99 and records[-1]["train_r2"] >= 0.99
    assert records[-1]["test_n"] == 200 and records[-1]["train_n"] == 800
    config = read_config(ckpt)
    assert config["model"]["hidden"] == [] and config["training"]["optimizer"] == "sgd"
    infer("--ckpt-dir", ckpt, "--metrics-json", tmp_path / "r.json")
    figures = json.loads((tmp_path / "r.json").read_text())
    assert figures["r2"] == pytest.approx(records[-1]["test_r2"], rel=1e-6)
    assert figures["mae"] == pytest.approx(records[-1]["test_mae"], rel=1e-5)
    # The linear model recovers the generator's coefficients on the original scale.
    w = load_file(str(ckpt / "model.safetensors"))["0.weight"].double().numpy()[0]
    coef = w * config["target"]["scale"] / np.asarray([s["scale"] for s in config["preprocess"]["numeric"]])
    np.testing.assert_allclose(coef, load_dataset(reg_data).description.source["coef"], atol=0.5)


def test_the_recipe_gets_its_importance_pictures_and_card(cls_run):
    """A launched run of the recipe writes what a users' table gets, scored on its test split."""
    from huggingface_hub import ModelCard
    from matplotlib.image import imread

    ckpt, proc = cls_run
    report = json.loads((ckpt / "importance.json").read_text())
    assert report["scored_on"] == "test" and report["rows"] == 20_000
    assert report["f1_macro"] == pytest.approx(read_metrics(ckpt)[-1]["f1_macro"], abs=1e-12)
    assert sorted(c["column"] for c in report["importance"]["columns"]) == sorted(f"x{i}" for i in range(10))
    for name in ("curves.png", "importance.png", "confusion.png"):
        assert imread(ckpt / name)[..., :3].std() > 0.05, name
    assert ModelCard.load(ckpt / "README.md").data.pipeline_tag == "tabular-classification"
    assert "which columns matter" in proc.stdout and "importance.json" in proc.stdout
