"""Make a data set for train.py: the recipes' synthetic data, a CSV file, or a shipped data set.

    python make_data.py                          # classification recipe: 100k rows, 10 features, 3 classes
    python make_data.py --task regression        # regression recipe: 1000 rows, 5 features
    python make_data.py --n-samples 10007 --out-dir data/small
    python make_data.py --csv houses.csv --target price          # task inferred from the target
    python make_data.py --dataset breast_cancer                  # iris, wine, breast_cancer, digits, diabetes

Writes <out-dir>/<name>.npz (X_train, y_train, X_test, y_test, scaled with statistics of the
training split only) and <name>.json beside it, which describes the data set without pickle.
<name> is cls_data / reg_data for the recipes, the data set's name, or the CSV file's stem.
The recipes also get their fitted scalers as joblib files, as the recipe keeps them.
"""
from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np

from common.artifacts import atomic_path
from common.config import MakeDataConfig, parse_config
from common.console import console
from common.data import (FILE_STEMS, build_tabular, check_splittable, generate, resolve_make_data_config,
                         save_dataset, split, table_from_csv, table_from_sklearn)
from common.errors import run_cli


def save_scalers(out_dir: Path, task: str, x_scaler, y_scaler) -> list[Path]:
    """The recipe's joblib files; our own scripts never load them (they read the JSON)."""
    names = {"classification": {"scaler.joblib": x_scaler},
             "regression": {"reg_x_scaler.joblib": x_scaler, "reg_y_scaler.joblib": y_scaler}}[task]
    for name, scaler in names.items():
        with atomic_path(out_dir / name) as tmp:
            joblib.dump(scaler, tmp)
    return [out_dir / name for name in names]


def synthetic_table(cfg: MakeDataConfig):
    X, y, source = generate(cfg)
    labels = np.unique(y).tolist() if cfg.task == "classification" else None
    source.update({k: v for k, v in vars(cfg).items() if k not in ("out_dir", "csv", "target", "dataset")})
    return X, y, cfg.task, [f"x{i}" for i in range(X.shape[1])], labels, source, FILE_STEMS[cfg.task]


def user_table(cfg: MakeDataConfig):
    if cfg.csv:
        X, y, task, names, labels, dropped = table_from_csv(cfg.csv, cfg.target, cfg.task)
        source = {"csv": str(Path(cfg.csv).resolve()), "target": cfg.target, "dropped_columns": dropped}
        stem = Path(cfg.csv).stem
    else:
        X, y, task, names, labels, dropped = table_from_sklearn(cfg.dataset, cfg.task)
        source, stem = {"dataset": cfg.dataset}, cfg.dataset
    source.update(seed=cfg.seed, test_size=cfg.test_size)
    return X, y, task, names, labels, source, stem


def main(argv=None) -> None:
    cfg = resolve_make_data_config(parse_config(MakeDataConfig, argv, __doc__))
    X, y, task, names, labels, source, stem = user_table(cfg) if cfg.csv or cfg.dataset else synthetic_table(cfg)
    if task == "classification":
        check_splittable(y, task, labels, cfg.test_size)
    X_train, X_test, y_train, y_test = split(X, y, task, cfg.test_size, cfg.seed)
    data, (x_scaler, y_scaler) = build_tabular(X_train, X_test, y_train, y_test, task, names, labels, source)
    out_dir = Path(cfg.out_dir)
    npz_path = out_dir / f"{stem}.npz"
    save_dataset(data, npz_path)
    written = [npz_path, npz_path.with_suffix(".json")]
    if not (cfg.csv or cfg.dataset):
        written += save_scalers(out_dir, task, x_scaler, y_scaler)
    console.print(f"[bold]{task}[/]: {len(data.X_train)} train / {len(data.X_test)} test rows, "
                  f"{X.shape[1]} features" + (f", {len(labels)} classes" if labels else ""))
    if source.get("dropped_columns"):
        console.print(f"Dropped non-numeric columns: {source['dropped_columns']}")
    console.print("Saved: " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    run_cli(main)
