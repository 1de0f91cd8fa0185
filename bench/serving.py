"""Benchmark section 9, the Python API (common/api.py) beside its peers, measured in one run:

    python bench/serving.py              # about two minutes on 2 cores; LightGBM columns need bench/requirements.txt

  a. one row through `Predictor.predict` (a request's dict) against LightGBM's `predict` and the
     scikit-learn MLP pipeline's on one row (a one-row DataFrame, as their users call them):
     p50 and p99 over 2,000 calls, a generated 10-column table (8 numbers, 2 text), the
     default model (a 5-member cross-fitted ensemble);
  b. a batch of 65,536 rows: `Predictor.predict_proba` on an Arrow table, infer.py on the same
     rows (a Parquet file to .npz, in-process, start-up excluded), LightGBM and the pipeline;
  c. `cross_val_score(TabularClassifier(), X, y, cv=3)` on scikit-learn's breast_cancer against
     LightGBM's and the MLP pipeline's defaults (accuracy, seconds).
Timings live here, never in the tests.
"""
from __future__ import annotations

import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ROWS, BATCH, CALLS = 10_000, 65_536, 2_000
TEXT = ("shop", "tier")


def table_columns(rows: int, seed: int = 0) -> tuple[dict[str, Any], np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, 8))
    shop = np.asarray(["north", "south", "east", "west", "online"])[rng.integers(0, 5, rows)]
    tier = np.asarray([f"tier_{i}" for i in range(20)])[rng.integers(0, 20, rows)]
    logit = np.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2] + 0.5 * x[:, 3] ** 2 - 0.5 + (shop == "online") * 0.8
    label = np.where(logit + rng.normal(0, 0.5, rows) > 0, "yes", "no")
    return {**{f"x{i}": x[:, i] for i in range(8)}, "shop": shop, "tier": tier}, label


def percentiles(call: Any, calls: int = CALLS) -> dict[str, float]:
    for _ in range(100):
        call()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    us = np.asarray(times) * 1e6
    return {"p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99))}


def rows_per_second(call: Any, rows: int, repeats: int = 3) -> float:
    call()
    best = min(_timed(call) for _ in range(repeats))
    return rows / best


def _timed(call: Any) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def peers(columns: dict[str, Any], label: np.ndarray) -> dict[str, Any]:
    """LightGBM (text as pandas categories) and the MLP pipeline (impute, scale, one-hot), fitted
    with their defaults; each None where its package is missing."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = pd.DataFrame(columns)
    numeric = [c for c in frame.columns if c not in TEXT]
    pipeline = make_pipeline(ColumnTransformer([("num", StandardScaler(), numeric),
                                                ("text", OneHotEncoder(handle_unknown="ignore"), list(TEXT))]),
                             MLPClassifier(random_state=0))
    with warnings_off():  # the MLP's convergence warning at its default 200 iterations
        found: dict[str, Any] = {"mlp_pipeline": (pipeline.fit(frame, label), frame)}
    try:
        import lightgbm

        categorical = frame.astype({name: "category" for name in TEXT})
        found["lightgbm"] = (lightgbm.LGBMClassifier(verbose=-1).fit(categorical, label), categorical)
    except ImportError:
        found["lightgbm"] = None
    return found


def latency_and_throughput(tmp: Path) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    import infer
    from common.api import fit

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a request's row: one thread, as a server gives each of its workers
    columns, label = table_columns(ROWS)
    model = fit({**columns, "label": label}, "label", name="serving", out_dir=str(tmp / "data"),
                ckpt_dir=str(tmp / "run"), quiet=True, pictures=False, importance_rows=0)
    others = peers(columns, label)
    big_columns, _ = table_columns(BATCH, seed=1)
    big = pa.table(big_columns)
    pq.write_table(big, tmp / "batch.parquet")
    row = {name: values[0].item() for name, values in big_columns.items()}
    out: dict[str, Any] = {"one_row": {"ours": percentiles(lambda: model.predict(row))}, "batch": {}}
    for name, fitted in others.items():
        if fitted is not None:
            estimator, frame = fitted
            out["one_row"][name] = percentiles(lambda estimator=estimator, one=frame.iloc[:1]: estimator.predict(one))
    torch.set_num_threads(threads)  # a batch: every core, as each peer takes them
    out["batch"]["ours (Predictor)"] = rows_per_second(lambda: model.predict_proba(big), BATCH)

    def infer_file() -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            infer.main(["--ckpt-dir", str(tmp / "run"), "--input", str(tmp / "batch.parquet"),
                        "--output", str(tmp / "batch.npz")])

    out["batch"]["ours (infer.py, Parquet to .npz)"] = rows_per_second(infer_file, BATCH)
    import pandas as pd

    big_frame = pd.DataFrame(big_columns)
    for name, fitted in others.items():
        if fitted is None:
            continue
        estimator, frame = fitted
        batch = big_frame.astype({t: frame[t].dtype for t in TEXT}) if name == "lightgbm" else big_frame
        out["batch"][name] = rows_per_second(lambda estimator=estimator, batch=batch: estimator.predict_proba(batch),
                                             BATCH)
    return out


def cross_validation() -> dict[str, Any]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import cross_val_score
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from common.api import TabularClassifier

    X, y = load_breast_cancer(return_X_y=True)
    estimators: dict[str, Any] = {"ours (TabularClassifier)": TabularClassifier(),
                                  "mlp_pipeline": make_pipeline(StandardScaler(), MLPClassifier(random_state=0))}
    with contextlib.suppress(ImportError):
        import lightgbm

        estimators["lightgbm"] = lightgbm.LGBMClassifier(verbose=-1)
    out = {}
    for name, estimator in estimators.items():
        start = time.perf_counter()
        with warnings_off():
            scores = cross_val_score(estimator, X, y, cv=3)
        out[name] = {"accuracy": float(scores.mean()), "folds": scores.tolist(), "seconds": time.perf_counter() - start}
    return out


@contextlib.contextmanager
def warnings_off():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        serving = latency_and_throughput(Path(tmp))
    return {**serving, "cross_validation": cross_validation()}


def report(results: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    t = Table(title=f"9a. one row, {CALLS:,} calls (10 columns; ours: the default 5-member ensemble)",
              title_justify="left")
    for col in ("model", "p50 µs", "p99 µs", "ours p50 / this"):
        t.add_column(col, justify="right")
    ours = results["one_row"]["ours"]["p50_us"]
    for name, r in results["one_row"].items():
        t.add_row(name, f"{r['p50_us']:.0f}", f"{r['p99_us']:.0f}", f"{ours / r['p50_us']:.2f}")
    console.print(t)
    t = Table(title=f"9b. a batch of {BATCH:,} rows", title_justify="left")
    for col in ("model", "rows / s"):
        t.add_column(col, justify="right")
    for name, r in results["batch"].items():
        t.add_row(name, f"{r:,.0f}")
    console.print(t)
    t = Table(title="9c. cross_val_score(..., cv=3) on breast_cancer, defaults", title_justify="left")
    for col in ("estimator", "accuracy", "seconds"):
        t.add_column(col, justify="right")
    for name, r in results["cross_validation"].items():
        t.add_row(name, f"{r['accuracy']:.4f}", f"{r['seconds']:.1f}")
    console.print(t)


if __name__ == "__main__":
    import json

    from common.console import console as rich_console

    found = run()
    report(found, rich_console)
    Path(ROOT / "bench" / "out").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "out" / "serving.json").write_text(json.dumps(found, indent=2) + "\n")
