"""Make a data set for train.py: the recipes' synthetic classification and regression data.

    python make_data.py                          # classification: 100k rows, 10 features, 3 classes
    python make_data.py --task regression        # regression: 1000 rows, 5 features
    python make_data.py --n-samples 10007 --out-dir data/small

Writes <out-dir>/cls_data.npz (or reg_data.npz): X_train, y_train, X_test, y_test, scaled with
statistics fit on the training split only; <stem>.json beside it, which describes the data set
without pickle; and the fitted scalers as joblib files, as the recipe does, for sklearn users.
"""
from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np

from common.artifacts import atomic_path
from common.config import MakeDataConfig, parse_config
from common.console import console
from common.data import FILE_STEMS, build_tabular, generate, resolve_make_data_config, save_dataset, split
from common.errors import run_cli


def save_scalers(out_dir: Path, task: str, x_scaler, y_scaler) -> list[Path]:
    """The recipe's joblib files; our own scripts never load them (they read the JSON)."""
    names = {"classification": {"scaler.joblib": x_scaler},
             "regression": {"reg_x_scaler.joblib": x_scaler, "reg_y_scaler.joblib": y_scaler}}[task]
    for name, scaler in names.items():
        with atomic_path(out_dir / name) as tmp:
            joblib.dump(scaler, tmp)
    return [out_dir / name for name in names]


def main(argv=None) -> None:
    cfg = resolve_make_data_config(parse_config(MakeDataConfig, argv, __doc__))
    X, y, source = generate(cfg)
    X_train, X_test, y_train, y_test = split(X, y, cfg.task, cfg.test_size, cfg.seed)
    source.update({k: v for k, v in vars(cfg).items() if k not in ("out_dir",)})
    feature_names = [f"x{i}" for i in range(X.shape[1])]
    class_labels = np.unique(y).tolist() if cfg.task == "classification" else None
    data, (x_scaler, y_scaler) = build_tabular(
        X_train, X_test, y_train, y_test, cfg.task, feature_names, class_labels, source
    )
    out_dir = Path(cfg.out_dir)
    npz_path = out_dir / f"{FILE_STEMS[cfg.task]}.npz"
    save_dataset(data, npz_path)
    written = [npz_path, npz_path.with_suffix(".json"), *save_scalers(out_dir, cfg.task, x_scaler, y_scaler)]
    console.print(f"[bold]{cfg.task}[/]: {len(data.X_train)} train / {len(data.X_test)} test rows, "
                  f"{X.shape[1]} features")
    console.print("Saved: " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    run_cli(main)
