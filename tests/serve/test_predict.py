"""Every bad input of users' data, settings and models: one line naming problem and fix, nothing lost.

The matrix runs in-process (the UserError and its message); a few real runs prove what the
user sees from each script: exit code 2, one line on stderr, no traceback.
"""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from builders import FORBID_PICKLE, ROOT, assert_user_error, launch, run_script, script_env, user_error

import infer as infer_script
import make_data as make_data_script
import train as train_script
from common.console import _width_off_terminal
from common.data.dataset import ARRAYS, TabularData, dataset_meta, load_dataset, save_dataset
from common.data.preprocess import Preprocessor
from common.errors import UserError

HEADER = "a,b,label\n"
EARLIER = b"earlier data set"


@pytest.fixture
def out_dir(tmp_path):
    """A folder that already holds a data set: bad input must leave it as it was."""
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "X_train.npy").write_bytes(EARLIER)
    return tmp_path


def make_from_csv(out_dir, text, *extra):
    (out_dir / "t.csv").write_text(text)
    return user_error(make_data_script.main, "--csv", out_dir / "t.csv", "--out-dir", out_dir, *extra)


@pytest.mark.parametrize("text,extra,words", [
    (HEADER + "1,2,x\n3,4,y\n", ["--target", "kind"], ["no target column 'kind'", "label"]),
    (HEADER + "1,2,x\n3,4,y\n", [], ["--target", "label"]),
    (HEADER, ["--target", "label"], ["no data rows"]),
    ("", ["--target", "label"], ["Empty CSV file"]),
    (HEADER + "1,2,x\n1,oops,y\n" + "1,2,x\n1,2,y\n" * 3, ["--target", "label"], ["column 'b'", "'oops'", "row 2"]),
    (HEADER + "1,2,x\n1,2,y\ninf,2,x\n" + "1,2,y\n" * 3, ["--target", "label"], ["column 'a'", "infinite", "row 3"]),
    (HEADER + "1,2\n", ["--target", "label"], ["Expected 3 columns, got 2", "--sep"]),
    (HEADER + ",,x\n,,y\n", ["--target", "label"], ["no feature columns", "'a': 'dropped'"]),
    (HEADER + "1,2,\n3,4,\n", ["--target", "label"], ["target column 'label' is empty"]),
    (HEADER + "1,2,x\n7,3,y\n3,9,y\n4,5,x\n2,6,y\n", ["--target", "label", "--test-size", "0.2", "--val-size", "0.1"],
     ["('x')", "fewer than 3 rows"]),
    (HEADER + "1,2,1.5\n", ["--target", "label", "--numeric", "a"], ["holds one value only"]),  # one-row regression
    (HEADER + "1,2,x\n7,3,x\n3,9,x\n", ["--target", "label"], ["one class only ('x')"]),
    (HEADER + "1,2,1.5\n3,4,2.5\n", ["--target", "label", "--test-size", "0.2", "--val-size", "0.1"],
     ["2 row(s) cannot be split"]),  # two rows, three splits
    (HEADER + "1,2,1.5\n3,4,2.5\n", ["--target", "label", "--val-size", "0", "--test-size", "0.9"],
     ["2 row(s) cannot be split"]),
    ("a,label\n" + "".join(f"{i * i % 7},{'xyzuv'[i % 5]}\n" for i in range(10)),
     ["--target", "label", "--val-size", "0", "--test-size", "0.8"], ["training split"]),
    (HEADER + "1,2,x\n3,4,y\n", ["--target", "label", "--test-size", "1.5"], ["--test-size"]),
    (HEADER + "1,2,x\n3,4,y\n", ["--target", "label", "--val-size", "1.0"], ["--val-size"]),
    (HEADER + "1,2,x\n3,4,y\n", ["--target", "label", "--drop", "a", "--id", "a"], ["'a' is given two roles"]),
    (HEADER + "1,2,x\n3,4,y\n", ["--target", "label", "--drop", "c"], ["no column named ['c']"]),
    (HEADER + "1,2,x\n3,4,y\n", ["--target", "label", "--numeric", "label"], ["'label' is the target"]),
    ("a,a,label\n1,2,x\n", ["--target", "label"], ["more than one column named ['a']"]),
    ("id,label\nr1,x\nr2,y\n", ["--target", "label"], ["no feature columns"]),
])
def test_bad_csv(out_dir, text, extra, words):
    message = make_from_csv(out_dir, text, *extra)
    for word in words:
        assert word in message
    assert (out_dir / "t" / "X_train.npy").read_bytes() == EARLIER


def test_impossible_generator_settings(tmp_path):
    message = user_error(make_data_script.main, "--n-informative", "20", "--out-dir", tmp_path)
    assert "cannot generate" in message and not list(tmp_path.iterdir())


def test_missing_csv(tmp_path):
    assert "not found" in user_error(make_data_script.main, "--csv", tmp_path / "none.csv", "--target", "y")


@pytest.mark.parametrize("content,words", [
    (None, ["not found", "make_data.py"]),
    (b"not an npz", ["unreadable", "make_data.py"]),
])
def test_bad_data_file(tmp_path, content, words):
    if content is not None:
        (tmp_path / "bad.npz").write_bytes(content)
    message = user_error(train_script.main, "--data", tmp_path / "bad.npz", "--ckpt-dir", tmp_path / "run")
    assert all(word in message for word in words)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("damage,words", [
    (lambda folder: (folder / "X_test.npy").unlink(), ["X_test.npy not found", "make_data.py"]),
    (lambda folder: (folder / "X_train.npy").write_bytes(b"\x93NUMPY damaged"), ["X_train.npy", "unreadable"]),
    (lambda folder: (folder / "dataset.json").write_text("{"), ["dataset.json", "not valid JSON"]),
])
def test_damaged_data_set_folder(tmp_path, small_cls, damage, words):
    folder = tmp_path / "copy"
    shutil.copytree(small_cls, folder)
    damage(folder)
    message = user_error(train_script.main, "--data", folder, "--ckpt-dir", tmp_path / "run")
    assert all(word in message for word in words), message


def test_a_data_set_of_the_earlier_single_file_form_still_loads(tmp_path, small_cls):
    data = load_dataset(small_cls)
    np.savez(tmp_path / "old.npz", **{name: np.asarray(getattr(data, name)) for name in ARRAYS})
    (tmp_path / "old.json").write_text(json.dumps(data.description.to_json()))
    old = load_dataset(tmp_path / "old.npz")
    np.testing.assert_array_equal(old.X_train, data.X_train)
    np.testing.assert_array_equal(old.y_val, data.y_val)
    (tmp_path / "gone").mkdir()
    with pytest.raises(UserError, match="pass --data"):
        load_dataset(tmp_path / "gone.npz")


def test_a_table_given_to_train_py_says_to_run_make_data_first(tmp_path):
    (tmp_path / "t.csv").write_text(HEADER + "1,2,x\n")
    message = user_error(train_script.main, "--data", tmp_path / "t.csv")
    assert "make_data.py --csv" in message and "--target" in message


@pytest.mark.parametrize("flag,value", [("--epochs", "0"), ("--batch-size", "-3"), ("--hidden", "0")])
def test_non_positive_settings_leave_an_earlier_run_alone(small_cls, tmp_path, flag, value):
    for name in ("model.safetensors", "config.json", "metrics.jsonl"):
        (tmp_path / name).write_text("an earlier run's")
    message = user_error(train_script.main, "--data", small_cls, "--ckpt-dir", tmp_path, flag, value)
    assert flag in message and "positive" in message
    for name in ("model.safetensors", "config.json", "metrics.jsonl"):
        assert (tmp_path / name).read_text() == "an earlier run's"


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


@pytest.mark.parametrize("value,width", [("", 120), ("abc", 120), ("0", 120), ("-3", 120), ("97", 97)])
def test_odd_columns_variable_does_not_break_the_console(monkeypatch, value, width):
    monkeypatch.setenv("COLUMNS", value)
    assert _width_off_terminal() == width


@pytest.mark.e2e
def test_importing_the_console_with_an_empty_columns_variable():
    proc = subprocess.run([sys.executable, "-c", "import common.console"], cwd=ROOT, capture_output=True, text=True,
                          env={**script_env(), "COLUMNS": ""})
    assert proc.returncode == 0, proc.stderr


# ---- what the user sees: real processes ----

@pytest.mark.e2e
def test_each_script_exits_2_with_one_line(small_cls, tmp_path):
    (tmp_path / "t.csv").write_text(HEADER + "1,2,x\n3,4,y\n")
    assert_user_error(run_script("make_data.py", "--csv", str(tmp_path / "t.csv"), "--target", "kind", check=False),
                      "no target column 'kind'")
    assert_user_error(run_script("train.py", "--data", str(small_cls), "--ckpt-dir", str(tmp_path / "run"),
                                 "--epochs", "0", check=False), "--epochs", "positive")
    assert not (tmp_path / "run").exists()
    assert_user_error(run_script("infer.py", "--ckpt-dir", str(tmp_path), check=False), "config.json", "not found")


@pytest.mark.e2e
def test_more_processes_than_training_rows(tmp_path):
    one_row = TabularData(np.zeros((1, 2), np.float32), np.zeros(1, np.int64), np.zeros((2, 2), np.float32),
                          np.zeros(2, np.int64), dataset_meta("classification", Preprocessor.all_numeric(
                              ["a", "b"], [0, 0], [1, 1]), [0, 1], (None, None), {"train": 1, "val": 0, "test": 2},
                              [], {}))
    save_dataset(one_row, tmp_path / "one")
    proc = launch("multi_cpu", "--data", str(tmp_path / "one"), "--ckpt-dir", str(tmp_path / "run"), check=False)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: 2 processes but only 1 training rows: launch fewer processes"]  # once, not per process
    assert not (tmp_path / "run" / "model.safetensors").exists()


@pytest.mark.e2e
def test_inference_runs_with_pickle_forbidden(small_model, small_cls, tmp_path):
    np.save(tmp_path / "rows.npy", np.ones((3, 10)))
    for args in (["--metrics-json", str(tmp_path / "m.json")],
                 ["--input", str(tmp_path / "rows.npy"), "--output", str(tmp_path / "p.npz")]):
        proc = subprocess.run([sys.executable, "-c", FORBID_PICKLE, "--ckpt-dir", str(small_model), "--data",
                               str(small_cls), *args], cwd=ROOT, capture_output=True, text=True, env=script_env())
        assert proc.returncode == 0, proc.stderr
    assert np.sum(json.loads((tmp_path / "m.json").read_text())["confusion_matrix"]) == 1201
    with np.load(tmp_path / "p.npz", allow_pickle=False) as preds:
        assert preds["proba"].shape == (3, 3)


@pytest.mark.e2e
def test_train_never_imports_scikit_learn(small_cls, tmp_path):
    code = ("import sys, runpy; sys.argv = ['train.py'] + sys.argv[1:]\n"
            "try:\n    runpy.run_path('train.py', run_name='__main__')\n"
            "finally:\n    print('SKLEARN' if any(m.startswith('sklearn') for m in sys.modules) else 'CLEAN')")
    proc = subprocess.run([sys.executable, "-c", code, "--data", str(small_cls), "--ckpt-dir", str(tmp_path),
                           "--epochs", "1"], cwd=ROOT, capture_output=True, text=True, env=script_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("CLEAN")
