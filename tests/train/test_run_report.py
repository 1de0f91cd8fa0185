"""What a finished run writes for a person (common/train/run_report.py, common/train/assessment.py,
common/figures.py, common/train/card.py): importance.json, the pictures and the model card."""
from __future__ import annotations

import json

import numpy as np
import pytest

from builders import make_data, read_config, read_metrics, train, write
from common.data.dataset import load_dataset
from common.model_folder import CARD_FILE
from common.train.run_report import CARD_MARK


def picture(path):
    """A PNG read back: its pixels (height x width x channels)."""
    from matplotlib.image import imread

    return imread(path)


@pytest.mark.parametrize("name,smallest", [("curves.png", (300, 700)), ("importance.png", (200, 500)),
                                           ("confusion.png", (250, 250))])
def test_a_users_table_gets_its_pictures_and_they_are_not_blank(crossfit_run, name, smallest):
    pixels = picture(crossfit_run / "run" / name)
    assert pixels.shape[0] >= smallest[0] and pixels.shape[1] >= smallest[1]
    assert pixels[..., :3].std() > 0.05  # lines, bars and text on the white


def test_the_out_of_fold_figures_are_those_of_the_kept_evaluation(people_set, tmp_path):
    """The assessment scores every training row with the member that never trained on it, with the
    kept weights: exactly what the kept evaluation scored (both by the most probable class here; a
    threshold decides the assessment's classes where the model has one, tests/test_decision.py)."""
    made, _ = people_set
    train("--data", made / "people", "--ckpt-dir", tmp_path / "run", "--epochs", "4", "--decision", "argmax")
    report = json.loads((tmp_path / "run" / "importance.json").read_text())
    best = read_config(tmp_path / "run")["outcome"]["final_metrics"]
    rows = load_dataset(made / "people").description.n_train
    assert report["scored_on"] == "out of fold" and report["rows"] == best["val_n"] == rows
    assert report["f1_macro"] == pytest.approx(best["val_f1_macro"], abs=1e-12)
    confusion = np.asarray(report["confusion_matrix"])
    assert confusion.sum() == rows and np.trace(confusion) / rows == pytest.approx(best["val_accuracy"], abs=1e-12)


def test_importance_names_every_column_once_and_finds_the_ones_that_matter(crossfit_run):
    """people(): the label follows city, member and age; the constant and empty columns are not features."""
    importance = json.loads((crossfit_run / "run" / "importance.json").read_text())["importance"]
    columns = [c["column"] for c in importance["columns"]]
    assert sorted(columns) == ["age", "city", "member"]  # age and age_missing count as one column
    assert all(c["mean"] > 0.02 and len(c["drops"]) == importance["repeats"] for c in importance["columns"])
    means = [c["mean"] for c in importance["columns"]]
    assert means == sorted(means, reverse=True) and importance["rows"] == 500


def test_every_evaluation_records_each_members_figure_on_its_fold(crossfit_run):
    for record in read_metrics(crossfit_run / "run"):
        members = record["val_members"]
        assert len(members) == 5 and all(0 <= f <= 1 for f in members)
        assert min(members) <= record["val_f1_macro"] + 0.05 and max(members) >= record["val_f1_macro"] - 0.05


def test_the_card_is_a_hub_model_card(crossfit_run):
    from huggingface_hub import ModelCard

    card = ModelCard.load(crossfit_run / "run" / CARD_FILE)
    assert card.data.pipeline_tag == "tabular-classification" and card.data.library_name == "pytorch"
    result = card.data.eval_results[0]
    report = json.loads((crossfit_run / "run" / "importance.json").read_text())
    assert result.metric_type == "f1" and result.metric_value == pytest.approx(report["f1_macro"], abs=1e-6)
    for words in ("`label`", "from 3 columns of", "`city`", "categorical", "![curves](curves.png)", "Predictor.load",
                  "infer.py"):
        assert words in card.text, words


def test_a_regression_after_a_classification_leaves_no_stale_picture_and_keeps_a_users_readme(
        people_set, tmp_path, capsys):
    made, _ = people_set
    run = tmp_path / "run"
    train("--data", made / "people", "--ckpt-dir", run, "--epochs", "2", "--pictures")
    assert (run / "confusion.png").is_file() and CARD_MARK in (run / CARD_FILE).read_text()
    rng = np.random.default_rng(0)
    write(tmp_path / "r.csv", {"x": rng.normal(size=200), "y": rng.normal(size=200)})
    make_data("--csv", tmp_path / "r.csv", "--target", "y", "--out-dir", tmp_path / "data")
    (run / CARD_FILE).write_text("# my own notes\n")
    train("--data", tmp_path / "data" / "r", "--ckpt-dir", run, "--epochs", "2", "--pictures")
    assert not (run / "confusion.png").exists() and (run / "curves.png").is_file()
    assert (run / CARD_FILE).read_text() == "# my own notes\n" and "not a model card of ours" in capsys.readouterr().out
    assert json.loads((run / "importance.json").read_text())["importance"]["figure"] == "r2"


def test_no_pictures_and_no_importance_when_asked(small_cls, tmp_path):
    train("--data", small_cls, "--ckpt-dir", tmp_path, "--epochs", "1", "--importance-rows", "0")
    assert not list(tmp_path.glob("*.png"))
    report = json.loads((tmp_path / "importance.json").read_text())
    assert report["importance"] is None and report["scored_on"] == "test" and report["rows"] == 1201


def test_a_report_that_fails_costs_a_note_never_the_model(small_cls, tmp_path, monkeypatch, capsys):
    from common.train import run_report

    def broken(*args, **kwargs):
        raise RuntimeError("no luck")

    monkeypatch.setattr(run_report, "assess", broken)
    train("--data", small_cls, "--ckpt-dir", tmp_path, "--epochs", "1")
    assert (tmp_path / "model.safetensors").is_file() and not (tmp_path / "importance.json").exists()
    assert "report (importance, pictures, card) could not be made (RuntimeError: no luck)" in capsys.readouterr().out


def test_importance_json_reads_back_through_its_schema(crossfit_run):
    from common.train.assessment import Assessment

    path = crossfit_run / "run" / "importance.json"
    report = Assessment.read(json.loads(path.read_text()), str(path))
    assert report.figure == "f1_macro" and report.importance is not None and report.rows == 500
    assert Assessment.read(report.to_json(), str(path)) == report


@pytest.mark.parametrize("argv,asked", [([], True), (["--no-pictures"], False), (["--no-pictures", "--pictures"], True),
                                        (["--epochs", "3", "--no-pictures"], False)])
def test_the_command_line_says_whether_pictures_are_drawn(argv, asked):
    from common.figures import pictures_asked

    assert pictures_asked(argv) is asked


class FakePainter:
    started = 0

    def __init__(self):
        self.stopped = False

    def start(self):
        FakePainter.started += 1

    def __exit__(self, *exc):
        self.stopped = True


@pytest.mark.parametrize("rank,argv,starts", [(None, [], True), ("0", ["--epochs", "2"], True), ("1", [], False),
                                              (None, ["--no-pictures"], False), (None, ["--help"], False)])
def test_the_painter_starts_before_torch_only_in_the_main_process_of_a_run_that_draws(monkeypatch, rank, argv, starts):
    import common.figures as figures

    monkeypatch.setattr(figures, "Painter", FakePainter)
    monkeypatch.setattr(figures, "_started_early", [])
    monkeypatch.setattr(FakePainter, "started", 0)
    if rank is None:
        monkeypatch.delenv("RANK", raising=False)
    else:
        monkeypatch.setenv("RANK", rank)
    figures.start_early(argv)
    figures.start_early(argv)  # once, however often asked
    assert FakePainter.started == (1 if starts else 0)
    assert len(figures._started_early) == (1 if starts else 0)


@pytest.mark.parametrize("pictures,main", [(True, True), (False, True), (True, False)])
def test_the_run_takes_the_painter_started_early_or_stops_it(monkeypatch, pictures, main):
    from types import SimpleNamespace

    import common.figures as figures
    from common.train.session import painter

    early = FakePainter()
    monkeypatch.setattr(figures, "_started_early", [early])
    plan = SimpleNamespace(run=SimpleNamespace(pictures=pictures))
    taken = painter(plan, SimpleNamespace(is_main_process=main))
    assert (taken is early) is (pictures and main)
    assert early.stopped is not (pictures and main)
    assert figures._started_early == []


def test_the_cards_epochs_say_which_were_legs():
    from common.model_folder import RunOutcome
    from common.train.card import epochs_text

    assert epochs_text(RunOutcome(epochs_run=91, weights="best", best_epoch=88, legs=[27, 11])) == (
        "91 (53 planned, then legs of 27 and 11 while the best came late), the best evaluation's weights kept "
        "(epoch 88)")
    assert epochs_text(RunOutcome(epochs_run=16)) == "16, the last epoch's weights"


def test_a_validation_folds_figures_come_from_its_rows_alone(people_set, tmp_path):
    """One member and a validation fold: the last look scores the fold's rows, the trainer's,
    and its figure is the kept evaluation's."""
    made, _ = people_set
    train("--data", made / "people", "--ckpt-dir", tmp_path / "run", "--folds", "1", "--epochs", "4",
          "--decision", "argmax")
    report = json.loads((tmp_path / "run" / "importance.json").read_text())
    config = read_config(tmp_path / "run")
    assert report["scored_on"] == "validation fold"
    assert report["rows"] == config["outcome"]["final_metrics"]["val_n"] < 600 * 0.2  # not every training row
    assert report["f1_macro"] == pytest.approx(config["outcome"]["final_metrics"]["val_f1_macro"], abs=1e-6)


def test_the_card_gives_a_dates_median_as_a_date_and_a_numbers_as_it_reads():
    import datetime

    from common.steps import NumericStep, Preprocessor
    from common.train.card import how_prepared

    signed = datetime.datetime(2021, 5, 12, tzinfo=datetime.timezone.utc).timestamp()
    pre = Preprocessor([NumericStep("signed", signed, signed, 3e7, True, None, ("month", "weekday")),
                        NumericStep("age", 41.5, 40.0, 12.0, True)], [])
    assert "blanks take the median 2021-05-12 00:00:00+00:00" in how_prepared("signed", pre)
    assert how_prepared("signed", pre).startswith("a date: its instant (standardised)")
    assert "blanks take the median 41.5 " in how_prepared("age", pre)


def test_a_run_folder_named_in_bytes_that_are_not_utf8_gets_its_card(small_cls, tmp_path):
    """The card names its folder: written as UTF-8 text, Python's surrogate for the byte 0xff
    failed the commit with a traceback, and the finished run was lost."""
    import os

    folder = tmp_path / os.fsdecode(b"bad\xffname")
    train("--data", small_cls, "--ckpt-dir", folder, "--epochs", "1")
    assert b"bad\xffname" in (folder / CARD_FILE).read_bytes() and (folder / "model.safetensors").exists()
    from common.api import Predictor

    assert Predictor.load(folder).predict_proba(np.zeros((2, 10))).shape == (2, 3)  # and its weights are read


@pytest.mark.parametrize("folds", ["5", "0"])
def test_a_regressions_card_gives_its_figures_and_its_test_splits(tmp_path, folds):
    """Out of fold with a test split besides (its own section), or scored on the test split
    itself: MAE and RMSE either way, named as the evaluations name a regression's."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 3))
    write(tmp_path / "t.csv", {"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "y": x @ [1.0, -2.0, 0.5]})
    make_data("--csv", tmp_path / "t.csv", "--target", "y", "--out-dir", tmp_path, "--test-size", "0.25")
    train("--data", tmp_path / "t", "--ckpt-dir", tmp_path / "run", "--epochs", "2", "--folds", folds,
          *(["--patience", "0"] if folds == "0" else []))
    card = (tmp_path / "run" / CARD_FILE).read_text()
    final = read_config(tmp_path / "run")["outcome"]["final_metrics"]
    figures, _, test = card.partition("## Test split (150 rows")
    if folds == "0":  # no rows held out but the test split: its figures are of the last weights, not chosen ones
        assert read_config(tmp_path / "run")["outcome"]["weights"] == "last"
        assert "## Figures (test)" in figures and not test
        assert f"| MAE | {final['test_mae']:.4f} |" in figures and f"| RMSE | {final['test_rmse']:.4f} |" in figures
    else:
        assert "## Figures (out of fold)" in figures and f"| MAE | {final['val_mae']:.4f} |" in figures
        assert f"| MAE | {final['test_mae']:.4f} |" in test and f"| R² | {final['test_r2']:.4f} |" in test


def test_the_card_names_the_network_as_it_is():
    from common.train.card import network_in_words

    assert network_in_words(0, [], "relu") == "a linear model"  # the regression recipe: no ReLU anywhere
    assert network_in_words(0, [20], "relu") == "an MLP (20, relu)"
    assert network_in_words(1, [64, 32], "gelu") == "an MLP (64 x 32, gelu)"  # --folds 1: one member
    assert network_in_words(5, [128, 128], "relu") == "an ensemble of 5 MLPs (128 x 128, relu)"
    assert network_in_words(3, [], "relu") == "an ensemble of 3 linear models"


def test_the_cards_rows_say_what_the_training_rows_held_out():
    """3,000,000 training, 0 validation, 0 test: while the figures were on a validation fold of them."""
    from common.train.card import held_out_of_training

    assert held_out_of_training({"folds": 5}) == " (in 5 folds, each member validated on its own)"
    assert held_out_of_training({"folds": 1}) == " (a validation fold of them held out)"
    assert held_out_of_training({"folds": 0}) == held_out_of_training({}) == ""  # the recipes, a validation split
