"""The fixtures that tests share (data sets and runs, made once a session: with `-n 2`, once in
each worker that uses them) and the hook that marks everything under tests/e2e/. The helpers
they use live in builders.py."""
from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import pytest

from builders import SMALL_ROWS, launch, make_data, people, train, write, write_csv
from common.console import console


def pytest_configure(config: pytest.Config) -> None:
    # Rich wraps long lines at the console's width: wide enough here that no message a test reads is cut.
    console.width = 250
    # A shell script that starts the tests in the background (`cmd &`) has them ignore Ctrl-C, and
    # every process they start inherits that: the tests of Ctrl-C would see none. They test the
    # scripts as a terminal runs them.
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def recipe_cls(tmp_path_factory) -> Path:
    """The recipe's classification data, full size (100k rows)."""
    out = tmp_path_factory.mktemp("recipe_cls")
    make_data("--out-dir", out)
    return out / "cls_data"


@pytest.fixture(scope="session")
def small_cls(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("small_cls")
    make_data("--n-samples", SMALL_ROWS, "--out-dir", out)
    return out / "cls_data"


@pytest.fixture(scope="session")
def small_val(tmp_path_factory) -> Path:
    """The small classification data with validation rows (600), for early stopping."""
    out = tmp_path_factory.mktemp("small_val")
    make_data("--n-samples", SMALL_ROWS, "--val-size", "0.1", "--out-dir", out)
    return out / "cls_data"


@pytest.fixture(scope="session")
def reg_data(tmp_path_factory) -> Path:
    """The recipe's regression data (1000 rows)."""
    out = tmp_path_factory.mktemp("reg")
    make_data("--task", "regression", "--out-dir", out)
    return out / "reg_data"


@pytest.fixture(scope="session")
def small_model(small_cls, tmp_path_factory) -> Path:
    """One epoch on the small classification data: a model folder for inference tests to read."""
    ckpt = tmp_path_factory.mktemp("small_model")
    train("--data", small_cls, "--ckpt-dir", ckpt, "--epochs", 1)
    return ckpt


@pytest.fixture(scope="session")
def cls_run(recipe_cls, tmp_path_factory):
    """A few epochs of the classification recipe, launched through accelerate with cpu.yaml."""
    ckpt = tmp_path_factory.mktemp("cls_run")
    started = time.monotonic()
    proc = launch("cpu", "--data", str(recipe_cls), "--ckpt-dir", str(ckpt), "--epochs", "6", "--eval-every", "2",
                  pictures=True)
    proc.seconds = time.monotonic() - started  # the whole launch, as this process saw it
    return ckpt, proc


@pytest.fixture(scope="session")
def crossfit_run(tmp_path_factory) -> Path:
    """A user's table (people, 500 rows) and 12 epochs of its default: five cross-fitted members."""
    tmp = tmp_path_factory.mktemp("crossfit")
    write(tmp / "people.csv", people(rows=500))
    make_data("--csv", tmp / "people.csv", "--target", "label", "--out-dir", tmp)
    train("--data", tmp / "people", "--ckpt-dir", tmp / "run", "--epochs", "12", "--pictures")
    return tmp


@pytest.fixture(scope="session")
def people_set(tmp_path_factory):
    """A user's table (people, 600 rows) as a CSV file and as the data set make_data.py makes of it."""
    tmp = tmp_path_factory.mktemp("people")
    path = write(tmp / "people.csv", people())
    make_data("--csv", path, "--target", "label", "--out-dir", tmp)
    return tmp, path


@pytest.fixture(scope="session")
def animals(tmp_path_factory):
    """A user's table: an id, a text column, four numeric features, text labels."""
    tmp = tmp_path_factory.mktemp("animals")
    rng = np.random.default_rng(0)
    names = np.array(["bird", "cat", "dog"])
    y = rng.choice(3, size=600, p=[0.2, 0.5, 0.3])
    X = rng.normal(size=(600, 4)) + y[:, None] * 1.5
    rows = [[f"id{i}", rng.choice(["paris", "oslo"]), *X[i].tolist(), names[y[i]]] for i in range(600)]
    write_csv(tmp / "animals.csv", ["id", "city", "w", "x", "y", "z", "kind"], rows)
    make_data("--csv", tmp / "animals.csv", "--target", "kind", "--out-dir", tmp)
    return tmp, X, names[y]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/e2e/ is marked e2e: the tests that start, signal or kill processes,
    and the scenario runs of seconds. A test elsewhere never carries the mark: it moves there."""
    e2e = Path(__file__).parent / "e2e"
    for item in items:
        if e2e in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)
