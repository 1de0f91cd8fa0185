"""The Python API: the suite's own code paths, callable from a program or a notebook.

    from common.api import Predictor, fit

    model = fit("penguins.csv", target="species")        # make_data.py + train.py, in this process
    model = Predictor.load("runs/penguins")               # or a model folder train.py wrote
    model.predict(rows)                                    # a file's path, a DataFrame (or one of its rows), an
    model.predict_proba(rows)                              # Arrow table, a dict of columns, a list of row dicts,
                                                           # a NumPy array
    model.feature_importance(labelled_rows)                # which columns matter on rows with the target

    from common.api import TabularClassifier               # scikit-learn estimators (cross_val_score, Pipeline)

`fit` runs make_data.py's ingestion and train.py's run (common/train/session.py) with the same
defaults, messages and run folder; `Predictor` predicts through the same functions as infer.py
(common/serve/), so both give the same probabilities to the last bit and the same labels (a
true/false target's as booleans here). Loading reads JSON and
safetensors only. A Predictor is safe to call from several threads at once.
"""
from __future__ import annotations

import contextlib
import dataclasses
import numbers
import os
import sys
import tempfile
import typing
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from common.config import PREDICT_BATCH_ROWS, MakeDataConfig, TrainConfig, flag_name, parse_config
from common.data.description import DatasetDescription
from common.data.tables import decimal_of, table_stem
from common.errors import Interrupted, UserError, forget_written, unwritten_note
from common.importance import DEFAULT_REPEATS, LABELLED_ROWS, Importance
from common.model_folder import ModelRecord, load_model_dir
from common.serve.inputs import (
    ROWS_NAME,
    InputNotes,
    arrow_rows,
    arrow_table,
    column_of_values,
    file_rows,
    is_dataframe,
    python_inputs,
    read_columns,
    table_inputs,
)
from common.serve.labelled import LabelledRows
from common.serve.predict import predict as predict_inputs
from common.steps import label_truths


class Predictor:
    """A trained model folder, loaded once, predicting rows given in memory."""

    def __init__(self, record: ModelRecord, model: Any, folder: Path | None = None):
        self.record, self.model, self.folder = record, model, folder

    @classmethod
    def load(cls, folder: str | Path) -> Predictor:
        """The weights (safetensors) and the fitted steps (config.json) of a folder train.py wrote."""
        if not isinstance(folder, (str, os.PathLike)) or not str(folder):
            raise UserError(f"Predictor.load takes a model folder's path, not {folder!r}")
        if Path(folder).is_file():
            raise UserError(f"{folder} is a file, not a model folder: pass the folder train.py wrote")
        record, model = load_model_dir(folder)
        return cls(record, model, Path(folder))

    @property
    def task(self) -> str:
        return self.record.task

    @property
    def classes(self) -> list[Any] | None:
        """Classification: the labels, in the order of predict_proba's columns (a true/false
        target's as False and True); else None."""
        labels = self.record.class_labels
        if labels is None:
            return None
        truths = label_truths(labels) if self.record.target_boolean else None  # `TRUE` sorts before `false`
        return list(labels) if truths is None else truths

    @property
    def feature_names(self) -> list[str]:
        """The table columns the model reads (in any order in the rows given it)."""
        return self.record.preprocess.column_names

    @property
    def target(self) -> str | None:
        """The column it predicts, as its table named it."""
        return self.record.target_column

    def _inputs(self, rows: Any) -> np.ndarray:
        """The model's inputs: a file read as infer.py reads it, a few Python rows read directly,
        anything else through Arrow."""
        pre = self.record.preprocess
        notes = InputNotes(pre)  # what infer.py would print, warned (InputNote)
        table, given, source = self._given(rows, pre.column_names)
        X = python_inputs(given, pre, notes) if table is None else None
        if X is None:
            X = table_inputs(table if table is not None else arrow_rows(given, pre), pre, source, 0, notes)[0]
        notes.require_some_dates(source)
        notes.warned()
        return X

    def _given(self, rows: Any, columns: list[str]) -> tuple[Any, Any, str]:
        """(a file's table, None, its path) for a file's path, read as infer.py reads it; else
        (None, the rows held in memory with these `columns` alone, ROWS_NAME)."""
        pre = self.record.preprocess
        read = file_rows(rows, pre)
        if read is not None and not isinstance(read, np.ndarray):
            return read, None, os.fspath(rows)
        return None, read_columns(rows if read is None else read, columns), ROWS_NAME

    def _predicted(self, X: np.ndarray) -> dict[str, np.ndarray]:
        return predict_inputs(self.record, self.model, X, PREDICT_BATCH_ROWS)

    def predict(self, rows: Any) -> np.ndarray:
        """Each row's label (classification; of a true/false target, a boolean) or value on the
        original scale (regression)."""
        predicted, classes = self._predicted(self._inputs(rows)), self.classes
        return np.asarray(classes)[predicted["class"]] if classes else predicted["prediction"]

    def predict_proba(self, rows: Any) -> np.ndarray:
        """Classification: each row's probability of each class, columns in `classes` order."""
        if self.task != "classification":
            raise UserError("predict_proba is for classification: this model predicts numbers (use predict)")
        return np.ascontiguousarray(self._predicted(self._inputs(rows))["proba"])  # rows x classes, row-major

    def _labelled(self, rows: Any, target: Any, sample_rows: int, seed: int) -> LabelledRows:
        """The rows scored against their target: a column of theirs (its name, the model's own
        target column by default) or the values themselves."""
        import pyarrow as pa

        pre = self.record.preprocess
        name = target if isinstance(target, str) else self.target or "target"
        table, given, source = self._given(rows, [*pre.column_names, name])
        table = table if table is not None else arrow_rows(given, pre)
        notes = InputNotes(pre)
        X = table_inputs(table, pre, source, 0, notes)[0]
        notes.require_some_dates(source)
        notes.warned()
        if target is None or isinstance(target, str):
            if name not in table.column_names:
                raise UserError(f"the rows have no column '{name}' to score on: pass target= its name or the values")
            column = table.column(name)
        else:
            # as a column of the rows is read: a NaN among labels (pandas' blank) is a blank
            column = pa.chunked_array([column_of_values("target", np.asarray(target, dtype=object).tolist())])
            if len(column) != len(X):
                raise UserError(f"{len(column)} target values for {len(X)} rows: give one per row")
        labelled = LabelledRows(self.record, name, source, sample_rows, seed)
        labelled.add(X, column, self._predicted(X), 0, decimal_of(table))
        return labelled

    def evaluate(self, rows: Any, target: Any = None) -> dict[str, Any]:
        """The figures on rows that carry their target, as infer.py reports them: a confusion
        matrix and macro figures, or MAE/RMSE/R² on the original scale; rows with a blank target
        are left out and counted."""
        figures, classes = self._labelled(rows, target, 0, 0).figures(), self.classes
        if classes:  # the model's labels as predict gives them, then those it never saw as read
            figures["labels"] = classes + figures["labels"][len(classes):]
        return figures

    def feature_importance(self, rows: Any, target: Any = None, repeats: int = DEFAULT_REPEATS, seed: int = 0,
                           max_rows: int = LABELLED_ROWS) -> Importance:
        """Each column's permutation importance on labelled rows: the drop in macro-F1 (classes)
        or R² when it is shuffled, over `repeats` shuffles (scikit-learn's, for the same `seed`),
        on at most `max_rows` of them. `.columns` lists them, most important first."""
        for name, value, least in (("repeats", repeats, 1), ("max_rows", max_rows, 1), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
                raise UserError(f"feature_importance({name}={value!r}): give a whole number of at least {least}")
        labelled = self._labelled(rows, target, max_rows, seed)
        return labelled.importance(self._predicted, repeats, seed)


# ---- fit: make_data.py + train.py in this process ----

# The settings fit() takes, as keywords: each script's flags but those fit sets itself; `task`
# and `seed` go to both scripts.
MAKE_DATA_SETTINGS = frozenset(f.name for f in dataclasses.fields(MakeDataConfig)) - {"target", "csv", "out_dir"}
TRAIN_SETTINGS = frozenset(f.name for f in dataclasses.fields(TrainConfig)) - {"data", "ckpt_dir"}


def fit(table: Any, target: str, *, name: str | None = None, out_dir: str = "data", ckpt_dir: str | None = None,
        quiet: bool = False, **settings: Any) -> Predictor:
    """Make a data set of `table` and train on it, as `make_data.py --csv FILE --target TARGET` and
    `train.py` do with the same settings (any of either script's flags, as keywords: `epochs=30`,
    `hidden=[64, 32]`, `categorical=["zip"]`, `seed=0`), in this process. `table`: a CSV or Parquet
    file's path, a pyarrow Table, a pandas DataFrame or a dict of columns; `name` names its data
    set and run folder (the file's stem, else "table"). Writes <out_dir>/<name>/ and the run folder
    (<ckpt_dir>, default runs/<name>), and returns the trained model. `quiet`: print nothing; rows
    left out for want of a target, and a data set or run of another table that this call replaced,
    are still said, as warnings."""
    if not isinstance(target, str) or not target:
        raise UserError(f"fit(target={target!r}): name the column to predict, as text")
    name = plain_name(name)
    from common.console import dropped_rows, quiet_thread  # rich, which a Predictor alone never imports

    forget_written()  # a stop says what this call wrote, not what an earlier one did
    with as_python_signals(), (quiet_thread() if quiet else contextlib.nullcontext()), \
            table_file(table, name) as (path, source), contextlib.ExitStack() as held:
        unknown = sorted(set(settings) - MAKE_DATA_SETTINGS - TRAIN_SETTINGS)
        if unknown:
            raise UserError(f"fit() has no setting {unknown}: give make_data.py's or train.py's flags as keywords "
                            "(--grad-accum as grad_accum=...; see `python train.py --help`)")
        stem = name or table_stem(path)
        make_cfg = parse_config(MakeDataConfig, ["--csv", str(path), "--target", target, "--out-dir", out_dir,
                                                 *flags(settings, MakeDataConfig, MAKE_DATA_SETTINGS)])
        run = ckpt_dir or str(Path("runs") / stem)
        train_cfg = parse_config(TrainConfig, ["--data", out_dir, "--ckpt-dir", run,
                                               *flags(settings, TrainConfig, TRAIN_SETTINGS)])
        from common.train.run_plan import check_given

        check_given(train_cfg)  # before the data set is made: a setting refused replaces nothing
        from common.train.run_folder import held_run_folder, require_a_free_run_folder

        data_set = str(Path(out_dir) / stem)
        require_a_free_run_folder(Path(run), data_set)  # so is a run folder, busy or of other files

        def trainable(stage: Path) -> None:
            """The run's plan, made against the finished data set before it replaces an earlier
            one: what the data set sizes (folds against rows, a decision against the task, a
            checkpoint to resume) is refused while nothing has been replaced. Then the run folder
            is held, from before the replacement to the run's end: a second caller meanwhile is
            refused before it replaces anything, and a call refused before here leaves no folder."""
            from common.data.dataset import load_dataset
            from common.train.process_group import free_memory, use_cpu
            from common.train.run_context import find_context
            from common.train.run_plan import make_plan

            staged = dataclasses.replace(train_cfg, data=str(stage))
            # the host's memory on a CPU, as the run judges it (on a GPU the device's, once it starts)
            make_plan(staged, load_dataset(stage), find_context(staged, 1, 1, free_memory() if use_cpu() else None))
            held.enter_context(held_run_folder(Path(run), data_set))

        try:
            folder, meta, replaced = make_data_set(make_cfg, stem, source, trainable)
        except UserError as err:  # in fit()'s words; a table in memory named as the caller knows it, not by its file
            said = in_python_words(str(err))
            err.args = (said.replace(str(path), source) if source else said,)  # the same error, its kind kept
            raise
        train_cfg = dataclasses.replace(train_cfg, data=str(folder))
        from common.train.run_folder import earlier_record, replaced_model
        from common.train.session import run_training

        earlier = earlier_record(Path(run)) if quiet else None
        model = Predictor.load(run_training(train_cfg))
    if quiet:  # printed otherwise: rows left out, or what an earlier call made replaced, are said all the same
        notes = [dropped_rows(meta), f"{folder} held the data set of {replaced}, now replaced" if replaced else None,
                 replaced_model(Path(run), earlier, model.record.data, model.record.training.get("data_identity"))]
        for note in filter(None, notes):
            warnings.warn(note, stacklevel=2)
    return model


@contextlib.contextmanager
def as_python_signals() -> Iterator[None]:
    """A run stopped by a signal reaches the caller as Python delivers that signal, never as an
    Exception, which `except Exception` (scikit-learn's error_score in cross_val_score and
    GridSearchCV among them) would take for one failed fit and go on: Ctrl-C as KeyboardInterrupt
    saying where the run stopped and how to go on; SIGTERM, the process asked to end, as
    SystemExit(143) after saying the same on stderr."""
    try:
        yield
    except Interrupted as err:
        said = in_python_words(str(err))
        if err.exit_code == Interrupted.exit_code:
            raise KeyboardInterrupt(said) from None
        print(f"{err.prefix}: {said}", file=sys.stderr, flush=True)
        raise SystemExit(err.exit_code) from None
    except KeyboardInterrupt as err:
        if err.args:
            raise
        # Outside the training loop (which says where it stopped): a data set and a run folder are
        # swapped in whole or not at all, and those written are said (as run_cli says them).
        raise KeyboardInterrupt(f"fit() interrupted: {unwritten_note()}") from None


# The scripts' flags a stopped run's line names, as fit() takes them.
PYTHON_WORDS = (("--resume", "resume=True"), ("--checkpoint-every N", "checkpoint_every=N"),
                ("--save-on-signal", "save_on_signal=True"), ("--categorical ", "categorical="))


def in_python_words(line: str) -> str:
    for flag, keyword in PYTHON_WORDS:
        line = line.replace(flag, keyword)
    return line


def plain_name(name: str | None) -> str | None:
    """fit()'s `name`: one folder's name, which it gives <out_dir>/<name> and runs/<name>."""
    if name is None:
        return None
    if name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise UserError(f"fit(name={name!r}): a name is one folder's name, without a path (it names <out_dir>/<name> "
                        "and runs/<name>); give other places as out_dir= and ckpt_dir=")
    return name


def make_data_set(cfg: MakeDataConfig, stem: str, source: str | None,
                  accept: Callable[[Path], object]) -> tuple[Path, DatasetDescription, str | None]:
    """The data set's folder, its description, and what the folder held before where that was
    another table's; `accept` judges the finished data set before it replaces an earlier one."""
    from common.console import report_dataset, report_replaced
    from common.data.builtin import resolve_make_data_config
    from common.data.ingest import ingest_to_folder

    folder, meta, replaced = ingest_to_folder(resolve_make_data_config(cfg), source, stem, accept)
    report_replaced(folder, replaced)
    report_dataset(meta)
    return folder, meta, replaced


def flags(settings: dict[str, Any], config: type, names: frozenset[str]) -> list[str]:
    """The command-line flags of the settings that `config` has: the same parsing, checks and
    messages as the scripts'."""
    hints = typing.get_type_hints(config)
    fields = {f.name: f for f in dataclasses.fields(config)}
    argv: list[str] = []
    for key, value in settings.items():
        if key not in names or value is None:
            continue
        if hints[key] is bool or hints[key] == bool | None:
            argv.append(flag_name(key) if value else "--no-" + key.replace("_", "-"))
        elif value is True and "const" in fields[key].metadata:  # a flag that may stand alone: resume=True
            argv.append(flag_name(key))
        elif isinstance(value, (list, tuple)):
            argv += [flag_name(key), *map(str, value)]
        else:
            argv += [flag_name(key), str(value)]
    return argv


@contextlib.contextmanager
def table_file(table: Any, name: str | None) -> Iterator[tuple[Path, str | None]]:
    """A path to read the table from: a file as it is, a table in memory written to Parquet in a
    temporary folder (so that it is read exactly as such a file is), with what to call its source."""
    if isinstance(table, (str, Path)):
        yield Path(table), None
        return
    kinds = {"dict": "a dict of columns", "list": "a list of rows", "Table": "a pyarrow Table",
             "RecordBatch": "a pyarrow RecordBatch"}
    kind = "a pandas DataFrame" if is_dataframe(table) else kinds.get(type(table).__name__, "a table")
    arrow = arrow_table(table)
    if arrow is None:
        raise UserError(f"fit() reads a file's path, a pyarrow Table, a pandas DataFrame or a dict of columns, not "
                        f"{type(table).__name__}")
    with tempfile.TemporaryDirectory(prefix="tabular-fit-") as tmp:
        path = Path(tmp) / f"{name or 'table'}.parquet"
        write_parquet(arrow, path)
        yield path, f"{kind} ({arrow.num_rows} rows)"


def write_parquet(table: Any, path: Path) -> None:
    """`table` as a Parquet file; a column Parquet cannot hold (pandas' intervals, dictionary
    encoded) is one line naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pq.write_table(table, path)
    except (pa.ArrowException, ValueError, TypeError) as err:
        for column in table.column_names:
            try:
                pq.write_table(table.select([column]), path)
            except (pa.ArrowException, ValueError, TypeError):
                raise UserError(f"column '{column}' holds {table.schema.field(column).type} values, which cannot be "
                                "a feature: convert it to numbers or text") from None
        raise UserError(f"the table cannot be written as Parquet ({str(err).splitlines()[0]})") from None


def __getattr__(name: str) -> Any:
    """The scikit-learn estimators, imported on first use: scikit-learn's import costs about a
    second, which a Predictor never pays."""
    if name in ("TabularClassifier", "TabularRegressor"):
        from common import estimators

        return getattr(estimators, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

