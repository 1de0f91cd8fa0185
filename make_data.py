"""Make a data set for train.py: the recipes' synthetic data, your own table, or a shipped data set.

    python make_data.py                          # classification recipe: 100k rows, 10 features, 3 classes
    python make_data.py --task regression        # regression recipe: 1000 rows, 5 features
    python make_data.py --n-samples 10007 --out-dir data/small
    python make_data.py --csv houses.csv --target price          # CSV or Parquet; task inferred from the target
    python make_data.py --csv churn.parquet --target churned --categorical plan_code --id customer
    python make_data.py --dataset breast_cancer                  # iris, wine, breast_cancer, digits, diabetes

Writes the folder <out-dir>/<name>/: X_train.npy, y_train.npy, X_val.npy, y_val.npy, X_test.npy
and y_test.npy (the model's inputs, preprocessed with statistics of the training split only,
uncompressed so that training memory-maps them) and dataset.json, which describes the data set
and its preprocessing without pickle. <name> is cls_data / reg_data for the recipes, the data
set's name, or the table file's stem. The recipes also get their fitted scalers as joblib
files in <out-dir>, as the recipe keeps them. A table file is streamed in record batches
(common/data/ingest.py): memory is bounded by a batch, whatever the file's size; the recipes' data
and the shipped data sets are made in memory.
"""
from __future__ import annotations

from common.errors import quiet_start

quiet_start(__name__)  # first: a Ctrl-C while the modules below load (seconds) is one line too

from collections.abc import Sequence
from pathlib import Path

from common.allocator import keep_chunk_memory
from common.config import MakeDataConfig, parse_config
from common.console import console, report_dataset, report_replaced
from common.data.builtin import (
    RawTable,
    ScaledData,
    resolve_make_data_config,
    shipped_table,
    split_and_preprocess,
    synthetic_table,
)
from common.data.dataset import dataset_folder, save_dataset
from common.data.ingest import ingest_to_folder
from common.data.tables import without_pandas
from common.errors import run_cli
from common.errors import written as now_written
from common.files import atomic_path


def in_memory_table(cfg: MakeDataConfig) -> RawTable:
    """The recipes' synthetic data or a data set scikit-learn ships: small, made in memory."""
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
    if cfg.csv:  # a user's table: streamed, whatever its size
        folder, meta, replaced = ingest_to_folder(cfg)
        report_replaced(folder, replaced)
        written = [folder]
    else:
        table = in_memory_table(cfg)
        scaled = split_and_preprocess(table, cfg)
        folder, meta = dataset_folder(cfg.out_dir, table.stem), scaled.data.description
        save_dataset(scaled.data, folder)
        written = [folder] + ([] if cfg.dataset else save_scalers(Path(cfg.out_dir), scaled))
    now_written(", ".join(str(p) for p in written))
    report_dataset(meta)
    console.print("Saved: " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    without_pandas()
    run_cli(main, allocator=keep_chunk_memory)
