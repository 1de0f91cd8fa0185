"""dataset.json and config.json: one typed schema each, written and read back unchanged, and a
file of the wrong shape refused in one line that names it."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from common.data.dataset import content_identity, load_dataset, meta_path, read_description
from common.data.description import FORMAT_VERSION as DATASET_FORMAT
from common.data.description import DatasetDescription
from common.errors import UserError
from common.model_folder import CONFIG_FILE, CONFIG_FORMAT, ModelRecord, load_model_dir, load_record
from common.steps import TargetStep


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
    assert record.outcome.epochs_run == 1 and record.outcome.final_metrics


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
    (lambda m: m.update(task="regression", target={"transform": "none", "mean": 0.0, "scale": 1.0}),
     "y_train holds int64"),
    (lambda m: m.update(task="regression", target={"transform": "none", "mean": 0.0, "scale": 0}), "'scale' = 0"),
    (lambda m: m.update(task="regression", target={"transform": "exp", "mean": 0.0, "scale": 1}), "'exp'"),
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
    (lambda c: c["outcome"].update(legs=[4, 0]), "'legs' = [4, 0]"),
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


OLD_DATA_SETS = Path(__file__).parent / "data" / "fixtures" / "dataset_format4"
OLD_MODELS = Path(__file__).parent / "serve" / "fixtures" / "config_format3"


def test_a_format_4_data_set_description_reads_into_todays_steps():
    """dataset.json format 4 held a regression's scaling as y_mean/y_scale beside its target."""
    old = json.loads((OLD_DATA_SETS / "reg.json").read_text())
    described = DatasetDescription.read(old, "reg.json")
    assert described.target == TargetStep("log_link", old["y_mean"], old["y_scale"], old["target"]["low"],
                                          old["target"]["high"])
    assert described.preprocess.to_json() == old["preprocess"] and described.roles[0].name == "a"
    today = described.to_json()
    assert today["format"] == DATASET_FORMAT and "y_mean" not in today
    assert DatasetDescription.read(today, "x") == dataclasses.replace(described, format=DATASET_FORMAT)
    classes = DatasetDescription.read(json.loads((OLD_DATA_SETS / "cls.json").read_text()), "c")
    assert classes.target is None and classes.class_labels == ["hi", "lo", "mid"]


@pytest.mark.parametrize("version", [1, 2, 3])
def test_an_older_data_set_description_is_one_line_saying_to_remake_it(small_cls, version):
    old = {**json.loads(meta_path(small_cls).read_text()), "format": version}
    message = one_line_error(DatasetDescription.read, old, "dataset.json")
    assert f"older version of make_data.py (format {version})" in message and "make_data.py" in message


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_config_is_one_line_saying_to_retrain(small_model, version):
    old = {**json.loads((small_model / CONFIG_FILE).read_text()), "format": version}
    message = one_line_error(ModelRecord.read, old, "config.json")
    assert f"older version of train.py (format {version})" in message and "retrain" in message


def test_a_format_3_config_reads_its_outcome_and_target():
    old = json.loads((OLD_MODELS / "reg" / CONFIG_FILE).read_text())
    record = ModelRecord.read(old, "config.json")
    assert record.target == TargetStep("log_link", old["y_mean"], old["y_scale"], old["target"]["low"],
                                       old["target"]["high"])
    assert record.outcome.best_epoch == old["best_epoch"] == 3 and record.outcome.best_value == old["best_val_loss"]
    assert record.outcome.final_metrics == old["final_metrics"] and record.outcome.monitor == "val_loss"
    today = record.to_json()
    assert today["outcome"]["best"] == {"monitor": "val_loss", "value": old["best_val_loss"], "epoch": 3}
    assert "best_epoch" not in today and today["model"] == old["model"]
    assert record.outcome.legs == [] and today["outcome"]["legs"] == []  # no legs before they were recorded


def test_the_identity_hashes_the_file_as_read(small_cls, tmp_path):
    """Checkpoints recorded content_identity over the parsed JSON: the schema must not change it."""
    data = load_dataset(small_cls)
    assert data.identity == content_identity(small_cls, json.loads(meta_path(small_cls).read_text()))


def test_a_data_set_and_a_model_of_the_format_before_dates_still_read(small_cls, small_model):
    """dataset.json 5 and config.json 4 hold no date step: today's readers take them as they are,
    and a reader of those formats would refuse today's files by their number."""
    old_data = {**json.loads(meta_path(small_cls).read_text()), "format": 5}
    assert DatasetDescription.read(old_data, "dataset.json").preprocess == load_dataset(small_cls).preprocessor
    old_model = {**json.loads((small_model / CONFIG_FILE).read_text()), "format": 4}
    assert ModelRecord.read(old_model, "config.json").preprocess.to_json() == old_model["preprocess"]
    assert json.loads(meta_path(small_cls).read_text())["format"] == DATASET_FORMAT == 7
