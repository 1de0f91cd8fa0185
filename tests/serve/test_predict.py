"""Loading a model folder and predicting with it (common/serve/predict.py): each bad model folder
or input is one line naming the problem and its fix, and nothing is written."""
import json

import numpy as np
import pytest
from builders import infer, make_data, people, read_config, train, user_error, write

import infer as infer_script


def copy_model(model_dir, tmp_path):
    for name in ("model.safetensors", "config.json"):
        (tmp_path / name).write_bytes((model_dir / name).read_bytes())
    return tmp_path


def infer_error(*args):
    return user_error(infer_script.main, *args)


def test_infer_without_a_model(tmp_path):
    message = infer_error("--ckpt-dir", tmp_path)
    assert "config.json" in message and "not found" in message


@pytest.mark.parametrize("damage,words", [
    (lambda blob: None, ["model.safetensors", "not found"]),
    (lambda blob: blob[: len(blob) // 2], ["unreadable"]),
    (lambda blob: b"\x00" * 40, ["unreadable"]),
])
def test_missing_or_damaged_weights(small_model, tmp_path, damage, words):
    ckpt = copy_model(small_model, tmp_path)
    blob = damage((ckpt / "model.safetensors").read_bytes())
    if blob is None:
        (ckpt / "model.safetensors").unlink()
    else:
        (ckpt / "model.safetensors").write_bytes(blob)
    message = infer_error("--ckpt-dir", ckpt)
    assert all(word in message for word in words)


def test_config_that_does_not_match_the_weights(small_model, tmp_path):
    ckpt = copy_model(small_model, tmp_path)
    config = json.loads((ckpt / "config.json").read_text())
    config["model"]["hidden"] = [32]
    (ckpt / "config.json").write_text(json.dumps(config))
    assert "do not match" in infer_error("--ckpt-dir", ckpt)


def test_data_of_another_task_writes_no_metrics(small_model, reg_data, tmp_path):
    message = infer_error("--ckpt-dir", small_model, "--data", reg_data, "--metrics-json", tmp_path / "m.json")
    assert "classification" in message and "regression" in message
    assert not (tmp_path / "m.json").exists()


def test_prediction_input_lacking_a_feature(small_model, tmp_path):
    (tmp_path / "rows.csv").write_text("x0,x1\n1,2\n")
    assert "x2" in infer_error("--ckpt-dir", small_model, "--input", tmp_path / "rows.csv")
    assert not (tmp_path / "rows.pred.csv").exists()


def test_non_numeric_prediction_input(small_model, tmp_path):
    header = ",".join(f"x{i}" for i in range(10))
    (tmp_path / "rows.csv").write_text(f"{header}\n{','.join(['1'] * 10)}\n{','.join(['1'] * 9)},abc\n")
    message = infer_error("--ckpt-dir", small_model, "--input", tmp_path / "rows.csv")
    assert "x9" in message and "row 2" in message


def test_npy_input_of_the_wrong_width(small_model, tmp_path):
    np.save(tmp_path / "rows.npy", np.zeros((5, 7)))
    message = infer_error("--ckpt-dir", small_model, "--input", tmp_path / "rows.npy")
    assert "(5, 7)" in message and "10" in message
    assert not (tmp_path / "rows.pred.csv").exists()


def test_output_equal_to_input_is_refused_before_any_write(small_model, tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text(",".join(f"x{i}" for i in range(10)) + "\n" + ",".join(["1"] * 10) + "\n")
    before = rows.read_bytes()
    for output in (rows, tmp_path / "." / "rows.csv"):
        assert "is the input file" in infer_error("--ckpt-dir", small_model, "--input", rows, "--output", output)
    assert rows.read_bytes() == before
    message = infer_error("--ckpt-dir", small_model, "--input", rows, "--output", tmp_path / "p.txt")
    assert ".csv, .parquet or .npz" in message


@pytest.mark.parametrize("value", ["0", "-5"])
def test_infer_batch_size_must_be_positive(small_model, value):
    assert "--batch-size must be a positive integer" in infer_error("--ckpt-dir", small_model, "--batch-size", value)



def test_predictions_do_not_depend_on_the_batch_size(crossfit_run, tmp_path):
    for size in ("7", "65536"):
        infer("--ckpt-dir", crossfit_run / "run", "--input", crossfit_run / "people.csv",
              "--output", tmp_path / f"{size}.csv", "--batch-size", size)
    assert (tmp_path / "7.csv").read_text() == (tmp_path / "65536.csv").read_text()


def test_infer_without_a_test_split_says_where_the_figures_are(crossfit_run):
    message = user_error(__import__("infer").main, "--ckpt-dir", crossfit_run / "run")
    assert "no test split" in message and "metrics.jsonl" in message and "--input" in message


def test_a_locked_test_set_is_still_scored_by_the_averaged_members(tmp_path):
    write(tmp_path / "people.csv", people(rows=400))
    make_data("--csv", tmp_path / "people.csv", "--target", "label", "--out-dir", tmp_path, "--test-size", "0.25")
    train("--data", tmp_path / "people", "--ckpt-dir", tmp_path / "run", "--epochs", "4")
    infer("--ckpt-dir", tmp_path / "run", "--metrics-json", tmp_path / "m.json")
    figures = json.loads((tmp_path / "m.json").read_text())
    assert np.sum(figures["confusion_matrix"]) == 100
    assert figures["f1_macro"] == pytest.approx(read_config(tmp_path / "run")["final_metrics"]["f1_macro"])
