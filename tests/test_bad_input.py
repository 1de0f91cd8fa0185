"""Every bad input of users' data and models: one line naming problem and fix, exit 2, nothing lost."""
import json
import subprocess
import sys

import numpy as np
import pytest

from common.data import TabularData, save_dataset
from conftest import ROOT, assert_user_error, launch, run_script, script_env

HEADER = "a,b,label\n"


@pytest.fixture
def out_dir(tmp_path):
    """A folder that already holds a data set: bad input must leave it as it was."""
    (tmp_path / "t.npz").write_bytes(b"earlier data set")
    return tmp_path


def make_from_csv(out_dir, text, *extra):
    (out_dir / "t.csv").write_text(text)
    return run_script("make_data.py", "--csv", str(out_dir / "t.csv"), "--out-dir", str(out_dir), *extra, check=False)


@pytest.mark.parametrize("text,extra,words", [
    (HEADER + "1,2,x\n3,4,y\n", ["--target", "kind"], ["no target column 'kind'", "label"]),
    (HEADER, ["--target", "label"], ["no data rows"]),
    ("", ["--target", "label"], ["empty"]),
    (HEADER + "1,2,x\n1,oops,y\n" + "1,2,x\n1,2,y\n" * 3, ["--target", "label"], ["column 'b'", "'oops'", "row 2"]),
    (HEADER + "1,2,x\n1,2,y\n1,nan,x\n" + "1,2,y\n" * 3, ["--target", "label"], ["column 'b'", "missing", "row 3"]),
    (HEADER + "1,2,x\n1,2,y\ninf,2,x\n" + "1,2,y\n" * 3, ["--target", "label"], ["column 'a'", "infinite", "row 3"]),
    (HEADER + "1,2\n", ["--target", "label"], ["row 1", "fields"]),
])
def test_bad_csv(out_dir, text, extra, words):
    assert_user_error(make_from_csv(out_dir, text, *extra), *words)
    assert (out_dir / "t.npz").read_bytes() == b"earlier data set"


def test_missing_csv(tmp_path):
    proc = run_script("make_data.py", "--csv", str(tmp_path / "none.csv"), "--target", "y", check=False)
    assert_user_error(proc, "not found")


def test_unreadable_data_file(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    proc = run_script("train.py", "--data", str(tmp_path / "bad.npz"), "--ckpt-dir", str(tmp_path), check=False)
    assert_user_error(proc, "unreadable", "make_data.py")


@pytest.fixture(scope="module")
def model_dir(small_cls, tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("model")
    run_script("train.py", "--data", str(small_cls), "--ckpt-dir", str(ckpt), "--epochs", "1")
    return ckpt


def copy_model(model_dir, tmp_path):
    for name in ("model.safetensors", "config.json"):
        (tmp_path / name).write_bytes((model_dir / name).read_bytes())
    return tmp_path


def test_missing_weights(model_dir, tmp_path):
    ckpt = copy_model(model_dir, tmp_path)
    (ckpt / "model.safetensors").unlink()
    assert_user_error(run_script("infer.py", "--ckpt-dir", str(ckpt), check=False), "model.safetensors", "not found")


def test_truncated_weights(model_dir, tmp_path):
    ckpt = copy_model(model_dir, tmp_path)
    blob = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(blob[: len(blob) // 2])
    assert_user_error(run_script("infer.py", "--ckpt-dir", str(ckpt), check=False), "unreadable")


def test_config_that_does_not_match_the_weights(model_dir, tmp_path):
    ckpt = copy_model(model_dir, tmp_path)
    config = json.loads((ckpt / "config.json").read_text())
    config["model"]["hidden"] = [32]
    (ckpt / "config.json").write_text(json.dumps(config))
    assert_user_error(run_script("infer.py", "--ckpt-dir", str(ckpt), check=False), "do not match")


def test_npy_input_of_the_wrong_width(model_dir, tmp_path):
    np.save(tmp_path / "rows.npy", np.zeros((5, 7)))
    proc = run_script("infer.py", "--ckpt-dir", str(model_dir), "--input", str(tmp_path / "rows.npy"), check=False)
    assert_user_error(proc, "(5, 7)", "10")
    assert not (tmp_path / "rows.pred.csv").exists()


def test_more_processes_than_training_rows(tmp_path):
    one_row = TabularData(np.zeros((1, 2), np.float32), np.zeros(1, np.int64), np.zeros((2, 2), np.float32),
                          np.zeros(2, np.int64), {"task": "classification", "feature_names": ["a", "b"],
                                                  "class_labels": [0, 1], "x_mean": [0, 0], "x_scale": [1, 1],
                                                  "y_mean": None, "y_scale": None})
    save_dataset(one_row, tmp_path / "one.npz")
    proc = launch("multi_cpu", "--data", str(tmp_path / "one.npz"), "--ckpt-dir", str(tmp_path / "run"), check=False)
    assert proc.returncode != 0
    assert "error: 2 processes but only 1 training rows: launch fewer processes" in proc.stderr
    assert not (tmp_path / "run" / "model.safetensors").exists()


FORBID_PICKLE = """
import pickle, runpy, sys
def forbidden(*args, **kwargs):
    raise RuntimeError("pickle loading is forbidden here")
class ForbiddenUnpickler(pickle.Unpickler):
    def __init__(self, *args, **kwargs):
        forbidden()
pickle.load = pickle.loads = forbidden
pickle.Unpickler = ForbiddenUnpickler
pickle._Unpickler.load = forbidden  # the pure-Python unpickler that joblib and others subclass
import torch, joblib
torch.load = torch.serialization.load = joblib.load = forbidden
sys.argv = ["infer.py"] + sys.argv[1:]
runpy.run_path("infer.py", run_name="__main__")
"""


def test_inference_runs_with_pickle_forbidden(model_dir, small_cls, tmp_path):
    np.save(tmp_path / "rows.npy", np.ones((3, 10)))
    for args in (["--metrics-json", str(tmp_path / "m.json")],
                 ["--input", str(tmp_path / "rows.npy"), "--output", str(tmp_path / "p.npz")]):
        proc = subprocess.run([sys.executable, "-c", FORBID_PICKLE, "--ckpt-dir", str(model_dir), "--data",
                               str(small_cls), *args], cwd=ROOT, capture_output=True, text=True, env=script_env())
        assert proc.returncode == 0, proc.stderr
    assert np.sum(json.loads((tmp_path / "m.json").read_text())["confusion_matrix"]) == 1201
    with np.load(tmp_path / "p.npz", allow_pickle=False) as preds:
        assert preds["proba"].shape == (3, 3)
