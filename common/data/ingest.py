"""make_data.py's path for a user's CSV or Parquet file: memory bounded by a batch, not the file.

1. The head of the file (8 MiB of CSV, 200k rows of Parquet: the whole file when smaller)
   decides each column's type (common/data/tables.py) and role (common/data/roles.py).
2. One pass over the file in record batches appends each feature column's raw values
   (float64, NaN for blanks; categories as ids into a vocabulary that grows batch by batch)
   and the target to scratch files in the data set's staging folder. Rows without a target
   are dropped.
3. The target decides the task and the classes; a seeded draw per class assigns each row to
   training, validation or test (common/data/splits.py).
4. Statistics come from the training rows only: each numeric column's median from a seeded
   sample of at most MEDIAN_SAMPLE training rows (exact below that), its mean and scale, the
   category counts and the target's scaling from chunked passes over the scratch files.
5. A last chunked pass writes each split's model inputs straight into its .npy file, rows in
   file order; the scratch files are deleted and the folder is swapped in (atomic_folder).

Memory: a batch of the file, a chunk of CHUNK_ROWS rows, the vocabularies of the categorical
columns, and 5 bytes a row for the class codes and the split (1 for a regression).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from common.config import MakeDataConfig
from common.data.dataset import DATASET_FILE, DatasetDescription, dataset_folder, dataset_meta, is_dataset_file
from common.data.preprocess import (
    SKEWED,
    Categories,
    Preprocessor,
    fit_categorical,
    fit_numeric,
    fit_target_scaling,
    skewness,
    target_transform,
    transformed_target,
)
from common.data.roles import ColumnRole, RoleOverrides, infer_roles
from common.data.splits import SPLIT_CODES, TRAIN, split_rows
from common.data.tables import (
    column_looks_numeric,
    csv_header,
    decimal_of,
    is_number_type,
    numeric_values,
    read_table,
    table_batches,
    text_values,
    unreadable,
)
from common.errors import UserError
from common.files import atomic_folder, write_error, write_json_file
from common.model_folder import log_link

CHUNK_ROWS = 1 << 20          # rows per step of the passes over the scratch files
MEDIAN_SAMPLE = 1_000_000     # training rows sampled for each median (all of them below this)
MEDIAN_STREAM = 2             # the median sample's random stream, apart from the split's (common/data/splits.py)
MAX_CLASSES_FROM_INTEGERS = 20  # a numeric target with at most this many integer values is taken as classes,
MIN_COUNT_VALUES = 8            # unless it has at least this many, none negative, skewed like counts


class Vocabulary:
    """Text values -> ids in order of first appearance, grown one record batch at a time."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    @property
    def values(self) -> list[str]:
        return list(self.ids)

    def encode(self, column: Any) -> np.ndarray:
        """int64 ids of a column's cells, -1 for blanks: the batch's own codes (text_values, as
        infer.py reads categories) mapped to the ids of the whole file."""
        batch = text_values(column)
        lookup = np.fromiter((self.ids.setdefault(v, len(self.ids)) for v in batch.values), dtype=np.int64,
                             count=len(batch.values))
        return np.append(lookup, -1)[batch.index]  # index -1 (a blank) picks the appended -1


class Scratch:
    """Columns appended batch by batch to raw files, read back a chunk at a time with plain reads
    (not memory-mapped: a mapped page would count in the process's memory until unmapped)."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir()
        self.files: dict[str, Any] = {}
        self.dtypes: dict[str, Any] = {}

    def append(self, name: str, values: np.ndarray) -> None:
        try:
            if name not in self.files:
                self.files[name] = open(self.folder / f"{len(self.files)}.bin", "wb")  # noqa: SIM115 (closed in close)
                self.dtypes[name] = values.dtype
            values.tofile(self.files[name])
        except OSError as err:  # a full disk: said as such, not taken for a fault of the input file
            raise write_error(self.folder.parent, err) from None

    def close(self) -> None:
        for fh in self.files.values():
            fh.close()

    def column(self, name: str) -> ScratchColumn:
        return ScratchColumn(Path(self.files[name].name), self.dtypes[name])


class ScratchColumn:
    """One scratch column: `column[a:b]` reads rows a..b-1 from the file."""

    def __init__(self, path: Path, dtype: Any):
        self.path, self.dtype = path, np.dtype(dtype)

    def __len__(self) -> int:
        return self.path.stat().st_size // self.dtype.itemsize

    def __getitem__(self, part: slice) -> np.ndarray:
        return np.fromfile(self.path, dtype=self.dtype, count=part.stop - part.start,
                           offset=part.start * self.dtype.itemsize)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The values at sorted row numbers, read a chunk at a time."""
        bounds = np.searchsorted(rows, [part.start for part in chunks(len(self))] + [len(self)])
        return np.concatenate([self[part][rows[a:b] - part.start]
                               for part, a, b in zip(chunks(len(self)), bounds[:-1], bounds[1:], strict=True)]
                              or [np.empty(0, self.dtype)])


class SplitWriter:
    """A split's .npy files written front to back by appending rows (shape known in advance):
    plain writes, so memory holds no more than the chunk being written."""

    def __init__(self, stage: Path, split: str, rows: int, width: int, regression: bool):
        from numpy.lib import format as npy

        shapes = {"X": ((rows, width), np.float32), "y": ((rows, 1), np.float32) if regression else ((rows,), np.int64),
                  "rows": ((rows,), np.int64)}
        self.files: dict[str, tuple[Any, np.dtype]] = {}
        try:
            for kind, (shape, dtype) in shapes.items():
                fh = open(stage / f"{kind}_{split}.npy", "wb")  # noqa: SIM115 (closed in close)
                self.files[kind] = (fh, np.dtype(dtype))
                npy.write_array_header_1_0(fh, {"descr": npy.dtype_to_descr(np.dtype(dtype)),
                                                "fortran_order": False, "shape": shape})
        except OSError:
            self.close()
            raise

    def append(self, **arrays: np.ndarray) -> None:
        for kind, values in arrays.items():
            fh, dtype = self.files[kind]
            np.ascontiguousarray(values, dtype=dtype).tofile(fh)

    def close(self) -> None:
        for fh, _ in self.files.values():
            fh.close()


@dataclasses.dataclass
class FirstPass:
    """What one pass over the file learned."""

    numeric: list[str]
    categorical: dict[str, Vocabulary]
    target_vocabulary: Vocabulary | None   # None: the target was read as numbers
    rows: int = 0                          # rows kept (with a target)
    rows_read: int = 0
    batches: int = 0
    nulls: dict[str, int] = dataclasses.field(default_factory=dict)


def chunks(n: int) -> Iterator[slice]:
    for start in range(0, n, CHUNK_ROWS):
        yield slice(start, min(n, start + CHUNK_ROWS))


def ingest_file(cfg: MakeDataConfig, stage: Path) -> DatasetDescription:
    """Read the table `cfg.csv`, write the data set's arrays into the folder `stage`; returns its
    description (dataset.json)."""
    assert cfg.csv is not None and cfg.test_size is not None
    path = Path(cfg.csv)
    head = read_table(path, cfg.sep, head=True)
    if not cfg.target:
        raise UserError(f"--csv needs --target: one of {head.column_names}")
    if cfg.target not in head.column_names:
        raise UserError(f"{cfg.csv} has no target column '{cfg.target}': choose --target from {head.column_names}")
    roles = infer_roles(head, cfg.target, RoleOverrides(cfg.categorical, cfg.numeric, cfg.drop, cfg.id))
    if not any(r.role in ("numeric", "categorical") for r in roles):
        raise UserError(f"{cfg.csv} has no feature columns besides '{cfg.target}' (roles: "
                        f"{ {r.name: r.role for r in roles} }): name some with --numeric or --categorical")
    scratch = Scratch(stage / ".scratch")
    try:
        seen = first_pass(path, cfg, head, roles, scratch)
    finally:
        scratch.close()
    if seen.rows == 0:
        raise UserError(f"{cfg.csv}: target column '{cfg.target}' is empty: choose another --target")
    task, y, labels, task_why = targets(scratch, seen, cfg)
    split = split_rows(seen.rows, y, labels, cfg.test_size, cfg.val_size, cfg.seed).codes
    pre, constant = fit_steps(scratch, seen, split, cfg)
    for role in roles:
        if role.name in constant:
            role.role, role.why = "dropped", "one value in every labelled row"
    target: dict[str, Any] = {}
    y_mean = y_scale = None
    if labels is None:
        target, y_mean, y_scale = regression_target(y, split, cfg)
    sizes = write_splits(stage, scratch, seen, pre, split, y, (y_mean, y_scale), target)
    for file in scratch.folder.iterdir():
        file.unlink()
    scratch.folder.rmdir()
    for role in roles:
        role.missing = seen.nulls.get(role.name, role.missing)
    source = {"csv": str(path.resolve()), "target": cfg.target, "rows_read": seen.rows_read,
              "batches_read": seen.batches, "rows_without_target": seen.rows_read - seen.rows,
              "ids": [r.name for r in roles if r.role == "id"],
              "dropped_columns": [r.name for r in roles if r.role == "dropped"],
              "seed": cfg.seed, "test_size": cfg.test_size, "val_size": cfg.val_size, "task_reason": task_why}
    meta = dataset_meta(task, pre, labels, (y_mean, y_scale), sizes, roles, source)
    meta.target = target
    return meta


def regression_target(y: ScratchColumn, split: np.ndarray, cfg: MakeDataConfig) -> tuple[dict[str, Any], float, float]:
    """How the target is modelled (common/data/preprocess.target_transform: its shape from a
    sample of the training rows, its range from all of them) and its scaling. A log is never
    taken of a negative value in any labelled row: the automatic choice falls back to none, a
    chosen log is refused."""
    n_train = int(np.count_nonzero(split == TRAIN))
    training = ValueRange.of(training_chunks(y, split))
    target = target_transform(y.take(median_sample(split, n_train, cfg.seed)), cfg.target_transform,
                              (training.low, training.high))
    lowest = min(float(y[part].min()) for part in chunks(len(y)))
    if target["transform"] != "none" and lowest < 0:
        if cfg.target_transform != "auto":
            raise UserError(f"{cfg.csv}: target column '{cfg.target}' has values down to {lowest:g}, and "
                            f"{target['transform']} needs a target that is never negative: use --target-transform none")
        target["transform"] = "none"
    mean, scale = fit_target_scaling(transformed_target(c, target) for c in training_chunks(y, split))
    if not log_link(target):
        return target, mean, scale
    if mean <= 0:
        raise UserError(f"{cfg.csv}: target column '{cfg.target}' is 0 in every training row, which a log link "
                        "cannot model: use --target-transform none")
    return target, 0.0, mean  # y / its training mean: the model's output starts near log 1 = 0


def target_is_numeric(head: Any, name: str, task: str | None) -> bool:
    """Numbers make a regression or a few integer classes; text makes classes. Text that is
    mostly numbers is read as numbers unless --task classification says otherwise."""
    import pyarrow as pa

    kind = head.column(name).type
    if is_number_type(kind) or task == "regression":
        return True
    return bool(pa.types.is_string(kind) and task != "classification"
                and column_looks_numeric(head.column(name), decimal_of(head)))


def stream_types(head: Any, names: list[str]) -> dict[str, Any]:
    """CSV types for the streamed numeric columns: integers as float64 (a later block may hold a
    blank or a decimal), other types as the head read them."""
    import pyarrow as pa

    types = {}
    for name in names:
        kind = head.column(name).type
        types[name] = pa.float64() if is_number_type(kind) or pa.types.is_null(kind) else kind
    return types


def first_pass(path: Path, cfg: MakeDataConfig, head: Any, roles: list[ColumnRole], scratch: Scratch) -> FirstPass:
    """Every feature column and the target, batch by batch, into the scratch files."""
    import pyarrow as pa
    import pyarrow.compute as pc

    assert cfg.target is not None
    numeric = [r.name for r in roles if r.role == "numeric"]
    categorical = [r.name for r in roles if r.role == "categorical"]
    numeric_target = target_is_numeric(head, cfg.target, cfg.task)
    seen = FirstPass(numeric, {name: Vocabulary() for name in categorical}, None if numeric_target else Vocabulary())
    text = categorical + ([] if numeric_target else [cfg.target])
    types = stream_types(head, numeric + ([cfg.target] if numeric_target else []))
    decimal = decimal_of(head)
    try:
        for table in table_batches(path, cfg.sep, text, types, [*numeric, *categorical, cfg.target]):
            target = table.column(cfg.target)
            keep = pc.is_valid(target).to_numpy(zero_copy_only=False)
            for name in numeric:
                values = numeric_values(table.column(name), name, path, decimal, seen.rows_read)
                scratch.append(name, values[keep])
            for name in categorical:
                scratch.append(name, seen.categorical[name].encode(table.column(name))[keep])
            if seen.target_vocabulary is None:
                y = numeric_values(target, cfg.target, path, decimal, seen.rows_read)[keep]
            else:
                y = seen.target_vocabulary.encode(target)[keep]
            scratch.append(cfg.target, y)
            scratch.append("row", np.flatnonzero(keep) + seen.rows_read)
            seen.batches += 1
            for name in table.column_names:
                seen.nulls[name] = seen.nulls.get(name, 0) + table.column(name).null_count
            seen.rows_read += table.num_rows
            seen.rows += int(keep.sum())
    except pa.ArrowInvalid as err:
        if "conversion error" not in str(err):
            raise unreadable(path, err) from None
        raise cell_error(path, cfg.sep, str(err).splitlines()[0], seen.rows_read) from None
    except (pa.ArrowException, OSError, UnicodeDecodeError) as err:
        raise unreadable(path, err) from None
    return seen


def cell_error(path: Path, sep: str | None, arrow_message: str, rows_before: int) -> UserError:
    """A cell past the head that does not fit the type the head decided (a word in a column of
    numbers), named by column; pyarrow's streaming reader counts the file's columns from 0 and
    knows the batch, not the row."""
    import re

    found = re.search(r"column #(\d+)", arrow_message)
    header = csv_header(path, sep) if found else []
    index = int(found.group(1)) if found else -1
    column = f"column '{header[index]}'" if 0 <= index < len(header) else "a column"
    return UserError(f"{path}: {column} has a cell after data row {rows_before} that does not fit it "
                     f"({arrow_message}): fix that cell or leave it blank (a missing value), "
                     "or name the column with --categorical")


def targets(scratch: Scratch, seen: FirstPass, cfg: MakeDataConfig) -> tuple[str, Any, list[Any] | None, str]:
    """(task, y, class labels, why that task): int32 class codes 0..K-1 in the order of the
    sorted labels, or the scratch column of a regression's numbers (read a chunk at a time)."""
    assert cfg.target is not None
    raw = scratch.column(cfg.target)
    if seen.target_vocabulary is not None:  # text labels
        values = seen.target_vocabulary.values
        order = sorted(range(len(values)), key=values.__getitem__)
        code = np.empty(len(values), dtype=np.int32)
        code[order] = np.arange(len(values))
        labels: list[Any] = [values[i] for i in order]
        y = class_codes(raw, lambda ids: code[ids])
        task, why = "classification", "text: classes"
    else:
        distinct = few_integers(raw)
        counts = cfg.task is None and distinct is not None and looks_like_counts(distinct,
                                                                                 value_frequencies(raw, distinct))
        task = cfg.task or ("classification" if distinct is not None and not counts else "regression")
        why = task_reason(cfg.task, distinct, counts)
        if task == "regression":
            if not any(np.any(raw[part] != raw[0:1][0]) for part in chunks(seen.rows)):
                raise UserError(f"{cfg.csv}: target column '{cfg.target}' holds one value only: "
                                "there is nothing to learn")
            return task, raw, None, why
        unique = distinct if distinct is not None else distinct_values(raw)
        y = class_codes(raw, lambda numbers: np.searchsorted(unique, numbers))
        labels = (unique.astype(np.int64) if np.all(unique == np.round(unique)) else unique).tolist()
    if len(labels) < 2:
        raise UserError(f"{cfg.csv}: target column '{cfg.target}' holds one class only ({labels[0]!r}): "
                        "there is nothing to learn")
    return task, y, labels, why


def task_reason(given: str | None, distinct: np.ndarray | None, counts: bool) -> str:
    """Why a numeric target makes a classification or a regression, in the words make_data.py prints."""
    if given:
        return f"--task {given}"
    if distinct is None:
        return "numbers: a regression (--task classification for classes)"
    values = f"{len(distinct)} whole numbers, {distinct[0]:g} to {distinct[-1]:g}"
    if counts:
        return f"{values}, skewed like counts: a regression (--task classification for classes)"
    return f"{values}: classes (--task regression for amounts)"


def class_codes(raw: ScratchColumn, code: Any) -> np.ndarray:
    """int32 class codes of every row, `code` applied a chunk at a time: 4 bytes a row, the one
    array of the table's size."""
    y = np.empty(len(raw), dtype=np.int32)
    for part in chunks(len(raw)):
        y[part] = code(raw[part])
    return y


def distinct_values(values: ScratchColumn) -> np.ndarray:
    found: np.ndarray = np.empty(0)
    for part in chunks(len(values)):
        found = np.union1d(found, values[part])
    return found


def value_frequencies(values: ScratchColumn, distinct: np.ndarray) -> np.ndarray:
    """How many rows hold each of the (sorted) distinct values."""
    frequencies = np.zeros(len(distinct), dtype=np.int64)
    for part in chunks(len(values)):
        frequencies += np.bincount(np.searchsorted(distinct, values[part]), minlength=len(distinct))
    return frequencies


def looks_like_counts(distinct: np.ndarray, frequencies: np.ndarray) -> bool:
    """Whole numbers that count something (doctor visits, children, defects) rather than name
    classes: at least MIN_COUNT_VALUES values, none negative, skewed to the right. Class codes
    are fewer, or evenly spread (the ten digits), or ordinal scores around a middle (wine
    quality 3-9); a count of visits piles up at 0 with a long tail, and its figure is how far
    off a prediction is, not which value it names."""
    return len(distinct) >= MIN_COUNT_VALUES and distinct[0] >= 0 and skewness(distinct, frequencies) > SKEWED


def few_integers(values: ScratchColumn) -> np.ndarray | None:
    """The sorted distinct values when there are at most MAX_CLASSES_FROM_INTEGERS, all whole;
    else None (reading stops as soon as that is clear)."""
    found: np.ndarray = np.empty(0)
    for part in chunks(len(values)):
        chunk = values[part]
        if not np.all(chunk == np.round(chunk)):
            return None
        found = np.union1d(found, chunk)
        if len(found) > MAX_CLASSES_FROM_INTEGERS:
            return None
    return found


def fit_steps(scratch: Scratch, seen: FirstPass, split: np.ndarray,
              cfg: MakeDataConfig) -> tuple[Preprocessor, list[str]]:
    """Every fitted step from the training rows alone, read a chunk at a time (common/data/preprocess.py),
    and the columns left out because they hold one value in every training row: the head of the
    file decided the roles over all rows, and a column that varies only where the target is
    blank tells the model nothing."""
    n_train = int(np.count_nonzero(split == TRAIN))
    sample = median_sample(split, n_train, cfg.seed)
    ranges = {name: ValueRange() for name in [*seen.numeric, *seen.categorical]}
    numeric = [fit_numeric(name, scratch.column(name).take(sample),
                           ranges[name].watch(training_chunks(scratch.column(name), split)), cfg.scaling == "quantile")
               for name in seen.numeric]
    categorical = [fit_categorical(name, vocabulary.values,
                                   ranges[name].watch(training_chunks(scratch.column(name), split)),
                                   cfg.min_level_rows, cfg.max_levels)
                   for name, vocabulary in seen.categorical.items()]
    constant = [name for name, seen_range in ranges.items() if seen_range.constant]
    return Preprocessor([s for s in numeric if s.name not in constant],
                        [c for c in categorical if c.name not in constant]), constant


@dataclasses.dataclass
class ValueRange:
    """The least and greatest value of a column's chunks as they go by, and whether any was blank
    (NaN; a category's blank is its id -1, a value like any other)."""

    low: float = np.inf
    high: float = -np.inf
    blank: bool = False

    def watch(self, chunks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        for chunk in chunks:
            present = chunk[~np.isnan(chunk)] if chunk.dtype.kind == "f" else chunk
            self.blank = self.blank or len(present) < len(chunk)
            if len(present):
                self.low, self.high = min(self.low, float(present.min())), max(self.high, float(present.max()))
            yield chunk

    @classmethod
    def of(cls, chunks: Iterator[np.ndarray]) -> ValueRange:
        seen = cls()
        for _ in seen.watch(chunks):
            pass
        return seen

    @property
    def constant(self) -> bool:
        return not self.blank and self.low == self.high


def training_chunks(values: ScratchColumn, split: np.ndarray) -> Iterator[np.ndarray]:
    """A scratch column's training values, a chunk at a time, in file order."""
    for part in chunks(len(split)):
        yield values[part][split[part] == TRAIN]


def median_sample(split: np.ndarray, n_train: int, seed: int) -> np.ndarray:
    """Sorted row numbers of the training rows that medians are taken from: all of them up to
    MEDIAN_SAMPLE, else each with probability MEDIAN_SAMPLE / training rows (a seeded draw per
    chunk, so no index of every training row is ever held)."""
    if n_train <= MEDIAN_SAMPLE:
        return np.flatnonzero(split == TRAIN)
    rng, share = np.random.default_rng([seed, MEDIAN_STREAM]), MEDIAN_SAMPLE / n_train
    draws = (part.start + np.flatnonzero((split[part] == TRAIN) & (rng.random(part.stop - part.start) < share))
             for part in chunks(len(split)))
    return np.concatenate(list(draws))


def write_splits(stage: Path, scratch: Scratch, seen: FirstPass, pre: Preprocessor, split: np.ndarray,
                 y: Any, y_scaling: tuple[float | None, float | None], target: dict[str, Any]) -> dict[str, int]:
    """Each split's inputs, targets and source rows, a chunk at a time, into its .npy files."""
    per_code = np.bincount(split, minlength=len(SPLIT_CODES))
    sizes = {name: int(per_code[code]) for name, code in SPLIT_CODES.items()}
    regression = y_scaling[0] is not None
    numeric = {name: scratch.column(name) for name in seen.numeric}
    ids = {name: scratch.column(name) for name in seen.categorical}
    values = {name: vocabulary.values for name, vocabulary in seen.categorical.items()}
    source_rows = scratch.column("row")
    writers: dict[str, SplitWriter] = {}
    try:
        for name, count in sizes.items():
            writers[name] = SplitWriter(stage, name, count, len(pre.input_names), regression)
        for part in chunks(len(split)):
            X = chunk_inputs(pre, numeric, ids, values, part)
            if regression:
                mean, scale = y_scaling
                assert mean is not None and scale is not None
                targets = ((transformed_target(y[part], target) - mean) / scale).reshape(-1, 1)
            else:
                targets = y[part]
            rows = source_rows[part]
            for name, code in SPLIT_CODES.items():
                chosen = split[part] == code
                writers[name].append(X=X[chosen], y=targets[chosen], rows=rows[chosen])
    finally:
        for writer in writers.values():
            writer.close()
    return sizes


def chunk_inputs(pre: Preprocessor, numeric: dict[str, ScratchColumn], ids: dict[str, ScratchColumn],
                 values: dict[str, list[str]], part: slice) -> np.ndarray:
    return pre.transform(lambda n: numeric[n][part], lambda n: Categories(ids[n][part], values[n]),
                         part.stop - part.start)


def ingest_to_folder(cfg: MakeDataConfig) -> tuple[Path, DatasetDescription]:
    """The data set folder of a user's table, written whole or not at all."""
    assert cfg.csv is not None
    folder = dataset_folder(cfg.out_dir, Path(cfg.csv).stem)
    if not Path(cfg.csv).is_file():
        raise UserError(f"table {cfg.csv} not found: check the path")
    if folder.resolve() in Path(cfg.csv).resolve().parents:
        raise UserError(f"{cfg.csv} lies in {folder}, the folder its data set would replace: "
                        "choose another --out-dir")
    with atomic_folder(folder, is_dataset_file) as stage:
        meta = ingest_file(cfg, stage)
        write_json_file(stage / DATASET_FILE, meta.to_json())
    return folder, meta
