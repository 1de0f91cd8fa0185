"""Permutation importance (common/importance.py): scikit-learn's shuffles, a column's inputs moved
together, and the figures it is measured by (common/metrics.py): one macro-F1, scikit-learn's."""
from __future__ import annotations

import numpy as np
import pytest

from common.importance import permutation_importance
from common.metrics import classification_report, confusion_matrix, macro_f1, r2
from common.steps import CategoricalStep, NumericStep, Preprocessor


def test_a_column_moves_with_its_missing_input():
    numeric = [NumericStep("a", 0, 0, 1, True), NumericStep("b", 0, 0, 1, False), NumericStep("c", 0, 0, 1, True)]
    pre = Preprocessor(numeric, [CategoricalStep("d", ["x"])])
    assert pre.input_names == ["a", "b", "c", "a_missing", "c_missing", "d"]
    assert pre.column_inputs() == {"a": [0, 3], "b": [1], "c": [2, 4], "d": [5]}


def test_a_column_the_model_ignores_matters_not_at_all_and_the_shuffles_are_scikit_learns():
    from sklearn.inspection import permutation_importance as sklearn_importance

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = 2 * X[:, 0] + X[:, 1]

    class Linear:  # what scikit-learn needs of an estimator it is handed fitted
        def fit(self, X, y):
            return self

        def predict(self, X):
            return 2 * X[:, 0] + X[:, 1]

        def score(self, X, y):
            return r2(self.predict(X), y)

    ours = permutation_importance(lambda x: r2(Linear().predict(x), y), X, {"a": [0], "b": [1], "c": [2]}, "r2",
                                  repeats=4, seed=7)
    theirs = sklearn_importance(Linear(), X, y, n_repeats=4, random_state=7)
    by_name = {c.column: c for c in ours.columns}
    for i, name in enumerate("abc"):
        np.testing.assert_allclose(by_name[name].drops, theirs.importances[i], rtol=0, atol=1e-12)
    assert by_name["c"].mean == 0 and by_name["a"].mean > by_name["b"].mean > 0
    assert [c.column for c in ours.columns][:2] == ["a", "b"] and ours.baseline == 1.0


@pytest.mark.parametrize("seed", range(3))
def test_the_figures_are_scikit_learns(seed):
    from sklearn.metrics import f1_score, r2_score

    rng = np.random.default_rng(seed)
    truth, predicted = rng.integers(0, 4, 50), rng.integers(0, 3, 50)  # class 3 never predicted
    assert macro_f1(predicted, truth, 4) == pytest.approx(f1_score(truth, predicted, average="macro"), abs=1e-12)
    y, p = rng.normal(size=40), rng.normal(size=40)
    assert r2(p, y) == pytest.approx(r2_score(y, p), abs=1e-12)
    assert r2(np.ones(3), np.ones(3)) == 1.0 and r2(np.zeros(3), np.ones(3)) == 0.0


def test_infers_macro_figures_average_the_classes_scikit_learn_averages():
    """A class neither true nor predicted anywhere counts in no macro average, here as in training."""
    from sklearn.metrics import f1_score

    truth, predicted = np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 0])
    report = classification_report(confusion_matrix(truth, predicted, 3))  # class 2: never seen
    assert report["f1_macro"] == pytest.approx(f1_score(truth, predicted, average="macro"), abs=1e-12)
    assert report["f1_macro"] == pytest.approx(macro_f1(predicted, truth, 3), abs=1e-12)
