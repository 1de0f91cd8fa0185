"""Benchmark sections for users' tables (run through bench/bench.py):

6. reading: make_data.py on a CSV and a Parquet file of N rows x 10 numeric columns plus a
   categorical one, rows/s and peak memory, each in a fresh process;
7. quality: the default path (make_data.py, then train.py with no setting given) against
   scikit-learn pipelines (impute + one-hot + scale, then MLP or HistGradientBoosting) on the
   same train+validation / test rows: macro-F1 for classification, R² for regression.
"""
from __future__ import annotations

import contextlib
import io
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

SHIPPED = ("breast_cancer", "wine", "digits", "diabetes")


def write_numeric_table(path: Path, rows: int, seed: int = 0) -> None:
    """rows x (10 numeric + 1 categorical + a class label), as CSV or Parquet by suffix."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    columns = {f"x{i}": rng.standard_normal(rows).astype(np.float32) for i in range(10)}
    columns["shop"] = pa.array(np.asarray(["north", "south", "east", "west"])[rng.integers(0, 4, rows)])
    columns["label"] = (columns["x0"] + columns["x1"] > 0).astype(np.int64)
    table = pa.table(columns)
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    else:
        pa_csv.write_csv(table, path)


def made_up_table(path: Path, rows: int = 4000, seed: int = 0) -> tuple[Path, str]:
    """A user's table: an id, text and true/false columns, blanks in numeric and text columns,
    a rare class, the file sorted by class."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    rng = np.random.default_rng(seed)
    city = rng.choice(["oslo", "paris", "rome", "lima", "kyiv"], rows)
    member = rng.random(rows) < 0.4
    age = rng.normal(40, 12, rows)
    income = rng.lognormal(10, 0.5, rows)
    score = 0.04 * (age - 40) + 0.8 * member + np.where(city == "rome", 1.2, 0) + np.where(city == "lima", -1.0, 0) \
        + rng.normal(0, 0.7, rows)
    label = np.digitize(score, [-0.6, 0.9, 1.8])  # 4 classes, the last rare
    order = np.argsort(label, kind="stable")
    age[rng.random(rows) < 0.1] = np.nan
    city_text = [None if rng.random() < 0.05 else c for c in city]
    table = pa.table({"customer_id": np.arange(rows), "age": age[order], "income": income[order],
                      "city": pa.array([city_text[i] for i in order]), "member": member[order],
                      "segment": np.asarray(["a", "b", "c", "d"])[label][order]})
    pa_csv.write_csv(table, path)
    return path, "segment"


@contextlib.contextmanager
def quiet():
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def ours(make_args: list[str], out: Path) -> tuple[str, float, Path]:
    """make_data.py and train.py with defaults; (task, test macro-F1 or R², the data set)."""
    import make_data
    import train
    from common.model_folder import load_record

    with quiet():
        make_data.main([*make_args, "--out-dir", str(out)])
        data = next(p for p in out.iterdir() if (p / "dataset.json").is_file())
        train.main(["--data", str(data), "--ckpt-dir", str(out / "run")])
    config = load_record(out / "run")
    final, task = config.outcome["final_metrics"], config.task  # the saved weights' figures
    return task, final["f1_macro"] if task == "classification" else final["test_r2"], data


def sklearn_peers(make_args: list[str], folder: Path) -> dict[str, float]:
    """The same rows through scikit-learn pipelines, fitted on train + validation rows."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.metrics import f1_score, r2_score
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from common.config import MakeDataConfig, parse_config
    from common.data.builtin import resolve_make_data_config

    cfg = resolve_make_data_config(parse_config(MakeDataConfig, make_args))
    X, y, fit_rows, test_rows, task, (num, cat) = table_rows_of(folder, cfg) if cfg.csv else in_memory_rows(cfg)
    prep = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), list(range(len(num)))),
        ("cat", OneHotEncoder(handle_unknown="ignore"), list(range(len(num), len(num) + len(cat)))),
    ])
    if task == "classification":
        models: dict[str, Any] = {"sklearn_mlp": MLPClassifier(max_iter=500, random_state=0),
                                  "sklearn_hgb": HistGradientBoostingClassifier(random_state=0)}
    else:
        models = {"sklearn_mlp": MLPRegressor(max_iter=500, random_state=0),
                  "sklearn_hgb": HistGradientBoostingRegressor(random_state=0)}
    figures = {}
    for name, model in models.items():
        dense = name == "sklearn_hgb"
        pipe = make_pipeline(prep, model) if not dense else make_pipeline(
            ColumnTransformer(prep.transformers, sparse_threshold=0), model)
        with quiet():
            pipe.fit(X[fit_rows], y[fit_rows])
        pred = pipe.predict(X[test_rows])
        figures[name] = (f1_score(y[test_rows], pred, average="macro") if task == "classification"
                         else r2_score(y[test_rows], pred))
    return figures


Rows = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str, tuple[list[str], list[str]]]


def in_memory_rows(cfg: Any) -> Rows:
    """A shipped data set's raw columns and the split make_data.py made of them."""
    import make_data
    from common.data.builtin import split_table

    assert cfg.val_size is not None
    table = make_data.in_memory_table(cfg)
    split = split_table(table, cfg.test_size, cfg.val_size, cfg.seed)
    parts = {name: split.rows(name) for name in ("train", "val", "test")}
    num = list(table.numeric)
    X = np.stack([table.numeric[name] for name in num], 1).astype(object)
    return X, table.y, np.concatenate([parts["train"], parts["val"]]), parts["test"], table.task, (num, [])


def table_rows_of(folder: Path, cfg: Any) -> Rows:
    """A user's table read whole, as raw columns, and the rows of each split that make_data.py
    recorded in the data set (rows_<split>.npy); targets from the data set, on their own scale."""
    from common.data.dataset import load_dataset, unscale_target
    from common.data.tables import decimal_of, numeric_values, read_table, text_values

    data = load_dataset(folder)
    steps = data.preprocessor
    num, cat = [s.name for s in steps.numeric], [s.name for s in steps.categorical]
    table = read_table(cfg.csv, cfg.sep, text_columns=cat)
    X = np.empty((table.num_rows, len(num) + len(cat)), dtype=object)
    for j, name in enumerate(num):
        X[:, j] = numeric_values(table.column(name), name, cfg.csv, decimal_of(table))
    for j, name in enumerate(cat):
        column = text_values(table.column(name))
        X[:, len(num) + j] = np.asarray([*column.values, "(blank)"], dtype=object)[column.index]
    rows = {split: np.load(folder / f"rows_{split}.npy") for split in ("train", "val", "test")}
    y = np.zeros(table.num_rows)
    for split, where in rows.items():
        target = np.asarray(data.split(split)[1])
        y[where] = target if data.task == "classification" else unscale_target(target, data.description.y_mean,
                                                                                     data.description.y_scale)[:, 0]
    return (X, y, np.concatenate([rows["train"], rows["val"]]), rows["test"], data.task, (num, cat))


def quality(tmp: Path, extra_tables: list[str], shipped: tuple[str, ...] = SHIPPED) -> list[dict[str, Any]]:
    """Each table's figure for ours and the peers; extra tables are `path:target`."""
    made_path, made_target = made_up_table(tmp / "made_up.csv")
    cases = [(f"{name} (sklearn)", ["--dataset", name]) for name in shipped]
    cases.append(("made-up: id, text, bool, blanks, rare class", ["--csv", str(made_path), "--target", made_target]))
    for spec in extra_tables:
        path, target = spec.rsplit(":", 1)
        cases.append((Path(path).stem, ["--csv", path, "--target", target]))
    rows = []
    for i, (label, args) in enumerate(cases):
        start = time.perf_counter()
        task, figure, data = ours(args, tmp / f"quality_{i}")
        seconds = time.perf_counter() - start
        rows.append({"table": label, "task": task, "figure": "macro-F1" if task == "classification" else "R²",
                     "ours": figure, "ours_seconds": seconds, **sklearn_peers(args, data)})
    return rows


def reading(tmp: Path, sizes: list[int], in_worker) -> list[dict[str, Any]]:
    """make_data.py on generated CSV and Parquet files, each in a fresh process."""
    rows = []
    for n in sizes:
        for suffix in (".csv", ".parquet"):
            path = tmp / f"read_{n}{suffix}"
            write_numeric_table(path, n)
            result = in_worker("ingest", f"{path},{tmp / ('ingest_' + str(n))}")
            rows.append({"rows": n, "format": suffix[1:], "mb": path.stat().st_size / 2**20, **result,
                         "rows_per_s": n / result["seconds"]})
    return rows


def ingest_worker(arg: str, peak_rss_mb) -> dict[str, float]:
    """In a fresh process: make_data.py end to end (its peak memory), then a whole read of the
    table alone (its time: the floor for any reader)."""
    import make_data
    from common.data.tables import read_table

    path, out = arg.split(",")
    base = peak_rss_mb()
    start = time.perf_counter()
    with quiet():
        make_data.main(["--csv", path, "--target", "label", "--out-dir", out])
    seconds, peak = time.perf_counter() - start, peak_rss_mb()
    start = time.perf_counter()
    read_table(path)
    return {"read_seconds": time.perf_counter() - start, "seconds": seconds, "peak_rss_mb": peak, "base_rss_mb": base}
