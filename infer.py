"""Use a model trained by train.py: evaluate it on its test split, or predict new rows.

    python infer.py                                     # ckpt/ on the data set recorded in its config
    python infer.py --ckpt-dir runs/reg --metrics-json reg.json
    python infer.py --input rows.csv --output preds.csv # raw rows -> labels and class probabilities
    python infer.py --input labelled.csv --importance   # rows with the target: figures and importance too

Loads only JSON and safetensors: nothing is unpickled. Runs on the CPU; no launcher needed.
"""
from __future__ import annotations

from common.errors import quiet_start

quiet_start(__name__)  # first: a Ctrl-C while the modules below load (seconds) is one line too

import os
from pathlib import Path
from typing import Any

import numpy as np

from common.allocator import keep_chunk_memory
from common.config import InferConfig, parse_config
from common.console import confusion_table, console, figures_table, importance_table, per_class_table
from common.data.dataset import TabularData, content_identity, load_dataset, read_description, recorded_source
from common.data.tables import column_names, require_table_file, table_stem, without_pandas
from common.errors import UserError, run_cli, written
from common.files import check_writable, is_a_stream, strict_json, write_json
from common.model import intra_op_threads
from common.model_folder import ModelRecord, load_model_dir
from common.serve.inputs import require_columns
from common.serve.labelled import LabelledRows
from common.serve.outputs import OUTPUT_KINDS, check_figures_path, refuse_a_folders_own_file
from common.serve.predict import pipeline_threads, predict, predict_to_file, test_split_report

CLASSIFICATION_FIGURES = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "confusion_matrix",
                          "precision", "recall", "support")  # and the labels, in the matrix's order


def show_figures(report: dict[str, Any], config: ModelRecord, rows: str, labels: list | None = None) -> dict:
    """The figures printed (a confusion matrix and per-class figures, or MAE/RMSE/R² on the
    original scale); returns those --metrics-json keeps."""
    if config.task == "classification":
        labels = labels or list(config.class_labels or [])
        console.print(confusion_table(np.asarray(report["confusion_matrix"]), labels))
        console.print(per_class_table(report, labels))
        console.print(f"accuracy {report['accuracy']:.4f}  precision (macro) {report['precision_macro']:.4f}  "
                      f"recall (macro) {report['recall_macro']:.4f}  F1 (macro) {report['f1_macro']:.4f}  "
                      f"on {rows}")
        return {**{k: report[k] for k in CLASSIFICATION_FIGURES}, "labels": labels,
                **({"unseen_labels": report["unseen_labels"]} if "unseen_labels" in report else {})}
    figures = {k: report[k] for k in ("mae", "rmse", "r2")}
    console.print(figures_table(figures, f"regression on {rows} (original y scale)"))
    return figures


def evaluate(cfg: InferConfig, config: ModelRecord, model) -> dict:
    source = cfg.data or config.data or "data/cls_data"
    data = load_dataset(source)
    if not cfg.data:
        require_the_trained_data(config, data)
    if data.task != config.task:
        raise UserError(f"the data set is for {data.task} but the model does {config.task}: pass a matching --data")
    if not len(data.y_test):
        held = "no row was held out from it" if config.outcome.monitor == "train_loss" else \
            f"the run's {'out-of-fold' if data.n_val == 0 else 'validation'} figures are in " \
            f"{Path(cfg.ckpt_dir) / 'metrics.jsonl'}"
        raise UserError(f"the data set {cfg.data or config.data} has no test split (every labelled row trained; "
                        f"{held}): predict new rows with --input, or remake the data set with make_data.py "
                        "--test-size 0.2")
    if data.X_test.shape[1] != len(config.feature_names):
        raise UserError(f"the data set has {data.X_test.shape[1]} inputs, the model takes "
                        f"{len(config.feature_names)}: pass the data set it was trained on")
    require_the_models_preparation(config, data, str(source))
    report = test_split_report(model, data, config, cfg.batch_size, str(source))
    return show_figures(report, config, f"{len(data.y_test)} test rows")


def require_the_trained_data(config: ModelRecord, data: TabularData) -> None:
    """The data set a model names (`data`, scored where --data is left out) still holds the rows it
    trained on: made again since (another seed, other rows), its test rows may be rows the model
    trained on, and its figures would be another table's, without a word."""
    trained = config.training.get("data_identity")
    if config.data and trained and data.identity != trained:  # an older model folder records none
        raise UserError(f"the data set {config.data} was made again since this model trained on it (its rows "
                        "differ): retrain on it, or score its table's rows with --input FILE")


def require_the_models_preparation(config: ModelRecord, data: Any, source: str) -> None:
    """A data set's arrays are its rows as its own fit prepared them, its targets codes of its own
    classes: scored by a model prepared otherwise, they would read as other values and other
    classes, and the figures be wrong without a word."""
    target = data.description.target
    pairs = {"classes": (data.description.class_labels, config.class_labels),
             "preparation of the columns": (data.preprocessor.to_json(), config.preprocess.to_json()),
             "target's modelling": (target and target.to_json(), config.target and config.target.to_json())}
    what = next((name for name, (theirs, ours) in pairs.items() if theirs != ours), None)
    if what:
        raise UserError(f"the data set {source} differs from the model's in its {what} (made from other rows or "
                        "settings): score its table's rows with --input FILE instead")


def output_path(input_path: str, output: str | None) -> str:
    """--output as given; a folder (one that exists, or a path ending in /) or no --output:
    `<input stem>.pred.csv` in it or beside the input."""
    if not output or output.endswith(("/", os.sep)) or Path(output).is_dir():
        output = str(Path(output or Path(input_path).parent) / f"{table_stem(input_path)}.pred.csv")
    if Path(output).suffix.lower() not in OUTPUT_KINDS:
        raise UserError(f"--output {output}: write predictions to a .csv, .parquet or .npz file")
    if Path(output).resolve() == Path(input_path).resolve():
        raise UserError(f"--output {output} is the input file: choose another path")
    refuse_a_folders_own_file("--output", output, OUTPUT_KINDS)  # through a link, too
    return output


def figures_asked(cfg: InferConfig) -> str | None:
    """The flag that asks for figures of the rows (--importance says more), or None."""
    return "--importance" if cfg.importance else "--metrics-json" if cfg.metrics_json else None


def check_labelled(cfg: InferConfig, input_path: str, names: list[str], config: ModelRecord) -> None:
    """--importance and --metrics-json need the target in the input: said before any work."""
    flag = figures_asked(cfg)
    if flag is None or not names and not (input_path.endswith(".npy") and Path(input_path).is_file()):
        return  # no names read: the reader says why
    if not names:
        raise UserError(f"{flag} needs rows with their target: {input_path} is an array of the model's inputs, "
                        f"without it; give a CSV or Parquet file that holds it (or leave {flag} out)")
    if not config.target_column:
        raise UserError(f"{flag}: {cfg.ckpt_dir} was trained before model folders named their target column, "
                        "so its rows cannot be scored: retrain it to score new rows")
    if config.target_column not in names:
        raise UserError(f"{flag} needs rows with their target: {input_path} has no column "
                        f"'{config.target_column}' (leave {flag} out to predict the rows)")


def made_from(input_path: str, config: ModelRecord) -> bool:
    """Whether `input_path` is the table the model's data set was made from, and that data set is
    still the one it trained on (a folder made again since may hold another table's)."""
    if not config.data or recorded_source(config.data) != str(Path(input_path).resolve()):
        return False
    return content_identity(config.data, read_description(config.data)[1]) == config.training.get("data_identity")


def predict_file(cfg: InferConfig, input_path: str, config: ModelRecord, model) -> dict | None:
    """Every row predicted into the output; where the rows carry the target, the figures on them
    (and with --importance which columns matter there), returned for --metrics-json."""
    output = output_path(input_path, cfg.output)  # checked before the work, so a bad path costs nothing
    require_table_file(input_path, "--input", arrays=True)
    names = [] if input_path.endswith(".npy") else column_names(input_path, cfg.sep)
    if names:  # said before the work too, naming the model (ckpt/, where --ckpt-dir was left out)
        require_columns(names, config.preprocess, input_path, model=f"the model in {cfg.ckpt_dir}")
    check_labelled(cfg, input_path, names, config)
    target = config.target_column
    labelled = (lambda: LabelledRows(config, target, input_path, cfg.importance_rows if cfg.importance else 0)) \
        if target else None
    with intra_op_threads(pipeline_threads()):
        rows, scored = predict_to_file(input_path, output, config, model, cfg.sep, cfg.batch_size, labelled)
    written(f"the predictions in {output}")
    console.print(f"Predicted {rows} row{'' if rows == 1 else 's'}: {output}")
    if scored is None:
        return None
    if not scored.rows:  # a template of new rows: known only once every row was read
        if figures_asked(cfg):
            raise UserError(f"{input_path}: every row's '{target}' is blank: nothing to score for "
                            f"{figures_asked(cfg)}")  # run_cli adds that the predictions were written
        console.print(f"Note: every row's '{target}' is blank: the rows are predicted, none scored")
        return None
    report = scored.figures()
    blank = f", {scored.blank} without a '{target}' predicted only" if scored.blank else ""
    unseen = f"; labels the model never saw: {scored.unseen}" if scored.unseen else ""
    figures = show_figures(report, config, f"{scored.rows} rows with a '{target}'{blank}{unseen}",
                           report.get("labels"))
    if made_from(input_path, config):
        card = "it held no row out, so none are" if config.outcome.monitor == "train_loss" else \
            f"its out-of-fold or test figures are on its card, {Path(cfg.ckpt_dir) / 'README.md'}"
        console.print(f"Note: {input_path} is the table the model's data set was made from: these figures are "
                      f"mostly on rows it trained on, above what new rows get ({card})")
    figures.update(rows_scored=scored.rows, rows_without_target=scored.blank)
    if cfg.importance:
        importance = scored.importance(lambda X: predict(config, model, X, cfg.batch_size))
        console.print(importance_table(importance))
        figures["importance"] = importance.to_json()
    return figures


def main(argv=None) -> None:
    cfg = parse_config(InferConfig, argv, __doc__)
    config, model = load_model_dir(cfg.ckpt_dir)
    if cfg.metrics_json:  # before the work: else the predictions are written, then the figures refused
        check_figures_path(cfg.metrics_json, {
            "input file": cfg.input, "output file": cfg.input and output_path(cfg.input, cfg.output),
            "data set": None if cfg.input else cfg.data or config.data})
        if not is_a_stream(Path(cfg.metrics_json)):  # /dev/stdout is written in place, its folder never
            check_writable(Path(cfg.metrics_json).parent)
    figures = predict_file(cfg, cfg.input, config, model) if cfg.input else evaluate(cfg, config, model)
    if cfg.metrics_json:
        assert figures is not None  # a file without its target was refused before it was read
        write_json(cfg.metrics_json, strict_json(figures))  # read by other programs: no NaN
        written(str(cfg.metrics_json))


if __name__ == "__main__":
    without_pandas()
    run_cli(main, allocator=keep_chunk_memory)
