"""Predicting with a loaded model folder (common/model_folder.load_model_dir): preprocessed rows
to labels, probabilities or values on the original y scale; a file of raw rows into a file of
predictions; the figures of a data set's test split."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.data.dataset import RowCheck
from common.decision import decided_classes
from common.errors import UserError
from common.files import atomic_path
from common.model import class_probabilities, pass_rows, predicted_outputs
from common.model_folder import ModelRecord
from common.overlap import prefetched, side_by_side, usable_cores
from common.serve.inputs import Batch, InputNotes, check_unchanged, feature_batches, read_by_readings
from common.serve.labelled import LabelledRows
from common.serve.outputs import OUTPUT_KINDS, FormattedBatch, PredictionWriter
from common.steps import has_link


def model_outputs(model: torch.nn.Module, X_inputs: np.ndarray, batch_size: int, config: ModelRecord) -> np.ndarray:
    """Logits (classification; an ensemble's mean probability as log-probabilities) or scaled
    targets (regression; log E[y] for a log link) for preprocessed rows, in order."""
    rows_per_pass, link = pass_rows(config.model), has_link(config.target)
    outs = [predicted_outputs(model, model_inputs(X_inputs[i:i + batch_size]), config.task, link,
                              rows_per_pass=rows_per_pass) for i in range(0, len(X_inputs), batch_size)]
    return np.concatenate(outs) if outs else \
        predicted_outputs(model, np.zeros((0, X_inputs.shape[1]), np.float32), config.task, link,
                          rows_per_pass=rows_per_pass)


def model_inputs(rows: np.ndarray) -> np.ndarray:
    """A chunk of rows as the float32 array a forward pass reads: copied out of a memory-mapped
    file (memory bounded by the chunk) or where it is of another type or layout, or read-only
    (torch takes no read-only array); else as it is, as an inference batch's rows come."""
    plain = type(rows) is np.ndarray and rows.dtype == np.float32 and rows.flags.c_contiguous and rows.flags.writeable
    return rows if plain else np.array(rows, dtype=np.float32)


@torch.no_grad()
def test_split_report(model: torch.nn.Module, data: Any, config: ModelRecord, batch_size: int,
                      source: str) -> dict[str, Any]:
    """The model's figures on the test split of the data set `data` (read from `source`), read,
    checked and scored `batch_size` rows at a time: a confusion matrix, or sums of errors on the
    original y scale."""
    from common.metrics import classification_report, confusion_matrix, regression_report

    X, y = data.split("test")
    classes = len(config.class_labels or [])
    check = RowCheck(f"the test split of {source}", classes)  # as training checks its splits
    confusion, sums = np.zeros((classes, classes), dtype=np.int64), np.zeros(5)
    for start in range(0, len(X), batch_size):
        rows, truth = np.asarray(X[start:start + batch_size]), np.asarray(y[start:start + batch_size])
        check(rows, truth)
        predicted = predict(config, model, rows, batch_size)  # as every prediction is made
        if config.task == "classification":
            confusion += confusion_matrix(truth, predicted["class"], classes)
        else:
            assert config.target is not None
            true_y = config.target.original(truth, prediction=False)[:, 0]
            err = predicted["prediction"] - true_y
            sums += [len(err), np.abs(err).sum(), err @ err, true_y.sum(), true_y @ true_y]
    return classification_report(confusion) if config.task == "classification" else regression_report(sums)


def predict(config: ModelRecord, model: torch.nn.Module, X_inputs: np.ndarray,
            batch_size: int) -> dict[str, np.ndarray]:
    """Preprocessed rows -> predictions in the original label space or y scale."""
    out = model_outputs(model, X_inputs, batch_size, config)
    if config.task == "classification":
        proba = class_probabilities(out)
        index = decided_classes(proba, config.threshold)
        return {"prediction": np.asarray(config.class_labels)[index], "proba": proba, "class": index}
    assert config.target is not None
    return {"prediction": config.target.original(out)[:, 0]}


def predict_to_file(path: str, output: str, config: ModelRecord, model: torch.nn.Module, sep: str | None,
                    batch_rows: int, labelled: Callable[[], LabelledRows] | None = None
                    ) -> tuple[int, LabelledRows | None]:
    """Every row of `path` predicted, in order, into `output`; returns the row count, and with
    `labelled` (which makes one) the figures of the rows that carry the model's target. Tables
    are streamed with their number columns as numbers, else as text (a cell that is no number is
    then named by its row), else read whole (feature_batches' READINGS)."""
    return read_by_readings(path, lambda reading, before: _predict_to_file(path, output, config, model, sep,
                                                                           batch_rows, reading, labelled, before))


# Batches predicted and formatted at once in predict_to_file. A batch's forward pass, softmax and
# CSV text run one after another, and two batches side by side keep both cores of a small
# machine busy: on 2 cores a million rows from .npy went to .npz in 0.19-0.20 s and to CSV in
# 0.26-0.28 s, against 0.25-0.27 s and 0.35-0.36 s predicted on one thread with the writes on
# another (bench/README.md section 4, "Two batches at once").
PREDICTORS = 2


def pipeline_threads() -> int:
    """torch's threads for each of predict_to_file's predictors, where reading runs beside them:
    the cores but one, shared. torch's idle threads spin between its calls, so on 2 cores a
    second torch thread beside the reading and writing threads took a million-row prediction
    to CSV 0.43 s against 0.31 s with one; on more cores the share was not measured. Set by
    infer.py for its own process only: torch's count is process-wide, and a thread of a Python
    caller that first used torch meanwhile would keep the lower count for good."""
    return max(1, min(torch.get_num_threads(), (usable_cores() - 1) // PREDICTORS))


def _predict_to_file(path: str, output: str, config: ModelRecord, model: torch.nn.Module, sep: str | None,
                     batch_rows: int, reading: str, labelled: Callable[[], LabelledRows] | None,
                     before: tuple[int, int] | None) -> tuple[int, LabelledRows | None]:
    scored = None
    with atomic_path(output) as tmp:
        writer = PredictionWriter(tmp, OUTPUT_KINDS[Path(output).suffix.lower()], config.class_labels)
        notes = InputNotes(config.preprocess)  # per attempt: a fallback reads from the start
        target = config.target_column if labelled else None
        # The stages side by side, each in order: the next batch is read and preprocessed while
        # PREDICTORS batches are predicted and formatted, and the one before them written.
        batches = prefetched(feature_batches(path, config.preprocess, sep, batch_rows, reading, notes, target))

        def predicted_and_formatted(batch: Batch) -> tuple[Batch, dict[str, np.ndarray], FormattedBatch]:
            result = predict(config, model, batch.X, batch_rows)
            return batch, result, writer.formatted(batch.extra, result)

        predicted = side_by_side(predicted_and_formatted, batches, PREDICTORS)
        try:
            for batch, result, formatted in predicted:
                writer.write(formatted)
                if batch.target is not None and labelled is not None:
                    scored = scored or labelled()
                    scored.add(batch.X, batch.target, result, batch.first_row, batch.decimal)
        finally:
            predicted.close()  # the batches under way finish before the file closes
            batches.close()
            writer.close()
        if writer.rows == 0:  # raised inside atomic_path: no empty file replaces an earlier one
            raise UserError(f"{path} has no data rows: nothing to predict")
        notes.require_some_dates(path)  # inside atomic_path too: such predictions replace nothing
        check_unchanged(path, before)  # inside atomic_path too: such predictions replace nothing
    notes.report()
    return writer.rows, scored


