"""Users' tables by default: folds, the batched ensemble, out-of-fold validation, target transforms."""
import json

import numpy as np
import pytest
import torch
from builders import (
    count_table,
    infer,
    make_data,
    people,
    read_config,
    read_csv_rows,
    read_metrics,
    train,
    user_error,
    write,
)

import make_data as make_data_script
from common.config import TrainConfig, parse_config
from common.data.dataset import load_dataset, unscale_target
from common.data.ingest import looks_like_counts
from common.data.preprocess import target_transform
from common.data.splits import TRAIN_ONLY, fold_ids
from common.model import EnsembleNet, build_model, combine_members, model_spec
from common.train.optim import poisson_deviance
from common.train.run_context import find_context
from common.train.run_plan import make_plan, table_settings


def test_folds_are_stratified_seeded_and_cover_every_row():
    y = np.repeat([0, 1, 2], [500, 80, 20])
    folds = fold_ids(y, 5, 0.0, seed=7)
    for k in range(3):
        assert np.bincount(folds[y == k], minlength=5).tolist() == [np.sum(y == k) // 5] * 5  # each class evenly
    assert (fold_ids(y, 5, 0.0, seed=7) == folds).all() and not (fold_ids(y, 5, 0.0, seed=8) == folds).all()
    holdout = fold_ids(None, 1, 0.1, seed=7, n=1000)
    assert set(np.unique(holdout)) == {TRAIN_ONLY, 0} and (holdout == 0).sum() == 100


def test_a_small_table_cross_fits_and_a_large_one_keeps_one_validation_fold():
    small, large = table_settings(800, False, "classification", {}), table_settings(200_000, False, "regression", {})
    assert small["folds"] == 5 and small["class_weight"] == "none" and small["label_smoothing"] > 0
    assert large["folds"] == 1 and large["label_smoothing"] == 0
    assert table_settings(800, True, "classification", {})["folds"] == 0  # a validation split of its own
    assert table_settings(3, False, "classification", {})["folds"] == 3   # never more folds than rows


def test_the_ensemble_averages_probabilities_and_each_member_trains_apart():
    spec = model_spec(3, [8], 4, "relu", [(5, 2)], members=3, periodic=(4, 2))
    model = build_model(spec)
    assert isinstance(model, EnsembleNet)
    x = torch.tensor([[0.1, -2.0, 1.0, 3.0], [0.0, 0.5, -1.0, 0.0]])
    out = model(x)
    assert out.shape == (2, 3, 4)
    combined = combine_members(out, "classification")
    torch.testing.assert_close(combined.softmax(-1), out.softmax(-1).mean(1))
    torch.testing.assert_close(combine_members(out, "regression"), out.mean(1))
    torch.testing.assert_close(combine_members(out, "regression", log_link=True).exp(), out.exp().mean(1))
    assert not torch.allclose(out[:, 0], out[:, 1])  # members start apart
    torch.testing.assert_close(model(x, member=1)[:, 0], out[:, 1])  # one member alone: scoring out of fold
    # A member's loss reaches its own weights only.
    out[:, 1].sum().backward()
    assert model.weights[0].grad[0].abs().sum() == 0 and model.weights[0].grad[1].abs().sum() > 0


def test_a_skewed_count_target_is_modelled_on_log_scale_and_predicted_in_range(tmp_path):
    visits = count_table(tmp_path / "counts.csv")
    assert target_transform(visits.astype(float))["transform"] == "log_link"
    assert target_transform(np.linspace(-1, 1, 50))["transform"] == "none"  # negatives: as it is
    make_data("--csv", tmp_path / "counts.csv", "--target", "visits", "--out-dir", tmp_path)
    data = load_dataset(tmp_path / "counts")
    target = data.description.target
    assert target == {"transform": "log_link", "low": float(visits.min()), "high": float(visits.max())}
    assert data.description.y_scale == pytest.approx(visits.mean())  # y / its mean: outputs start near log 1
    back = unscale_target(data.y_train, data.description.y_mean, data.description.y_scale, target, prediction=False)
    np.testing.assert_allclose(np.sort(back[:, 0]), np.sort(visits), rtol=1e-5)
    train("--data", tmp_path / "counts", "--ckpt-dir", tmp_path / "run", "--epochs", "6")
    write(tmp_path / "new.csv", {"x": [-30.0, 0.0, 30.0], "shop": ["b", "a", "a"]})  # far outside training
    infer("--ckpt-dir", tmp_path / "run", "--input", tmp_path / "new.csv", "--output", tmp_path / "p.csv")
    predicted = [float(r["prediction"]) for r in read_csv_rows(tmp_path / "p.csv")]
    assert all(visits.min() <= p <= visits.max() for p in predicted)  # never a negative count
    record = read_metrics(tmp_path / "run")[-1]
    assert {"val_r2", "val_mae"} <= record.keys() and "train_r2" not in record  # out of fold, on the original scale


def test_the_poisson_deviance_is_zero_at_the_truth_and_least_at_the_mean():
    y = torch.tensor([0.0, 0.0, 1.0, 5.0])
    assert poisson_deviance(torch.log(y.clamp_min(1e-30)), y).abs().max() < 1e-6
    constants = torch.linspace(-1.0, 1.5, 251)  # one log-mean for all four rows
    total = torch.stack([poisson_deviance(c.expand(4), y).sum() for c in constants])
    assert constants[total.argmin()].exp() == pytest.approx(y.mean().item(), rel=0.01)  # the mean, not the median


@pytest.mark.parametrize("choice", ["log1p", "none"])
def test_a_chosen_target_transform_round_trips_and_a_negative_target_refuses_a_log(tmp_path, choice):
    visits = count_table(tmp_path / "counts.csv")
    make_data("--csv", tmp_path / "counts.csv", "--target", "visits", "--target-transform", choice,
              "--out-dir", tmp_path)
    data = load_dataset(tmp_path / "counts")
    assert data.description.target["transform"] == choice
    back = unscale_target(data.y_train, data.description.y_mean, data.description.y_scale, data.description.target,
                          prediction=False)
    np.testing.assert_allclose(np.sort(back[:, 0]), np.sort(visits), rtol=1e-4, atol=1e-3)
    write(tmp_path / "signed.csv", {"x": np.arange(50.0) % 7, "y": np.arange(50.0) - 10})
    message = user_error(make_data_script.main, "--csv", tmp_path / "signed.csv", "--target", "y",
                         "--target-transform", "log_link", "--out-dir", tmp_path)
    assert "never negative" in message and "--target-transform none" in message


@pytest.fixture(scope="module")
def crossfit_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("crossfit")
    write(tmp / "people.csv", people(rows=500))
    make_data("--csv", tmp / "people.csv", "--target", "label", "--out-dir", tmp)
    train("--data", tmp / "people", "--ckpt-dir", tmp / "run", "--epochs", "12")
    return tmp


def test_out_of_fold_validation_scores_every_labelled_row_once(crossfit_run):
    config = read_config(crossfit_run / "run")
    assert config["training"]["folds"] == 5 and config["model"]["members"] == 5
    assert config["final_metrics"]["val_n"] == 500  # every row, by the one member that never trained on it
    assert config["weights"] == "best" and config["best_epoch"] == config["final_metrics"]["epoch"]


def test_the_plan_resolves_the_folds_from_the_data(crossfit_run):
    cfg = parse_config(TrainConfig, ["--data", str(crossfit_run / "people"), "--ckpt-dir", str(crossfit_run / "x")])
    data = load_dataset(crossfit_run / "people")
    plan = make_plan(cfg, data, find_context(cfg, 1, 1))
    assert (plan.folds, plan.members, plan.monitor) == (5, 5, "val_f1_macro")
    assert plan.model_spec()["members"] == 5 and "5-fold cross-fitting" in plan.describe()


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


def test_the_best_macro_f1_is_kept_and_a_best_first_evaluation_is_flagged():
    from common.train.early_stopping import BestTracker

    best = BestTracker(0, "val_f1_macro", keep_best=True)
    model = torch.nn.Linear(1, 1)
    for epoch, f1 in ((0, 0.7), (3, 0.6), (6, 0.65)):
        best.update({"epoch": epoch, "val_f1_macro": f1}, model)
    assert best.best_was_first() and best.best_value() == 0.7 and best.weights is not None
    best.update({"epoch": 9, "val_f1_macro": 0.75}, model)  # higher is better for F1
    assert best.epoch == 9 and not best.best_was_first()


def test_a_count_target_with_few_values_is_a_regression_unless_told(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=600)
    write(tmp_path / "visits.csv", {"x": x, "visits": np.minimum(rng.poisson(np.exp(0.8 * x - 0.3)), 12)})
    make_data("--csv", tmp_path / "visits.csv", "--target", "visits", "--out-dir", tmp_path / "auto")
    counted = load_dataset(tmp_path / "auto" / "visits").description
    assert counted.task == "regression" and "skewed like counts" in counted.source["task_reason"]
    make_data("--csv", tmp_path / "visits.csv", "--target", "visits", "--task", "classification",
              "--out-dir", tmp_path / "told")
    assert load_dataset(tmp_path / "told" / "visits").description.task == "classification"


COUNTS = np.arange(10.0)


@pytest.mark.parametrize("frequencies,counts", [
    ([500, 200, 100, 60, 40, 30, 20, 10, 5, 3], True),     # doctor visits: piled up at 0, a long tail
    ([100] * 10, False),                                     # the ten digits: evenly spread classes
    ([5, 20, 100, 300, 400, 300, 100, 20, 5, 1], False),     # scores around a middle
])
def test_whole_numbers_skewed_like_counts_are_a_regression(frequencies, counts):
    assert looks_like_counts(COUNTS, np.array(frequencies)) is counts


def test_few_or_negative_whole_numbers_stay_classes():
    assert not looks_like_counts(np.arange(3.0), np.array([900, 50, 50]))  # an imbalanced class code
    assert not looks_like_counts(COUNTS - 5, np.array([500, 200, 100, 60, 40, 30, 20, 10, 5, 3]))


def test_an_older_log1p_model_still_predicts_expm1_of_its_output_within_range():
    target = {"transform": "log1p", "low": 0.0, "high": 50.0}
    out = np.array([[-3.0], [0.0], [1.0], [9.0]])
    predicted = unscale_target(out, 1.0, 0.5, target)[:, 0]
    np.testing.assert_allclose(predicted, np.clip(np.expm1(out[:, 0] * 0.5 + 1.0), 0.0, 50.0))
    assert unscale_target(out, 1.0, 0.5, target, prediction=False)[3, 0] == pytest.approx(np.expm1(5.5))


def test_a_skewed_target_with_one_negative_value_anywhere_is_modelled_as_it_is(tmp_path):
    rng = np.random.default_rng(4)
    y = rng.lognormal(0.0, 1.0, 400)
    y[-1] = -0.5  # one row, in whichever split: under a log link its loss would be NaN
    write(tmp_path / "skewed.csv", {"x": rng.normal(size=400), "y": y})
    make_data("--csv", tmp_path / "skewed.csv", "--target", "y", "--test-size", "0.2", "--out-dir", tmp_path)
    assert load_dataset(tmp_path / "skewed").description.target["transform"] == "none"


def test_a_class_weight_with_label_smoothing_weighs_each_row_by_its_own_class():
    from common.train.optim import member_losses

    logits = torch.zeros(1, 1, 2, requires_grad=True)
    y, weight = torch.tensor([0]), torch.tensor([0.5, 15.0])  # a rare class 1, weighted 30 to 1
    loss = member_losses("classification", logits, y, weight, label_smoothing=0.1)
    plain = member_losses("classification", logits, y, None, label_smoothing=0.1)
    assert loss.item() == pytest.approx(0.5 * plain.item())
    loss.sum().backward()
    assert logits.grad[0, 0, 0] < 0  # a row of class 0 still pulls the model towards class 0
