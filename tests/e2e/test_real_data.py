"""The data sets scikit-learn ships, and users' own CSV files, end to end."""
import json

import numpy as np
import pyarrow as pa
import pytest
from builders import FAST, infer, make_data, read_config, read_csv_rows, read_metrics, train, write, write_csv
from sklearn.utils.class_weight import compute_class_weight

from common.data.dataset import load_dataset
from common.data.preprocess import embedding_size
from common.train.optim import balanced_class_weights


@pytest.mark.parametrize("name,figure,floor", [("breast_cancer", "accuracy", 0.9), ("wine", "accuracy", 0.9),
                                               ("iris", "accuracy", 0.9), ("digits", "accuracy", 0.9),
                                               ("diabetes", "test_r2", 0.3)])
def test_shipped_data_sets(tmp_path, name, figure, floor):
    make_data("--dataset", name, "--out-dir", tmp_path)
    args = FAST if figure == "accuracy" else []  # regression: the defaults, early stopping on validation loss
    train("--data", tmp_path / name, "--ckpt-dir", tmp_path / "run", *args)
    assert read_metrics(tmp_path / "run")[-1][figure] >= floor


@pytest.fixture(scope="module")
def animals(tmp_path_factory):
    """A user's table: an id, a text column, four numeric features, text labels."""
    tmp = tmp_path_factory.mktemp("animals")
    rng = np.random.default_rng(0)
    names = np.array(["bird", "cat", "dog"])
    y = rng.choice(3, size=600, p=[0.2, 0.5, 0.3])
    X = rng.normal(size=(600, 4)) + y[:, None] * 1.5
    rows = [[f"id{i}", rng.choice(["paris", "oslo"]), *X[i].tolist(), names[y[i]]] for i in range(600)]
    write_csv(tmp / "animals.csv", ["id", "city", "w", "x", "y", "z", "kind"], rows)
    make_data("--csv", tmp / "animals.csv", "--target", "kind", "--out-dir", tmp)
    return tmp, X, names[y]


def test_csv_becomes_a_data_set(animals):
    tmp, X, labels = animals
    data = load_dataset(tmp / "animals")
    assert data.task == "classification"
    assert data.description.class_labels == ["bird", "cat", "dog"]
    assert data.description.feature_names == ["w", "x", "y", "z", "city"]  # numeric inputs, then category codes
    assert data.description.source["ids"] == ["id"] and data.description.source["dropped_columns"] == []
    assert [c["name"] for c in data.description.preprocess.to_json()["categorical"]] == ["city"]
    assert len(data.y_train) == 600 and len(data.y_val) == len(data.y_test) == 0  # every labelled row trains
    # Mapped through the training split's quantiles onto a normal: centred, spread about 1.
    np.testing.assert_allclose(data.X_train[:, :4].mean(0), 0, atol=0.05)
    assert np.all((data.X_train[:, :4].std(0) > 0.8) & (data.X_train[:, :4].std(0) < 1.35))
    assert set(np.unique(data.X_train[:, 4])) == {1.0, 2.0}  # the two cities' codes; 0 is kept for unseen


def test_csv_predictions_carry_ids_and_original_labels(animals, tmp_path):
    tmp, X, labels = animals
    train("--data", tmp / "animals", "--ckpt-dir", tmp_path, *FAST, "--class-weight", "balanced", "--patience", "0")
    assert read_config(tmp_path)["training"]["class_weight"] == "balanced"
    # Feature columns in another order, an extra id column first, a city never seen in training.
    write_csv(tmp_path / "new.csv", ["ref", "z", "y", "x", "w", "city"],
              [[f"r{i}", *X[i][::-1].tolist(), "lima"] for i in range(40)])
    infer("--ckpt-dir", tmp_path, "--input", tmp_path / "new.csv", "--output", tmp_path / "out.csv")
    out = read_csv_rows(tmp_path / "out.csv")
    assert [r["ref"] for r in out] == [f"r{i}" for i in range(40)]
    assert set(out[0]) == {"ref", "prediction", "proba_bird", "proba_cat", "proba_dog"}  # city is an input
    # Labels in their own words and in the right order: a mixed-up mapping scores about 1/3, the
    # majority class 1/2; the classes overlap, so even the best model is wrong on ~15% of rows.
    assert np.mean([r["prediction"] == t for r, t in zip(out, labels[:40], strict=True)]) >= 0.7


@pytest.mark.parametrize("values,task", [(["1.5", "2.25", "3.0", "0.1"] * 10, "regression"),
                                         (["0", "1", "2", "1"] * 10, "classification")])
def test_task_is_inferred_from_the_target(tmp_path, values, task, capsys):
    rng = np.random.default_rng(1)
    write_csv(tmp_path / "t.csv", ["a", "b", "target"], [[*rng.normal(size=2).tolist(), v] for v in values])
    make_data("--csv", tmp_path / "t.csv", "--target", "target", "--out-dir", tmp_path)
    assert f"{task}: " in capsys.readouterr().out
    assert load_dataset(tmp_path / "t").task == task


def test_balanced_weights_are_sklearns():
    y = np.array([0] * 50 + [1] * 30 + [2] * 20)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y)
    np.testing.assert_allclose(balanced_class_weights(y, 3).numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(expected, [100 / (3 * 50), 100 / (3 * 30), 100 / (3 * 20)])
    # A class with no training row weighs nothing (and sklearn refuses to weigh it).
    np.testing.assert_allclose(balanced_class_weights(np.array([0, 0, 2]), 3).numpy(), [0.75, 0.0, 1.5])


def test_balanced_weights_lift_the_minority_class(tmp_path):
    rng = np.random.default_rng(2)
    y = (rng.random(3000) < 0.06).astype(int)
    X = rng.normal(size=(3000, 3)) + y[:, None] * 1.2
    write_csv(tmp_path / "rare.csv", ["a", "b", "c", "label"], [[*X[i].tolist(), y[i]] for i in range(3000)])
    make_data("--csv", tmp_path / "rare.csv", "--target", "label", "--out-dir", tmp_path, "--test-size", "0.2")
    recalls = {}
    for mode in ("none", "balanced"):
        train("--data", tmp_path / "rare", "--ckpt-dir", tmp_path / mode, *FAST, "--class-weight", mode)
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
    assert training["class_weight"] == "none" and config["model"]["members"] == 5 and config["weights"] == "best"
    assert config["model"]["categorical"] == [{"cardinality": 5, "dim": embedding_size(5)},
                                              {"cardinality": 3, "dim": embedding_size(3)}]
    assert config["final_metrics"]["val_f1_macro"] >= 0.8  # out of fold: every row scored by a member that never saw it
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
