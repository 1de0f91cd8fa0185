import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from common.metrics import (
    classification_figures,
    classification_report,
    classification_stats,
    regression_figures,
    regression_stats,
)


def test_classification_figures_match_sklearn_when_summed_over_shards():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 1001)
    logits = rng.normal(size=(1001, 3)) + np.eye(3)[y] * 1.5
    stats = sum(
        classification_stats(torch.tensor(logits[s]), torch.tensor(y[s]), 3, torch.tensor(0.0)).numpy()
        for s in (slice(0, 334), slice(334, 667), slice(667, 1001))
    )
    figures = classification_figures(stats, 3)
    pred = logits.argmax(1)
    assert figures["n"] == 1001
    assert figures["accuracy"] == skm.accuracy_score(y, pred)
    assert np.isclose(figures["precision_macro"], skm.precision_score(y, pred, average="macro"))
    assert np.isclose(figures["recall_macro"], skm.recall_score(y, pred, average="macro"))
    assert figures["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()


def test_regression_figures_match_sklearn_on_the_original_scale():
    rng = np.random.default_rng(1)
    y_mean, y_scale = 3.0, 40.0
    y_s = rng.normal(size=(501, 1))
    p_s = y_s + rng.normal(scale=0.1, size=(501, 1))
    stats = sum(
        regression_stats(torch.tensor(p_s[s]), torch.tensor(y_s[s]), y_scale, torch.tensor(0.0)).numpy()
        for s in (slice(0, 250), slice(250, 501))
    )
    figures = regression_figures(stats)
    y, p = y_s * y_scale + y_mean, p_s * y_scale + y_mean
    assert np.isclose(figures["mae"], skm.mean_absolute_error(y, p))
    assert np.isclose(figures["rmse"], np.sqrt(skm.mean_squared_error(y, p)))
    assert np.isclose(figures["r2"], skm.r2_score(y, p))


@pytest.mark.parametrize("seed", range(6))
def test_the_report_from_a_confusion_matrix_is_scikit_learns_to_the_bit(seed):
    """Random matrices, some with a class never true, never predicted, or neither."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 6))
    cm = rng.integers(0, 40, (k, k)) * (rng.random((k, k)) < 0.7)
    if seed % 2:
        cm[:, -1] = 0  # never predicted
    if seed % 3 == 0:
        cm[0, :] = 0  # never true
    cm[1, 1] += 1
    y_true, y_pred = np.repeat(np.divmod(np.arange(k * k), k), cm.ravel(), axis=1)
    report, labels = classification_report(cm), list(range(k))
    seen = [c for c in labels if c in set(y_true) | set(y_pred)]
    kw = {"zero_division": 0}
    assert report["accuracy"] == skm.accuracy_score(y_true, y_pred)
    assert report["precision_macro"] == skm.precision_score(y_true, y_pred, labels=seen, average="macro", **kw)
    assert report["recall_macro"] == skm.recall_score(y_true, y_pred, labels=seen, average="macro", **kw)
    assert report["f1_macro"] == skm.f1_score(y_true, y_pred, labels=seen, average="macro", **kw)
    precision, recall, _, support = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, **kw)
    assert report["precision"] == precision.tolist() and report["recall"] == recall.tolist()
    assert report["support"] == support.tolist() and report["confusion_matrix"] == cm.tolist()
