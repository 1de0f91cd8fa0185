"""One splitter: the per-class draw for a user's table, train_test_split's cut for the recipes."""
import numpy as np
import pytest
from sklearn import datasets, model_selection

import make_data as make_data_script
from builders import user_error, write
from common.config import MakeDataConfig
from common.data.builtin import resolve_make_data_config, split_table, synthetic_table
from common.data.splits import TEST, TRAIN, TRAIN_ONLY, VAL, assign_splits, fold_ids, split_rows
from common.errors import UserError


@pytest.mark.parametrize("val_size", [0.0, 0.1])
def test_the_recipe_split_is_train_test_splits_rows_in_its_order(val_size):
    y = np.random.default_rng(0).choice(3, 1000, p=[0.5, 0.3, 0.2])
    split = split_rows(len(y), y, [0, 1, 2], 0.2, val_size, 42, as_train_test_split=True)
    rest, test = model_selection.train_test_split(np.arange(1000), test_size=0.2, random_state=42, stratify=y)
    if val_size:
        train, val = model_selection.train_test_split(rest, test_size=val_size / 0.8, random_state=42,
                                                      stratify=y[rest])
    else:
        train, val = rest, np.arange(0)
    for name, rows in (("train", train), ("val", val), ("test", test)):
        np.testing.assert_array_equal(split.rows(name), rows)
    assert [int(np.sum(split.codes == c)) for c in (TRAIN, VAL, TEST)] == [len(train), len(val), len(test)]
    assert np.all(split.codes[test] == TEST) and np.all(split.codes[val] == VAL)


def test_the_classification_recipe_is_cut_as_the_recipe_cuts_it():
    cfg = resolve_make_data_config(MakeDataConfig(n_samples=2003))
    X, y = datasets.make_classification(n_samples=2003, n_features=10, n_informative=5, n_redundant=2, n_classes=3,
                                        n_clusters_per_class=1, flip_y=0.05, random_state=42)
    _, test = model_selection.train_test_split(np.arange(2003), test_size=0.2, random_state=42, stratify=y)
    split = split_table(synthetic_table(cfg), cfg.test_size, cfg.val_size, cfg.seed)
    np.testing.assert_array_equal(split.rows("test"), test)


def test_a_regression_recipe_split_is_not_stratified():
    split = split_rows(500, None, None, 0.2, 0.1, 7, as_train_test_split=True)
    rest, test = model_selection.train_test_split(np.arange(500), test_size=0.2, random_state=7)
    np.testing.assert_array_equal(split.rows("test"), test)


def test_any_other_table_takes_the_per_class_draw_in_file_order():
    y = np.random.default_rng(1).choice(2, 800, p=[0.8, 0.2]).astype(np.int32)
    split = split_rows(len(y), y, ["a", "b"], 0.2, 0.1, 3)
    np.testing.assert_array_equal(split.codes, assign_splits(y, len(y), 0.2, 0.1, 3))
    for name, code in (("train", TRAIN), ("val", VAL), ("test", TEST)):
        np.testing.assert_array_equal(split.rows(name), np.flatnonzero(split.codes == code))


@pytest.mark.parametrize("as_train_test_split", [False, True])
def test_both_cases_refuse_a_class_too_rare_to_stratify(as_train_test_split):
    y = np.array([0] * 50 + [1])
    with pytest.raises(UserError, match=r"class 'b' has fewer than 2 rows"):
        split_rows(len(y), y, ["a", "b"], 0.2, 0.0, 0, as_train_test_split=as_train_test_split)
    with pytest.raises(UserError, match=r"class 2 has fewer than 2 rows"):  # a label, said so: not a count
        split_rows(len(y), y, [1, 2], 0.2, 0.0, 0, as_train_test_split=as_train_test_split)


def test_folds_are_stratified_seeded_and_cover_every_row():
    y = np.repeat([0, 1, 2], [500, 80, 20])
    folds = fold_ids(y, 5, 0.0, seed=7)
    for k in range(3):
        assert np.bincount(folds[y == k], minlength=5).tolist() == [np.sum(y == k) // 5] * 5  # each class evenly
    assert (fold_ids(y, 5, 0.0, seed=7) == folds).all() and not (fold_ids(y, 5, 0.0, seed=8) == folds).all()
    holdout = fold_ids(None, 1, 0.1, seed=7, n=1000)
    assert set(np.unique(holdout)) == {TRAIN_ONLY, 0} and (holdout == 0).sum() == 100


def dealt_by_argsort(y, folds, holdout, seed, n):
    """The folds as first written (a row-long int64 permutation and argsort): runs resumed from
    a checkpoint, and the models retrained on the same table, rely on the same folds still."""
    order = np.random.default_rng([seed, 3]).permutation(n)
    if y is not None:
        order = order[np.argsort(y[order], kind="stable")]
    out = np.empty(n, dtype=np.int8)
    every = max(1, round(1 / holdout)) if holdout > 0 else n + 1
    out[order] = np.arange(n) % folds if folds >= 2 else np.where(np.arange(n) % every == every // 2, 0, TRAIN_ONLY)
    return out


@pytest.mark.parametrize("n", [0, 1, 9, 2_500, 70_001])
def test_folds_are_those_first_dealt_to_the_row(n, monkeypatch):
    import common.data.splits

    monkeypatch.setattr(common.data.splits, "CHUNK_ROWS", 1_000)  # many chunks, a boundary inside a class
    rng = np.random.default_rng(n)
    for y in (None, rng.integers(0, 3, n), (rng.random(n) < 0.02).astype(np.int8), rng.integers(0, 300, n)):
        for folds, holdout in ((5, 0.0), (2, 0.0), (1, 0.1), (1, 1 / 13), (1, 0.0)):
            expected = dealt_by_argsort(y, folds, holdout, 11, n)
            assert np.array_equal(fold_ids(y, folds, holdout, 11, n), expected), (folds, holdout)


def test_validation_needs_rows_for_every_class(tmp_path):
    path = write(tmp_path / "t.csv", {"a": [1.0, 7.0, 3.0, 9.0, 2.0, 8.0], "y": ["x", "x", "y", "y", "z", "z"]})
    message = user_error(make_data_script.main, "--csv", path, "--target", "y", "--out-dir", tmp_path,
                         "--test-size", "0.2", "--val-size", "0.1")
    assert "fewer than 3 rows" in message
