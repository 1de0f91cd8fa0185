"""A two-class model's threshold: fitted on rows the model never trained on, kept only where it
beats the most probable class there, written to config.json, and the one decision that every
way of predicting takes."""
import json

import numpy as np
import pyarrow.csv as pa_csv
import pytest

import train as train_script
from builders import infer, make_data, train, user_error, write
from common.api import Predictor
from common.decision import THRESHOLDS, binary_macro_f1, decided_classes, fit_threshold
from common.errors import UserError
from common.metrics import macro_f1, macro_figures
from common.model_folder import CONFIG_FILE, ModelRecord, load_record


def under_predicted_minority(rows=3000, seed=0):
    """Scores that rank a 20% class well but rarely put it above one half."""
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 0.2).astype(np.int64)
    return np.clip(0.2 + 0.3 * y + rng.normal(0, 0.15, rows), 0, 1), y


def test_each_thresholds_macro_f1_is_the_one_of_the_metrics_module():
    p1, y = under_predicted_minority()
    expected = [macro_f1((p1 > t).astype(np.int64), y, 2) for t in THRESHOLDS]
    assert binary_macro_f1(p1, y, THRESHOLDS) == pytest.approx(expected, abs=1e-12)


def test_an_under_predicted_minority_gets_a_lower_threshold():
    fit = fit_threshold(*under_predicted_minority())
    assert fit is not None and 0.3 < fit.threshold < 0.5
    assert fit.f1_threshold > fit.f1_argmax + 0.02


def test_a_model_whose_most_probable_class_is_right_keeps_it():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 4000)
    p1 = 1 / (1 + np.exp(-(3 * (2 * y - 1) + rng.normal(0, 2, 4000))))  # symmetric: 0.5 is already best
    assert fit_threshold(p1, y) is None
    assert fit_threshold(p1, np.zeros(4000, np.int64)) is None  # one class: nothing to decide


def test_decided_classes_are_the_most_probable_without_a_threshold():
    proba = np.array([[0.7, 0.3], [0.4, 0.6], [0.55, 0.45]])
    assert decided_classes(proba, None).tolist() == [0, 1, 0]
    assert decided_classes(proba, 0.4).tolist() == [0, 1, 1]


def test_a_threshold_for_a_regression_or_three_classes_is_refused(reg_data, small_cls, tmp_path):
    message = user_error(train_script.main, "--data", reg_data, "--ckpt-dir", tmp_path, "--decision", "threshold")
    assert "--decision threshold" in message and "is a regression" in message
    message = user_error(train_script.main, "--data", small_cls, "--ckpt-dir", tmp_path, "--decision", "threshold")
    assert "has 3 classes" in message


def test_a_three_class_model_with_a_threshold_is_refused_where_it_is_read(small_model):
    config = json.loads((small_model / CONFIG_FILE).read_text())
    config["decision"] = {"threshold": 0.4, "f1_argmax": 0.5, "f1_threshold": 0.6}
    with pytest.raises(UserError, match="decides by a threshold, which only a model of two classes does"):
        ModelRecord.read(config, "config.json")


def test_an_imbalanced_table_is_predicted_by_its_threshold_everywhere(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1500, 3))
    label = np.where(x[:, 0] + 0.5 * x[:, 1] + rng.normal(0, 1.0, 1500) > 1.6, "yes", "no")  # ~12% yes
    columns = {"a": x[:, 0], "b": x[:, 1], "c": x[:, 2]}
    write(tmp_path / "t.csv", {**columns, "label": label})
    make_data("--csv", tmp_path / "t.csv", "--target", "label", "--out-dir", tmp_path)
    train("--data", tmp_path / "t", "--ckpt-dir", tmp_path / "run", "--epochs", "6")
    record = load_record(tmp_path / "run")
    assert record.decision is not None and record.threshold is not None and record.threshold < 0.5

    model = Predictor.load(tmp_path / "run")
    proba = model.predict_proba(columns)
    expected = np.asarray(model.classes)[(proba[:, 1] > record.threshold).astype(int)]
    assert (expected != np.asarray(model.classes)[proba.argmax(axis=1)]).any()  # the threshold matters here
    assert (model.predict(columns) == expected).all()
    for output in ("p.csv", "p.npz"):
        infer("--ckpt-dir", tmp_path / "run", "--input", tmp_path / "t.csv", "--output", tmp_path / output)
    assert pa_csv.read_csv(tmp_path / "p.csv").column("prediction").to_pylist() == expected.tolist()
    with np.load(tmp_path / "p.npz", allow_pickle=False) as npz:
        assert npz["prediction"].tolist() == expected.tolist() and "class" not in npz.files
    card = (tmp_path / "run" / "README.md").read_text()
    assert f"exceeds {record.threshold:.2f}" in card
    assert "The figures above are this decision's, on the rows its threshold was chosen on" in card
    # The run's own figures, confusion matrix and importance are the threshold's, as its predictions.
    report = json.loads((tmp_path / "run" / "importance.json").read_text())
    decided = macro_figures(np.asarray(report["confusion_matrix"]))
    assert report["f1_macro"] == pytest.approx(decided["f1_macro"], abs=1e-12)
    assert max(c["mean"] for c in report["importance"]["columns"]) > 0
    assert decided["accuracy"] != pytest.approx(record.outcome.final_metrics["val_accuracy"])  # argmax's
    assert f"| accuracy | {decided['accuracy']:.4f} |" in card

    config = json.loads((tmp_path / "run" / CONFIG_FILE).read_text())
    config["decision"]["threshold"] = 1.5
    (tmp_path / "run" / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(UserError, match="'threshold' = 1.5, expected a number in"):
        load_record(tmp_path / "run")
    config["decision"] = None  # a model that keeps the most probable class
    (tmp_path / "run" / CONFIG_FILE).write_text(json.dumps(config))
    assert (Predictor.load(tmp_path / "run").predict(columns) == np.asarray(model.classes)[proba.argmax(axis=1)]).all()


def test_the_estimator_decides_by_the_threshold_in_its_own_class_order():
    from common.api import TabularClassifier

    rng = np.random.default_rng(3)
    X = rng.normal(size=(1500, 3))
    # 9 is the minority and sorts first as a number but second as text, the model's order.
    y = np.where(X[:, 0] + 0.5 * X[:, 1] + rng.normal(0, 1.0, 1500) > 1.6, 9, 10)
    estimator = TabularClassifier(epochs=6).fit(X, y)
    threshold = estimator.model_.record.threshold
    assert estimator.model_.classes == ["10", "9"] and threshold is not None
    proba = estimator.predict_proba(X)  # columns in classes_ order: 9, 10
    second = estimator._order[1]
    expected = np.where(proba[:, second] > threshold, estimator.classes_[second], estimator.classes_[1 - second])
    assert (estimator.predict(X) == expected).all()
    assert (expected != estimator.classes_[proba.argmax(axis=1)]).any()


def test_a_threshold_tried_and_not_kept_is_said_on_the_console_and_the_card(crossfit_run, capsys):
    import dataclasses
    import types

    from common.data.dataset import load_dataset
    from common.train.card import model_card
    from common.train.session import report_decision

    data = load_dataset(crossfit_run / "people")
    console = types.SimpleNamespace(print=print)
    report_decision(None, "threshold", data, console)
    report_decision(None, "argmax", data, console)
    assert capsys.readouterr().out.splitlines() == [
        "Decision: the most probable class (no threshold beat it on the rows the model never trained on)"]
    record = load_record(crossfit_run / "run")
    kept = dataclasses.replace(record, decision=None, training={**record.training, "decision": "threshold"})
    asked_argmax = dataclasses.replace(kept, training={**record.training, "decision": "argmax"})
    card = lambda r: model_card(crossfit_run / "run", r, data.description, "", {}, "rows", None, [])
    assert "It predicts the most probable class (no threshold beat it" in card(kept)
    assert "It predicts" not in card(asked_argmax)


def test_the_decision_is_taken_after_training_so_a_resumed_run_may_choose_anew():
    from common.train.run_plan import plan_differences

    assert plan_differences({"decision": "argmax", "lr": 0.1}, {"decision": "threshold", "lr": 0.1}) == []
    assert plan_differences({"lr": 0.1}, {"decision": "threshold", "lr": 0.1}) == []  # a checkpoint from before it


def test_the_test_split_is_scored_by_the_models_decision(tmp_path):
    """In infer.py, in config.json and on the card alike: the evaluations take the most probable
    class (the threshold is fitted after them), the test split's figures the threshold's."""
    from common.data.dataset import load_dataset
    from common.metrics import confusion_matrix
    from common.model_folder import load_model_dir
    from common.serve.predict import predict

    rng = np.random.default_rng(3)
    x = rng.normal(size=(2000, 3))
    label = np.where(x[:, 0] + 0.5 * x[:, 1] + rng.normal(0, 1.0, 2000) > 1.6, "yes", "no")
    write(tmp_path / "t.csv", {"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "label": label})
    make_data("--csv", tmp_path / "t.csv", "--target", "label", "--out-dir", tmp_path, "--test-size", "0.25")
    train("--data", tmp_path / "t", "--ckpt-dir", tmp_path / "run", "--epochs", "6")
    infer("--ckpt-dir", tmp_path / "run", "--metrics-json", tmp_path / "m.json")
    record, model = load_model_dir(tmp_path / "run")
    assert record.threshold is not None
    X, y = load_dataset(tmp_path / "t").split("test")
    decided = predict(record, model, np.asarray(X), 4096)["class"]
    expected = confusion_matrix(np.asarray(y), decided, 2).tolist()
    scored = json.loads((tmp_path / "m.json").read_text())
    assert scored["confusion_matrix"] == expected
    by_decision = record.outcome.test_by_decision
    assert set(by_decision) == {"accuracy", "precision_macro", "recall_macro", "f1_macro"}
    assert by_decision["accuracy"] != record.outcome.final_metrics["accuracy"]  # the most probable class's
    assert all(scored[key] == pytest.approx(value, abs=1e-12) for key, value in by_decision.items())
    card = (tmp_path / "run" / "README.md").read_text()
    assert "## Test split (500 rows, never trained on, nor chosen on)" in card
    assert f"| accuracy | {by_decision['accuracy']:.4f} |" in card.split("## Test split")[1]
    # The card's headline, out of fold, is the threshold's too: config.json says so beside final_metrics.
    out_of_fold = record.outcome.val_by_decision
    assert set(out_of_fold) == {"val_accuracy", "val_precision_macro", "val_recall_macro", "val_f1_macro"}
    assert f"| macro-F1 | {out_of_fold['val_f1_macro']:.4f} |" in card.split("## Test split")[0]
    assert f"| accuracy | {out_of_fold['val_accuracy']:.4f} |" in card.split("## Test split")[0]
    assert out_of_fold["val_accuracy"] != record.outcome.final_metrics["val_accuracy"]


def test_the_runs_own_figure_decides_by_the_threshold_as_predictions_do():
    import types

    from common.model import class_probabilities
    from common.train.assessment import scorer

    rng = np.random.default_rng(0)
    out = rng.normal(size=(400, 2)).astype(np.float32)
    y = rng.integers(0, 2, 400)
    plan = types.SimpleNamespace(task="classification")
    data = types.SimpleNamespace(description=types.SimpleNamespace(class_labels=["no", "yes"]))
    proba = class_probabilities(out)
    for threshold in (None, 0.3):
        _, predictions, score = scorer(data, plan, threshold)
        expected = decided_classes(proba, threshold)
        assert (predictions(out, y) == expected).all()
        assert score(predictions(out, y), y) == macro_f1(expected, y, 2)
    assert (scorer(data, plan, 0.3)[1](out, y) != out.argmax(axis=1)).any()

