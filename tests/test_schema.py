"""dataset.json and config.json: one typed schema each, written and read back unchanged, and a
file of the wrong shape refused in one line that names it."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from common.data.dataset import content_identity, load_dataset, meta_path, read_description
from common.data.description import DatasetDescription
from common.errors import UserError
from common.model_folder import CONFIG_FILE, CONFIG_FORMAT, load_record
from common.serve.predict import load_model_dir


def one_line_error(call, *args) -> str:
    with pytest.raises(UserError) as err:
        call(*args)
    message = str(err.value)
    assert "\n" not in message, message
    return message


def test_a_data_set_description_round_trips(small_cls):
    description, raw = read_description(small_cls)
    assert description.to_json() == raw
    assert DatasetDescription.read(description.to_json(), "x").to_json() == raw


def test_a_model_record_round_trips(small_model):
    raw = json.loads((small_model / CONFIG_FILE).read_text())
    record = load_record(small_model)
    assert record.to_json() == raw and record.format == CONFIG_FORMAT
    assert record.outcome["epochs_run"] == 1 and "final_metrics" in record.outcome


DATASET_DAMAGE = [
    (lambda m: [m], "holds a list, not a JSON object"),
    (lambda m: m.__delitem__("task"), "lacks 'task'"),
    (lambda m: m.update(task="clustering"), "'task' = 'clustering'"),
    (lambda m: m.update(n_train="many"), "'n_train'"),
    (lambda m: m.update(format=99), "format 99"),
    (lambda m: m["preprocess"]["numeric"][0].update(scale=0), "'scale' = 0"),
    (lambda m: m["preprocess"]["numeric"][0].update(mean=float("nan")), "'mean' = nan"),
    (lambda m: m["preprocess"]["numeric"][0].update(quantiles=[2.0, 1.0]), "ascending order"),
    (lambda m: m["preprocess"]["numeric"].__delitem__(0), "preprocessing steps make"),
    (lambda m: m.update(class_labels=[]), "'class_labels'"),
    (lambda m: m.update(task="regression", y_mean=0.0, y_scale=1.0), "y_train holds int64"),
]


@pytest.mark.parametrize("damage,words", DATASET_DAMAGE)
def test_a_damaged_data_set_description_is_one_line_naming_it(small_cls, tmp_path, damage, words):
    folder = tmp_path / "copy"
    shutil.copytree(small_cls, folder)
    meta = json.loads(meta_path(folder).read_text())
    meta = damage(meta) or meta
    meta_path(folder).write_text(json.dumps(meta))
    message = one_line_error(load_dataset, folder)
    assert "dataset.json" in message and words in message and "make_data.py" in message, message


CONFIG_DAMAGE = [
    (lambda c: "text", "holds text, not a JSON object"),
    (lambda c: c.__delitem__("model"), "lacks 'model'"),
    (lambda c: c.update(task=3), "'task' = 3"),
    (lambda c: c["model"].update(hidden="wide"), "cannot build"),
    (lambda c: c["preprocess"]["numeric"][1].update(scale=float("inf")), "'scale' = inf"),
    (lambda c: c["preprocess"]["numeric"][1].update(indicator="no"), "'indicator'"),
    (lambda c: c.update(feature_names=[1, 2]), "'feature_names'"),
]


@pytest.mark.parametrize("damage,words", CONFIG_DAMAGE)
def test_a_damaged_config_is_one_line_naming_it(small_model, tmp_path, damage, words):
    for name in ("model.safetensors", CONFIG_FILE):
        shutil.copy(small_model / name, tmp_path / name)
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    config = damage(config) or config
    (tmp_path / CONFIG_FILE).write_text(json.dumps(config))
    message = one_line_error(load_model_dir, tmp_path)
    assert "config.json" in message and words in message, message


def test_format_1_files_still_load(small_cls, small_model, tmp_path):
    """The first data set format (scaling only, no validation split, no roles) and a config.json
    from before preprocessing steps (x_mean/x_scale) read into today's classes."""
    data = load_dataset(small_cls)
    steps = data.preprocessor.numeric
    old = {"format": 1, "task": "classification", "feature_names": data.description.feature_names,
           "class_labels": [0, 1, 2], "x_mean": [s.mean for s in steps], "x_scale": [s.scale for s in steps],
           "y_mean": None, "y_scale": None, "n_train": len(data.X_train), "n_test": len(data.X_test),
           "source": {"generator": "make_classification"}}
    arrays = {name: np.asarray(getattr(data, name)) for name in ("X_train", "y_train", "X_test", "y_test")}
    np.savez(tmp_path / "old.npz", **arrays)
    (tmp_path / "old.json").write_text(json.dumps(old))
    loaded = load_dataset(tmp_path / "old.npz")
    assert loaded.description.format == 1 and loaded.n_val == 0 and loaded.is_recipe
    assert [(s.mean, s.scale) for s in loaded.preprocessor.numeric] == [(s.mean, s.scale) for s in steps]

    ckpt = tmp_path / "model"
    ckpt.mkdir()
    shutil.copy(small_model / "model.safetensors", ckpt)
    config = json.loads((small_model / CONFIG_FILE).read_text())
    for key in ("format", "preprocess", "ids", "versions"):
        config.pop(key)
    config.update(x_mean=old["x_mean"], x_scale=old["x_scale"])
    (ckpt / CONFIG_FILE).write_text(json.dumps(config))
    record, _ = load_model_dir(ckpt)
    assert record.format == 1 and record.preprocess == loaded.preprocessor.to_json()
    assert "x_mean" not in record.outcome and "x_mean" not in record.to_json()


def test_the_identity_hashes_the_file_as_read(small_cls, tmp_path):
    """Checkpoints recorded content_identity over the parsed JSON: the schema must not change it."""
    data = load_dataset(small_cls)
    assert data.identity == content_identity(small_cls, json.loads(meta_path(small_cls).read_text()))
