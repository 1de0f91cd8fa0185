"""Scenario runs on real data, each trained to its figures in seconds: the data sets scikit-learn
ships, a user's table with text, blanks and ids from file to predictions, and class weights
lifting a rare class."""
import json

import numpy as np
import pyarrow as pa
import pytest

from builders import FAST, infer, make_data, read_config, read_csv_rows, read_metrics, train, write, write_csv
from common.data.preprocess import embedding_size


@pytest.mark.parametrize("name,figure,floor", [("breast_cancer", "accuracy", 0.9), ("wine", "accuracy", 0.9),
                                               ("iris", "accuracy", 0.9), ("digits", "accuracy", 0.9),
                                               ("diabetes", "test_r2", 0.3)])
def test_shipped_data_sets(tmp_path, name, figure, floor):
    make_data("--dataset", name, "--out-dir", tmp_path)
    # iris and wine have 4-5 batches of 32 an epoch; regression: the defaults, early stopping on validation loss
    args = [*FAST, "--batch-size", "32", "--importance-rows", "0"] if figure == "accuracy" else []
    train("--data", tmp_path / name, "--ckpt-dir", tmp_path / "run", *args)
    assert read_metrics(tmp_path / "run")[-1][figure] >= floor


def test_balanced_weights_lift_the_minority_class(tmp_path):
    rng = np.random.default_rng(2)
    y = (rng.random(3000) < 0.06).astype(int)
    X = rng.normal(size=(3000, 3)) + y[:, None] * 1.2
    write_csv(tmp_path / "rare.csv", ["a", "b", "c", "label"], [[*X[i].tolist(), y[i]] for i in range(3000)])
    make_data("--csv", tmp_path / "rare.csv", "--target", "label", "--out-dir", tmp_path, "--test-size", "0.2")
    recalls = {}
    for mode in ("none", "balanced"):
        train("--data", tmp_path / "rare", "--ckpt-dir", tmp_path / mode, *FAST, "--class-weight", mode,
              "--decision", "argmax")  # the weights alone, without the threshold that also lifts it
        infer("--ckpt-dir", tmp_path / mode, "--metrics-json", tmp_path / f"{mode}.json")
        cm = np.array(json.loads((tmp_path / f"{mode}.json").read_text())["confusion_matrix"])
        recalls[mode] = cm[1, 1] / cm[1].sum()
    assert recalls["balanced"] > recalls["none"] + 0.1


def test_a_table_with_text_blanks_and_ids_trains_and_predicts_every_row(people_set, tmp_path, capsys):
    tmp, _ = people_set
    train("--data", tmp / "people", "--ckpt-dir", tmp_path)
    out = capsys.readouterr().out
    assert "table settings: 5-fold cross-fitting" in out and "val_f1_macro" in out  # the resolved values are shown
    config = read_config(tmp_path)
    training = config["training"]
    assert training["defaults"] == "table" and training["monitor"] == "val_f1_macro" and training["folds"] == 5
    assert training["class_weight"] == "none" and config["model"]["members"] == 5
    assert config["outcome"]["weights"] == "best"
    assert config["model"]["categorical"] == [{"cardinality": 5, "dim": embedding_size(5)},
                                              {"cardinality": 3, "dim": embedding_size(3)}]
    # out of fold: every row scored by a member that never saw it
    assert config["outcome"]["final_metrics"]["val_f1_macro"] >= 0.8
    assert {"val_loss", "val_f1_macro"} <= read_metrics(tmp_path)[-1].keys()
    # New rows: blanks everywhere, a city never seen, a column order of its own, no label.
    new = tmp_path / "new.csv"
    write(new, {"member": [True, None, False, True], "city": ["rome", "lima", None, "oslo"],
                "age": pa.array([50.0, None, 20.0, None]), "person_id": [9001, 9002, 9003, 9004]})
    infer("--ckpt-dir", tmp_path, "--input", new, "--output", tmp_path / "pred.csv")
    rows = read_csv_rows(tmp_path / "pred.csv")
    assert [r["person_id"] for r in rows] == ["9001", "9002", "9003", "9004"]
    assert all(r["prediction"] in ("high", "low") for r in rows)
    assert rows[0]["prediction"] == "high" and rows[2]["prediction"] == "low"
