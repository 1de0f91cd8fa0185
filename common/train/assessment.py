"""The run's last look at its model, once the weights are final: its predictions on rows it
never trained on, their confusion matrix, and which columns matter (common/importance.py).

The rows are the most honest ones the data set has: out of fold for a cross-fitted ensemble
(each training row scored by the member that never trained on it, so no test split is needed),
the validation fold or split otherwise, else the test split (the recipes). Importance shuffles a
seeded sample of at most `--importance-rows` of them (5,000), RUN_REPEATS (3) times per column: its
cost is bounded by that, whatever the table's size. The main process computes it alone, on the
CPU, from the final weights: every process count and device gives the same figures.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from common.data.dataset import TabularData
from common.decision import ThresholdFit, decided_classes, fit_threshold
from common.importance import RUN_REPEATS, Importance, permutation_importance
from common.metrics import confusion_matrix, macro_f1, macro_figures, r2
from common.model import build_model, class_probabilities, pass_rows, predicted_outputs
from common.schema import Fields
from common.steps import has_link
from common.train.crossfit import out_of_fold_in_order
from common.train.run_plan import TrainPlan
from common.train.trainer import record_key

SCORE_CHUNK = 1 << 16     # rows read at a time (a read's passes: common/model.pass_rows)
REPORT_FORMAT = 1         # importance.json's format


@dataclasses.dataclass
class ScoredRows:
    """The rows the assessment scores: inputs, targets as the data set holds them, and each row's
    member (out of fold) or None (the members combined)."""
    X: Any
    y: Any
    fold: np.ndarray | None
    name: str   # "out of fold", "validation fold", "validation", "test"


@dataclasses.dataclass
class Assessment:
    """importance.json: its one schema."""

    scored_on: str
    rows: int
    figure: str                         # f1_macro or r2
    value: float
    confusion: list[list[int]] | None   # classification: true x predicted, over every scored row
    importance: Importance | None

    def to_json(self) -> dict[str, Any]:
        return {"format": REPORT_FORMAT, "scored_on": self.scored_on, "rows": self.rows, "figure": self.figure,
                self.figure: self.value, "confusion_matrix": self.confusion,
                "importance": self.importance.to_json() if self.importance else None}

    @classmethod
    def read(cls, obj: Any, path: str) -> Assessment:
        f = Fields(obj, path, "retrain the model to write it again")
        version = f.integer("format", minimum=1)
        if version > REPORT_FORMAT:
            raise f.error(f"is of format {version}, newer than this code reads ({REPORT_FORMAT})")
        figure = f.text("figure", ("f1_macro", "r2"))
        confusion = f.value("confusion_matrix", None)
        importance = f.obj_of("importance", default=None) if f.value("importance", None) is not None else None
        return cls(f.text("scored_on"), f.integer("rows"), figure, f.number(figure), confusion,
                   Importance.from_json(importance) if importance else None)


def scored_rows(plan: TrainPlan, data: TabularData, folds: np.ndarray | None) -> ScoredRows | None:
    """The rows the run's figures come from: out of fold, the validation fold, the validation
    split or the test split; None where the data set has no rows the model never trained on.
    `folds`: each training row's fold as the run dealt them (the trainer's), where it cross-fits:
    dealing them again took a second each time on 10M rows."""
    if plan.crossfit.validates:
        assert folds is not None
        name = "out of fold" if plan.crossfit.folds >= 2 else "validation fold"
        members = max(1, plan.model.members)
        keep = np.flatnonzero((folds >= 0) & (folds < members))
        return ScoredRows(data.X_train, data.y_train, folds, name) if len(keep) == len(folds) else \
            ScoredRows(Rows(data.X_train, keep), Rows(data.y_train, keep), folds[keep], name)
    if data.n_val:
        return ScoredRows(data.X_val, data.y_val, None, "validation")
    if len(data.y_test):
        return ScoredRows(data.X_test, data.y_test, None, "test")
    return None


class Rows:
    """Some rows of a (memory-mapped) array, read only when sliced."""

    def __init__(self, array: Any, index: np.ndarray):
        self.array, self.index = array, index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, part: Any) -> np.ndarray:
        return np.asarray(self.array[self.index[part]])


@torch.inference_mode()
def outputs(net: Any, X: np.ndarray, fold: np.ndarray | None, plan: TrainPlan, link: bool) -> np.ndarray:
    """The final model's outputs for rows X: each by its own member, or the members combined (as
    prediction combines them)."""
    parts, rows_per_pass = [], pass_rows(plan.model)
    for start in range(0, len(X), SCORE_CHUNK):
        x = np.array(X[start:start + SCORE_CHUNK], dtype=np.float32)
        if fold is None:
            parts.append(predicted_outputs(net, x, plan.task, link, rows_per_pass=rows_per_pass))
        else:
            f = torch.from_numpy(fold[start:start + SCORE_CHUNK].astype(np.int64))
            parts.append(out_of_fold_in_order(net, torch.from_numpy(x), f, plan.model.members).numpy())
    return np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)


def scorer(data: TabularData, plan: TrainPlan, threshold: float | None = None
           ) -> tuple[str, Callable[[np.ndarray, np.ndarray], np.ndarray], Callable[[np.ndarray, np.ndarray], float]]:
    """The run's figure: (its name, outputs -> predictions, (predictions, targets) -> figure). A
    classifier's predictions are its decision: the most probable class, or by `threshold` (two
    classes) as the model predicts."""
    if plan.task == "classification":
        classes = len(data.description.class_labels or [])
        return ("f1_macro", lambda out, y: decided_classes(class_probabilities(out), threshold),
                lambda pred, y: macro_f1(pred, np.asarray(y, dtype=np.int64), classes))
    target = data.description.target
    assert target is not None
    return ("r2", lambda out, y: target.original(out)[:, 0],
            lambda pred, y: r2(pred, target.original(np.asarray(y), prediction=False)[:, 0]))


def final_net(plan: TrainPlan, weights: dict[str, torch.Tensor]) -> Any:
    """The network of the final weights, in eval mode."""
    net = build_model(plan.model)
    net.load_state_dict(weights)
    return net.eval()


def fitted_decision(plan: TrainPlan, rows: ScoredRows | None, weights: dict[str, torch.Tensor]) -> ThresholdFit | None:
    """The two-class threshold (common/decision.py) fitted on the rows the final weights never
    trained on (scored_rows): out of fold, the validation fold or the validation split; never the
    test split. None where the plan keeps the most probable class, or the threshold does not
    beat it there."""
    if plan.run.decision != "threshold":  # the plan resolved it: two classes only
        return None
    if rows is None or rows.name == "test" or not len(rows.y):
        return None
    net = final_net(plan, weights)
    proba = class_probabilities(outputs(net, rows.X, rows.fold, plan, link=False))
    return fit_threshold(proba[:, 1], np.asarray(rows.y[:]))


def test_by_decision(plan: TrainPlan, data: TabularData, weights: dict[str, torch.Tensor],
                     decision: ThresholdFit | None) -> dict[str, float]:
    """The test split's accuracy and macro figures as the model decides, by its two-class
    threshold: what infer.py reports on those rows. Empty without a threshold or a test split."""
    return by_decision(plan, data, weights, decision, ScoredRows(data.X_test, data.y_test, None, "test"), "test")


def val_by_decision(plan: TrainPlan, data: TabularData, weights: dict[str, torch.Tensor],
                    decision: ThresholdFit | None, rows: ScoredRows | None) -> dict[str, float]:
    """The same figures on the rows the threshold was fitted on (scored_rows: out of fold, or the
    validation rows), named as final_metrics names the validation figures: the card's headline."""
    return {} if rows is None else by_decision(plan, data, weights, decision, rows, "val")


def by_decision(plan: TrainPlan, data: TabularData, weights: dict[str, torch.Tensor], decision: ThresholdFit | None,
                rows: ScoredRows, split: str) -> dict[str, float]:
    """`rows`' accuracy and macro figures by the two-class threshold, each named as final_metrics
    names `split`'s. The evaluations (metrics.jsonl, and final_metrics, the kept one) take the most
    probable class, the threshold being fitted after them. Empty without a threshold or rows."""
    if decision is None or not len(rows.y):
        return {}
    proba = class_probabilities(outputs(final_net(plan, weights), rows.X, rows.fold, plan, link=False))
    classes = len(data.description.class_labels or [])
    figures = macro_figures(confusion_matrix(np.asarray(rows.y[:]), decided_classes(proba, decision.threshold),
                                             classes))
    return {record_key(split, k): v for k, v in figures.items() if k != "confusion_matrix"}  # as final_metrics


def assess(plan: TrainPlan, data: TabularData, rows: ScoredRows | None, weights: dict[str, torch.Tensor],
           scored: Callable[[Assessment], None] = lambda assessment: None,
           threshold: float | None = None) -> Assessment | None:
    """The final weights' figure and confusion matrix on the scored rows (scored_rows), and each
    column's permutation importance on a sample of them, a classifier deciding by its `threshold`
    where it has one; None where the data set has no such rows. `scored` is told the figures
    before the importance is measured (to draw them meanwhile)."""
    if rows is None or not len(rows.y):
        return None
    net = final_net(plan, weights)
    link = has_link(data.description.target)
    figure, predictions, score = scorer(data, plan, threshold)
    y_all = np.asarray(rows.y[:])
    predicted = predictions(outputs(net, rows.X, rows.fold, plan, link), y_all)
    confusion = None
    if plan.task == "classification":
        confusion = confusion_matrix(y_all, predicted, len(data.description.class_labels or [])).tolist()
    assessment = Assessment(rows.name, len(y_all), figure, score(predicted, y_all), confusion, None)
    scored(assessment)
    if plan.run.importance_rows:
        rng = np.random.default_rng(plan.seed)
        sample = np.sort(rng.choice(len(y_all), size=min(len(y_all), plan.run.importance_rows), replace=False))
        X, y = np.asarray(rows.X[sample], dtype=np.float32), y_all[sample]
        fold = rows.fold[sample] if rows.fold is not None else None
        assessment.importance = permutation_importance(
            lambda x: score(predictions(outputs(net, x, fold, plan, link), y), y), X,
            data.preprocessor.column_inputs(), figure, RUN_REPEATS, plan.seed, rows.name)
    return assessment
