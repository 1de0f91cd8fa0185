"""The degenerate shapes a user's table can take: each trains and predicts, or make_data.py
refuses it in one line. In-process, a few epochs each: what is tested is that the path holds,
not how good the model is."""
from __future__ import annotations

import numpy as np
import pyarrow.csv as pa_csv
import pytest

import make_data as make_data_script
from builders import infer, make_data, train, train_args, user_error, write

QUICK = ["--epochs", "2", "--folds", "2", "--batch-size", "32"]


def trained(tmp_path, columns: dict, target: str, *make_data_args) -> tuple:
    """The table written, made into a data set, trained, and predicted: the predictions read back."""
    path = write(tmp_path / "table.csv", columns)
    make_data("--csv", path, "--target", target, "--out-dir", tmp_path / "data", *make_data_args)
    train(*train_args(tmp_path / "data" / "table", tmp_path / "model", *QUICK))
    return path, tmp_path / "model"


def predicted(model, path, tmp_path):
    infer("--ckpt-dir", model, "--input", path, "--output", tmp_path / "pred.csv")
    return pa_csv.read_csv(tmp_path / "pred.csv")


def test_a_table_of_categorical_columns_only_trains_and_predicts(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    cls, sex, age = (rng.choice(levels, n) for levels in (["1st", "2nd", "3rd"], ["male", "female"],
                                                          ["child", "adult"]))
    lived = (sex == "female") | ((cls == "1st") & (age == "child"))
    path, model = trained(tmp_path, {"class": cls, "age": age, "sex": sex,
                                     "survived": np.where(lived, "yes", "no")}, "survived")
    got = predicted(model, path, tmp_path)
    assert got.num_rows == n and set(got.column("prediction").to_pylist()) <= {"yes", "no"}


def test_a_single_feature_with_blanks_only_in_the_rows_to_predict(tmp_path, capsys):
    rng = np.random.default_rng(1)
    x = rng.normal(size=300)
    path, model = trained(tmp_path, {"x": x, "y": np.where(x > 0, "up", "down")}, "y")
    new = write(tmp_path / "new.csv", {"x": [None, 1.5, None, -2.0]})
    got = predicted(model, new, tmp_path)
    assert got.num_rows == 4 and got.column("prediction").to_pylist()[1::2] == ["up", "down"]
    assert "column 'x' had 2 blank cell(s)" in capsys.readouterr().out


def test_a_class_of_two_rows_still_trains_and_can_be_predicted(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 2))
    label = ["common"] * 298 + ["rare"] * 2
    path, model = trained(tmp_path, {"a": x[:, 0], "b": x[:, 1], "label": label}, "label")
    got = predicted(model, path, tmp_path)
    assert got.num_rows == 300 and {"prediction", "proba_common", "proba_rare"} <= set(got.column_names)


def test_a_regression_target_constant_but_for_one_row(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 2))
    y = np.full(300, 5.0)
    y[17] = 9.0
    path, model = trained(tmp_path, {"a": x[:, 0], "b": x[:, 1], "y": y}, "y", "--task", "regression")
    got = np.asarray(predicted(model, path, tmp_path).column("prediction").to_pylist())
    assert got.shape == (300,) and np.isfinite(got).all()


@pytest.mark.parametrize("target, task, words", [
    ([5.0] * 100, "regression", "one value only"),
    (["a"] * 100, "classification", "one class only"),
])
def test_a_target_of_one_value_is_refused_at_make_data(tmp_path, target, task, words):
    path = write(tmp_path / "flat.csv", {"x": np.arange(100.0) % 7, "y": target})
    message = user_error(make_data_script.main, "--csv", path, "--target", "y", "--task", task,
                         "--out-dir", tmp_path / "data")
    assert words in message and not (tmp_path / "data" / "flat").exists()
