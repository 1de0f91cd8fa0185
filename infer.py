"""Use a model trained by train.py: evaluate it on its test split, or predict new rows.

    python infer.py                                     # ckpt/ on the data set recorded in its config
    python infer.py --ckpt-dir runs/reg --metrics-json reg.json
    python infer.py --input rows.csv --output preds.csv # raw rows -> labels and class probabilities

Loads only JSON and safetensors: nothing is unpickled. Runs on the CPU; no launcher needed.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from common.config import InferConfig, parse_config
from common.console import confusion_table, console, figures_table, per_class_table
from common.data.dataset import load_dataset
from common.errors import UserError, run_cli
from common.files import write_json
from common.model_folder import ModelRecord, load_model_dir
from common.serve.outputs import OUTPUT_KINDS
from common.serve.predict import predict_to_file, test_split_report


def evaluate(cfg: InferConfig, config: ModelRecord, model) -> dict:
    data = load_dataset(cfg.data or config.data or "data/cls_data")
    if data.task != config.task:
        raise UserError(f"the data set is for {data.task} but the model does {config.task}: pass a matching --data")
    if not len(data.y_test):
        raise UserError(f"the data set {cfg.data or config.data} has no test split (every labelled row trained; "
                        f"the run's out-of-fold figures are in {Path(cfg.ckpt_dir) / 'metrics.jsonl'}): predict "
                        "new rows with --input, or remake the data set with make_data.py --test-size 0.2")
    if data.X_test.shape[1] != len(config.feature_names):
        raise UserError(f"the data set has {data.X_test.shape[1]} inputs, the model takes "
                        f"{len(config.feature_names)}: pass the data set it was trained on")
    report = test_split_report(model, data, config, cfg.batch_size)
    if data.task == "classification":
        labels = config.class_labels or []
        console.print(confusion_table(np.asarray(report["confusion_matrix"]), labels))
        console.print(per_class_table(report, labels))
        console.print(f"accuracy {report['accuracy']:.4f}  precision (macro) {report['precision_macro']:.4f}  "
                      f"recall (macro) {report['recall_macro']:.4f}  F1 (macro) {report['f1_macro']:.4f}  "
                      f"on {len(data.y_test)} test rows")
        keep = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "confusion_matrix")
        return {k: report[k] for k in keep}
    console.print(figures_table(report, f"regression on {len(data.y_test)} test rows (original y scale)"))
    return report


def output_path(input_path: str, output: str | None) -> str:
    """--output as given; a folder (a path ending in /) or no --output: `<input stem>.pred.csv` in it
    or beside the input."""
    if not output or output.endswith(("/", os.sep)):
        output = str(Path(output or Path(input_path).parent) / f"{Path(input_path).stem}.pred.csv")
    if Path(output).suffix.lower() not in OUTPUT_KINDS:
        raise UserError(f"--output {output}: write predictions to a .csv, .parquet or .npz file")
    if Path(output).resolve() == Path(input_path).resolve():
        raise UserError(f"--output {output} is the input file: choose another path")
    return output


def predict_file(cfg: InferConfig, input_path: str, config: ModelRecord, model) -> None:
    output = output_path(input_path, cfg.output)  # checked before the work, so a bad path costs nothing
    rows = predict_to_file(input_path, output, config, model, cfg.sep, cfg.batch_size)
    console.print(f"Predicted {rows} rows: {output}")


def main(argv=None) -> None:
    cfg = parse_config(InferConfig, argv, __doc__)
    config, model = load_model_dir(cfg.ckpt_dir)
    if cfg.input:
        predict_file(cfg, cfg.input, config, model)
        return
    figures = evaluate(cfg, config, model)
    if cfg.metrics_json:
        write_json(cfg.metrics_json, figures)


if __name__ == "__main__":
    run_cli(main)
