"""Loading a model folder and predicting with it: safetensors and JSON only, never pickle."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from common.data.dataset import unscale_target
from common.data.description import read_steps
from common.data.preprocess import Categories, Preprocessor
from common.data.tables import NotStreamable, decimal_of, numeric_values, read_table, stream_table, text_values
from common.errors import UserError
from common.files import atomic_path, load_weights
from common.model import ACTIVATIONS, build_model, combine_members, load_state
from common.model_folder import CONFIG_FILE, CONFIG_FIX, MODEL_FILE, ModelRecord, load_record, log_link
from common.schema import Fields


def load_model_dir(ckpt_dir: str | Path) -> tuple[ModelRecord, torch.nn.Module]:
    ckpt_dir = Path(ckpt_dir)
    config = load_record(ckpt_dir)
    preprocessor(config, ckpt_dir / CONFIG_FILE)
    problem = config_problem(config)
    if problem:
        raise UserError(f"{ckpt_dir / CONFIG_FILE} {problem}: {CONFIG_FIX}")
    model = build_model(config.model)
    weights = load_weights(ckpt_dir / MODEL_FILE)
    bad = [k for k, v in weights.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise UserError(f"{ckpt_dir / MODEL_FILE} holds NaN or infinite weights in {bad}: retrain the model")
    load_state(model, weights, str(ckpt_dir / MODEL_FILE))
    return config, model.eval()


def preprocessor(config: ModelRecord, path: str | Path) -> Preprocessor:
    """The model's fitted steps, checked as a data set's are (a UserError naming `path`)."""
    return read_steps(Fields({"preprocess": config.preprocess}, path, CONFIG_FIX))


def config_problem(config: ModelRecord) -> str | None:
    """Where a well-formed config.json (ModelRecord.read) disagrees with itself or with this
    code's models, or None."""
    spec = config.model
    if spec["activation"] not in ACTIVATIONS:
        return f"describes a model this code cannot build ({spec!r})"
    inputs = spec["in_features"] + len(spec.get("categorical", []))
    if len(config.feature_names) != inputs:
        return f"names {len(config.feature_names)} inputs but the model takes {inputs}"
    pre = preprocessor(config, CONFIG_FILE)
    if len(pre.input_names) != inputs:
        return f"has preprocessing for {len(pre.input_names)} inputs but the model takes {inputs}"
    if config.class_labels is not None and len(config.class_labels) != spec["out_features"]:
        return f"names {len(config.class_labels)} classes but the model has {spec['out_features']} outputs"
    return None


@torch.no_grad()
def model_outputs(model: torch.nn.Module, X_inputs: np.ndarray, batch_size: int, config: ModelRecord) -> np.ndarray:
    """Logits (classification; an ensemble's mean probability as log-probabilities) or scaled
    targets (regression; log E[y] for a log link) for preprocessed rows, in order."""
    # A chunk at a time, each copied out of the (memory-mapped) rows: memory bounded by the chunk.
    chunks = [np.array(X_inputs[i:i + batch_size], dtype=np.float32) for i in range(0, len(X_inputs), batch_size)]
    outs = [combine_members(model(torch.from_numpy(x)), config.task, log_link(config.target)).float().numpy()
            for x in chunks or [np.zeros((0, X_inputs.shape[1]), np.float32)]]
    return np.concatenate(outs)


@torch.no_grad()
def test_split_report(model: torch.nn.Module, data: Any, config: ModelRecord, batch_size: int) -> dict[str, Any]:
    """The model's figures on the data set's test split, read and scored `batch_size` rows at a
    time: a confusion matrix, or sums of errors on the original y scale."""
    from common.metrics import classification_report, regression_report

    X, y = data.split("test")
    classes = len(config.class_labels or [])
    confusion, sums = np.zeros((classes, classes), dtype=np.int64), np.zeros(5)
    for start in range(0, len(X), batch_size):
        out = model_outputs(model, X[start:start + batch_size], batch_size, config)
        truth = np.asarray(y[start:start + batch_size])
        if config.task == "classification":
            confusion += np.bincount(truth * classes + out.argmax(axis=1), minlength=classes * classes
                                     ).reshape(classes, classes)
        else:
            true_y = unscale_target(truth, config.y_mean, config.y_scale, config.target, prediction=False)[:, 0]
            pred_y = unscale_target(out, config.y_mean, config.y_scale, config.target)[:, 0]
            err = pred_y - true_y
            sums += [len(err), np.abs(err).sum(), err @ err, true_y.sum(), true_y @ true_y]
    return classification_report(confusion) if config.task == "classification" else regression_report(sums)


def predict(config: ModelRecord, model: torch.nn.Module, X_inputs: np.ndarray,
            batch_size: int) -> dict[str, np.ndarray]:
    """Preprocessed rows -> predictions in the original label space or y scale."""
    out = model_outputs(model, X_inputs, batch_size, config)
    if config.task == "classification":
        proba = torch.softmax(torch.from_numpy(out).double(), dim=1).numpy()
        labels = np.asarray(config.class_labels)
        return {"prediction": labels[proba.argmax(axis=1)], "proba": proba}
    return {"prediction": unscale_target(out, config.y_mean, config.y_scale, config.target)[:, 0]}


class FilledBlanks:
    """Blank cells filled at prediction in numeric columns that had none in training: the model
    has no `_missing` input there to tell it, so each such column is named once per run, with
    its count summed over batches (report)."""

    def __init__(self, pre: Preprocessor):
        self.fill = {s.name: s.median for s in pre.numeric if not s.indicator}
        self.counts: dict[str, int] = {}

    def watch(self, numeric: Callable[[str], np.ndarray]) -> Callable[[str], np.ndarray]:
        def counted(name: str) -> np.ndarray:
            values = numeric(name)
            if name in self.fill:
                blanks = int(np.isnan(values).sum())
                if blanks:
                    self.counts[name] = self.counts.get(name, 0) + blanks
            return values
        return counted

    def report(self) -> None:
        from common.console import console

        for name, blanks in self.counts.items():
            console.print(f"Note: column '{name}' had {blanks} blank cell(s), filled with training's median "
                          f"{self.fill[name]:g} (training had no blanks in it)")


def npy_batches(path: str, pre: Preprocessor, batch_rows: int,
                filled: FilledBlanks) -> Iterator[tuple[np.ndarray, dict[str, list]]]:
    """A numeric array (memory-mapped), its columns the model's numeric table columns in training
    order, as the model's inputs `batch_rows` rows at a time."""
    if pre.categorical:
        raise UserError(f"{path}: a .npy array cannot hold the model's categorical columns "
                        f"{[c.name for c in pre.categorical]}: pass a CSV or Parquet file")
    if not Path(path).is_file():
        raise UserError(f"input {path} not found: check the path")
    try:
        X = np.load(path, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {path} ({err}): save a numeric array with numpy.save") from None
    names = pre.column_names
    if X.ndim != 2 or X.shape[1] != len(names) or not np.issubdtype(X.dtype, np.number):
        raise UserError(f"{path} has shape {X.shape} and type {X.dtype}, the model takes numbers of shape "
                        f"(rows, {len(names)}): pass the columns {names} in this order")
    for start in range(0, len(X), batch_rows):
        part = np.asarray(X[start:start + batch_rows], dtype=np.float64)
        if np.isinf(part).any():
            raise UserError(f"{path} holds infinite values (row {start + int(np.argwhere(np.isinf(part))[0, 0]) + 1})"
                            ": clean them first (NaN counts as blank)")
        yield pre.transform(filled.watch(column_getter(part, names)), lambda n: Categories.from_list([]),
                            len(part)), {}


def column_getter(X: np.ndarray, names: list[str]) -> Callable[[str], np.ndarray]:
    return lambda name: X[:, names.index(name)]


def table_inputs(table: Any, pre: Preprocessor, path: str, first_row: int,
                 filled: FilledBlanks) -> tuple[np.ndarray, dict[str, list]]:
    """The model's inputs for one table (or batch of a table), and its other columns."""
    names = table.column_names
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:  # as make_data.py says it (common/data/tables.read_table)
        raise UserError(f"{path} has more than one column named {duplicated}: rename them")
    missing = [n for n in pre.column_names if n not in table.column_names]
    if missing:
        raise UserError(f"{path} lacks column(s) {missing}: the model needs {pre.column_names}")
    decimal = decimal_of(table)
    X = pre.transform(filled.watch(lambda n: numeric_values(table.column(n), n, path, decimal, first_row)),
                      lambda n: text_values(table.column(n)), table.num_rows)
    extra = {n: carried_text(table.column(n)) for n in table.column_names if n not in pre.column_names}
    return X, extra


def carried_text(column: Any) -> Any:
    """A column copied into the predictions, as text (blank for a missing cell)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = column if pa.types.is_string(column.type) else pc.cast(column, pa.string())
    return text.fill_null("")


def feature_batches(path: str, config: ModelRecord, sep: str | None, batch_rows: int, stream: bool = True,
                    filled: FilledBlanks | None = None) -> Iterator[tuple[np.ndarray, dict[str, list]]]:
    """The model's inputs for each row of a table (.csv, Parquet) or .npy array, batch by batch in
    file order, and the table's other columns (ids and such) to carry into the predictions.
    Blanks are filled as in training. `stream=False` reads a table whole (the way for files that
    stream_table cannot read with fixed types), for row-numbered messages on bad cells. `filled`
    counts the blanks filled where training had none."""
    pre = preprocessor(config, CONFIG_FILE)
    filled = filled or FilledBlanks(pre)
    if path.endswith(".npy"):
        yield from npy_batches(path, pre, batch_rows, filled)
        return
    text = [c.name for c in pre.categorical]
    if not stream:
        yield table_inputs(read_table(path, sep, text_columns=text), pre, path, 0, filled)
        return
    first_row = 0
    for table in stream_table(path, sep, text, [s.name for s in pre.numeric], batch_rows):
        yield table_inputs(table, pre, path, first_row, filled)
        first_row += table.num_rows


def carried_name(name: str, result: dict[str, np.ndarray], class_labels: list | None) -> str:
    """An input column's name in the output, renamed `<name>_input` where ours would take it."""
    ours = {"prediction", *(f"proba_{label}" for label in class_labels or [])}
    return f"{name}_input" if name in ours else name


OUTPUT_KINDS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".npz": "npz"}


class PredictionWriter:
    """Writes predictions batch by batch: CSV rows or Parquet row groups as they come (constant
    memory; both through pyarrow, which formats a million CSV rows in about a second), or .npz
    arrays (plain, no pickle; collected, then written at once). Beside the target, renamed over
    it when complete: a failed write leaves any earlier file as it was."""

    def __init__(self, tmp: Path, kind: str, class_labels: list | None):
        self.tmp, self.kind, self.class_labels = tmp, kind, class_labels
        self.parts: list[dict[str, np.ndarray]] = []
        self.rows = 0
        self.writer: Any = None
        self.schema: Any = None

    def add(self, extra: dict[str, Any], result: dict[str, np.ndarray]) -> None:
        """`extra`: the input's other columns (pyarrow text), copied in front of the predictions."""
        named = {carried_name(name, result, self.class_labels): values for name, values in extra.items()}
        self.rows += len(result["prediction"])
        probabilities = {f"proba_{label}": result["proba"][:, k]
                         for k, label in enumerate(self.class_labels or [])} if "proba" in result else {}
        if self.kind == "npz":
            self.parts.append({**{k: np.asarray(v.to_pylist(), dtype=str) for k, v in named.items()}, **result})
            return
        # Six decimals: all a reader needs, and the same text whatever rows share a forward pass
        # (a batch of another size may differ in the last float bits).
        self._write({**named, "prediction": result["prediction"],
                     **{name: np.round(p, 6) for name, p in probabilities.items()}})

    def _write(self, columns: dict[str, Any]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({name: values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
                          for name, values in columns.items()})
        if self.writer is None:  # the first batch's types hold for every batch
            self.schema = table.schema
            self.writer = pq.ParquetWriter(self.tmp, table.schema) if self.kind == "parquet" else CsvLines(self.tmp)
        self.writer.write_table(table.cast(self.schema))

    def close(self) -> None:
        if self.kind != "npz":
            if self.writer is not None:
                self.writer.close()
            return
        arrays = {k: np.concatenate([p[k] for p in self.parts]) for k in self.parts[0]} if self.parts else {}
        with open(self.tmp, "wb") as fh:
            np.savez(fh, **cast(dict[str, Any], arrays))  # numpy's stubs type **kwds as options


class CsvLines:
    """CSV text with values quoted only where they need it (a comma, quote or line break), as
    spreadsheets and pandas write it: `ID,prediction` and `133`, not `"ID","prediction"` and
    `"133"`. pyarrow's CSV writer quotes every header name and every text value even under its
    "needed" style, so the lines are joined by pyarrow's compute functions instead (numbers cast
    to text as its writer casts them), still without a Python step per row."""

    def __init__(self, path: Path):
        self.fh = open(path, "wb")  # noqa: SIM115 (closed by close(), as the pyarrow writers are)
        self.header = False

    def write_table(self, table: Any) -> None:
        import pyarrow.compute as pc

        if not self.header:
            self.fh.write((",".join(quote_text(name) for name in table.column_names) + "\n").encode())
            self.header = True
        if table.num_rows == 0:
            return
        lines = pc.binary_join_element_wise(*(csv_text(column) for column in table.columns), ",")
        lines = pc.binary_join_element_wise(lines, "", "\n").combine_chunks()
        offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset:lines.offset + len(lines) + 1]
        self.fh.write(memoryview(lines.buffers()[2])[offsets[0]:offsets[-1]])

    def close(self) -> None:
        self.fh.close()


def quote_text(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\r\n') else text


def csv_text(column: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pa.types.is_string(column.type):
        return pc.cast(column, pa.string())
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(column, '"', '""'), '"', "")
    return pc.if_else(pc.match_substring_regex(column, r'[,"\r\n]'), quoted, column)


def predict_to_file(path: str, output: str, config: ModelRecord, model: torch.nn.Module, sep: str | None,
                    batch_rows: int) -> int:
    """Every row of `path` predicted, in order, into `output`; returns the row count. Tables are
    streamed; one that cannot be (see stream_table) is read whole, with row-numbered messages."""
    try:
        return _predict_to_file(path, output, config, model, sep, batch_rows, stream=True)
    except NotStreamable:
        return _predict_to_file(path, output, config, model, sep, batch_rows, stream=False)


def _predict_to_file(path: str, output: str, config: ModelRecord, model: torch.nn.Module, sep: str | None,
                     batch_rows: int, stream: bool) -> int:
    with atomic_path(output) as tmp:
        writer = PredictionWriter(tmp, OUTPUT_KINDS[Path(output).suffix.lower()], config.class_labels)
        filled = FilledBlanks(preprocessor(config, CONFIG_FILE))  # per attempt: a fallback reads from the start
        try:
            for X, extra in feature_batches(path, config, sep, batch_rows, stream, filled):
                writer.add(extra, predict(config, model, X, batch_rows))
        finally:
            writer.close()
        if writer.rows == 0:  # raised inside atomic_path: no empty file replaces an earlier one
            raise UserError(f"{path} has no data rows: nothing to predict")
    filled.report()
    return writer.rows


