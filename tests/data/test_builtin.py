"""make_data.py's data made in memory (common/data/builtin.py): the recipes' synthetic data, cut
and scaled as the recipes do, and the generator's settings checked."""
import json

import numpy as np
from sklearn import datasets, model_selection

import make_data as make_data_script
from builders import make_data, user_error
from common.data.dataset import load_dataset, meta_path
from common.steps import Categories


def test_classification_data_is_the_recipes(small_cls):
    data = load_dataset(small_cls)
    X, y = datasets.make_classification(n_samples=6003, n_features=10, n_informative=5, n_redundant=2, n_classes=3,
                                        n_clusters_per_class=1, flip_y=0.05, random_state=42)
    X_tr, X_te, y_tr, y_te = model_selection.train_test_split(X, y, test_size=0.2, random_state=42, stratify=y)
    assert data.X_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert np.array_equal(data.y_train, y_tr) and np.array_equal(data.y_test, y_te)
    # Scaled with statistics of the training split only.
    np.testing.assert_allclose(data.X_train, (X_tr - X_tr.mean(0)) / X_tr.std(0), atol=1e-5)
    np.testing.assert_allclose(data.X_test, (X_te - X_tr.mean(0)) / X_tr.std(0), atol=1e-5)
    pre = data.preprocessor
    inputs = pre.transform(lambda n: X_te[:, int(n[1:])], lambda n: Categories.from_list([]), len(X_te))
    np.testing.assert_allclose(inputs, data.X_test, atol=1e-5)
    assert len(data.X_val) == 0 and data.is_recipe  # the recipe's own 80/20 split


def test_description_is_plain_json(small_cls):
    meta = json.loads(meta_path(small_cls).read_text())
    assert meta["task"] == "classification" and meta["class_labels"] == [0, 1, 2]
    assert meta["feature_names"] == [f"x{i}" for i in range(10)] and len(meta["preprocess"]["numeric"]) == 10
    assert meta["preprocess"]["categorical"] == []
    assert (meta["n_train"], meta["n_val"], meta["n_test"]) == (4802, 0, 1201)


def test_regression_target_scaled_and_recoverable(reg_data):
    data = load_dataset(reg_data)
    assert data.task == "regression" and data.y_train.shape == (800, 1)
    assert abs(data.y_train.mean()) < 1e-5 and abs(data.y_train.std() - 1) < 1e-4
    X, y, coef = datasets.make_regression(n_samples=1000, n_features=5, n_informative=3, bias=1, noise=1,
                                          coef=True, random_state=42)
    np.testing.assert_allclose(data.description.source["coef"], coef)
    _, _, y_tr, _ = model_selection.train_test_split(X, y, test_size=0.2, random_state=42)
    y_back = data.description.target.original(data.y_train)[:, 0]
    np.testing.assert_allclose(y_back, y_tr, rtol=1e-5, atol=1e-3)


def test_impossible_generator_settings(tmp_path):
    message = user_error(make_data_script.main, "--n-classes", "40", "--out-dir", tmp_path)
    assert "cannot generate" in message and not list(tmp_path.iterdir())
    # more informative features than features: make_regression would take 5 and the data set say 7
    for task, informative, features in (("classification", "20", 10), ("regression", "7", 5)):
        message = user_error(make_data_script.main, "--task", task, "--n-informative", informative,
                             "--out-dir", tmp_path)
        assert f"is more than the {features} feature columns" in message and not list(tmp_path.iterdir())


def test_a_tables_flags_without_a_table_are_refused(tmp_path):
    """--target without --csv made the recipe's 100,000 rows, the column asked for unread."""
    message = user_error(make_data_script.main, "--target", "species", "--out-dir", tmp_path)
    assert message == ("--target is for a table of yours: give it with --csv FILE (without --csv, the recipe makes "
                       "its own data)")
    message = user_error(make_data_script.main, "--dataset", "iris", "--sep", ";", "--id", "k", "--out-dir", tmp_path)
    assert message.startswith("--sep, --id are for a table of yours") and not list(tmp_path.iterdir())


def test_recipes_keep_their_split_and_settings(small_cls, tmp_path):
    from common.config import TrainConfig, recipe_value
    from common.train.defaults import DATA_SIZED, resolved_settings

    data = load_dataset(small_cls)
    assert data.is_recipe and data.n_val == 0
    assert resolved_settings(TrainConfig(), data) == {k: recipe_value("classification", k) for k in DATA_SIZED}
    make_data("--n-samples", "3000", "--val-size", "0.1", "--out-dir", tmp_path)
    meta = json.loads((tmp_path / "cls_data" / "dataset.json").read_text())
    assert (meta["n_train"], meta["n_val"], meta["n_test"]) == (2100, 300, 600)
