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

from collections.abc import Sequence
from pathlib import Path

from common.artifacts import atomic_path
from common.config import MakeDataConfig, parse_config
from common.console import console
from common.dataset import meta_path, save_dataset
from common.errors import run_cli
from common.sources import ScaledData, resolve_make_data_config, shipped_table, split_and_scale, synthetic_table
from common.tables import RawTable, table_from_csv


def read_table(cfg: MakeDataConfig) -> RawTable:
    if cfg.csv:
        return table_from_csv(cfg.csv, cfg.target, cfg.task)
    if cfg.dataset:
        return shipped_table(cfg.dataset, cfg.task)
    return synthetic_table(cfg)


def save_scalers(out_dir: Path, scaled: ScaledData) -> list[Path]:
    """The recipe's joblib files; our own scripts never load them (they read the JSON)."""
    import joblib

    names = {"scaler.joblib": scaled.x_scaler} if scaled.y_scaler is None else \
        {"reg_x_scaler.joblib": scaled.x_scaler, "reg_y_scaler.joblib": scaled.y_scaler}
    for name, scaler in names.items():
        with atomic_path(out_dir / name) as tmp:
            joblib.dump(scaler, tmp)
    return [out_dir / name for name in names]


def main(argv: Sequence[str] | None = None) -> None:
    cfg = resolve_make_data_config(parse_config(MakeDataConfig, argv, __doc__))
    table = read_table(cfg)
    scaled = split_and_scale(table, cfg.test_size, cfg.seed)
    npz_path = Path(cfg.out_dir) / f"{table.stem}.npz"
    save_dataset(scaled.data, npz_path)
    written = [npz_path, meta_path(npz_path)]
    if not (cfg.csv or cfg.dataset):
        written += save_scalers(Path(cfg.out_dir), scaled)
    labels = table.class_labels
    console.print(f"[bold]{table.task}[/]: {len(scaled.data.X_train)} train / {len(scaled.data.X_test)} test rows, "
                  f"{table.X.shape[1]} features" + (f", {len(labels)} classes" if labels else ""))
    if table.source.get("dropped_columns"):
        console.print(f"Dropped non-numeric columns: {table.source['dropped_columns']}")
    console.print("Saved: " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    run_cli(main)
