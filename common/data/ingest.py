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

Memory: a batch of the file, a chunk of CHUNK_ROWS rows (two while the splits are written, three
while FIT_WORKERS columns are fitted at once, each with its median sample), the vocabularies of
the categorical columns, and 5 bytes a row for the class codes and the split (1 for a regression).
"""
from __future__ import annotations

import dataclasses
import shlex
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np

from common.config import MakeDataConfig
from common.data.columns import (
    FLOAT32_LIMIT,
    WordsAsBlanks,
    column_looks_numeric,
    column_texts,
    feature_type_advice,
    is_number_type,
    is_point_grouped,
    is_text_type,
    numeric_values,
    pointed_numbers,
    points_group_thousands,
    writes_point_decimals,
)
from common.data.dataset import (
    DATASET_FILE,
    DatasetDescription,
    dataset_folder,
    dataset_meta,
    is_dataset_file,
    recorded_source,
)
from common.data.dates import CYCLE_WORDS, date_cycles, date_values, is_date_type
from common.data.preprocess import (
    MIN_CODE_ROUGHNESS,
    MIN_CODE_TABLE_ROWS,
    fit_categorical,
    fit_code_view,
    fit_numeric,
    roughness,
)
from common.data.roles import ColumnRole, RoleOverrides, infer_roles
from common.data.scratch import (
    Scratch,
    ScratchColumn,
    SplitWriter,
    ValueRange,
    Vocabulary,
    median_sample,
    training_chunks,
)
from common.data.splits import SPLIT_CODES, TRAIN, chunks, split_rows
from common.data.tables import (
    PARQUET_SUFFIXES,
    csv_header,
    decimal_of,
    detect_delimiter,
    read_table,
    require_table_file,
    table_batches,
    table_stem,
    undecodable_column,
    unreadable,
    writes_leading_zeros,
)
from common.data.target import ID_CLASSES, far_target_values, regression_target, targets
from common.errors import UserError
from common.files import atomic_folder, write_json_file
from common.overlap import prefetched, side_by_side, usable_cores
from common.steps import CategoricalStep, Categories, NumericStep, Preprocessor, TargetStep, label_truths


@dataclasses.dataclass
class FirstPass:
    """What one pass over the file learned."""

    numeric: list[str]                     # numbers, and dates (their instants)
    categorical: dict[str, Vocabulary]
    target_vocabulary: Vocabulary | None   # None: the target was read as numbers
    dates: list[str] = dataclasses.field(default_factory=list)  # of `numeric`: their wall clocks too
    unparsed: dict[str, int] = dataclasses.field(default_factory=dict)  # a date column's cells that were no date
    words: dict[str, WordsAsBlanks] = dataclasses.field(default_factory=dict)  # a numeric column's words
    times_of_day: set[str] = dataclasses.field(default_factory=set)  # of `numeric`: Arrow times (time32, time64)
    durations: set[str] = dataclasses.field(default_factory=set)  # of `numeric`: Arrow durations
    target_codes: bool = False  # the target's whole numbers are written with leading zeros: classes as written
    instants: set[str] = dataclasses.field(default_factory=set)  # of `numeric` and the target: Arrow dates, timestamps
    grouped: set[str] = dataclasses.field(default_factory=set)  # numeric columns and target: points group thousands
    rows: int = 0                          # rows kept (with a target)
    rows_read: int = 0
    batches: int = 0
    nulls: dict[str, int] = dataclasses.field(default_factory=dict)   # of the rows read
    blanks: dict[str, int] = dataclasses.field(default_factory=dict)  # of the rows kept: all the model sees

    def with_blanks_counted(self, name: str, values: np.ndarray, blank: Any = np.nan) -> np.ndarray:
        """A batch's kept values of a column, its blanks (NaN, or a category's -1) counted."""
        count = np.count_nonzero(np.isnan(values) if blank is np.nan else values == blank)  # not .sum(): 2.5x slower
        self.blanks[name] = self.blanks.get(name, 0) + int(count)
        return values


def codes_fix(name: str) -> str:
    """What to do about a word among a column's numbers, which the column's first rows read as
    numbers: it may be a code that is mostly digits (a postal code, `K1A 0B1`)."""
    return (f"fix that cell, leave it blank for a missing value, or give --categorical {shlex.quote(name)} if the "
            "column holds codes, not amounts")


WALL = "\0wall"  # a date's wall-clock scratch column: its name + WALL (no column's name has a NUL)


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
    if head.num_rows == 1:  # (the head is the whole of so small a file) every column would be constant
        raise UserError(f"{cfg.csv} has one data row: a model learns from many; add rows")
    require_target_type(head, cfg)
    roles = infer_roles(head, cfg.target, RoleOverrides(cfg.categorical, cfg.numeric, cfg.drop, cfg.id, cfg.date))
    require_utf8(path, cfg, head)
    for name in cfg.id:  # an id is carried into the predictions as text, which these types have not
        if advice := feature_type_advice(head.column(name).type):
            raise UserError(f"{cfg.csv}: --id {name} holds {head.column(name).type} values, which predictions cannot "
                            f"carry: {advice}, or leave it out of --id")
    if not any(r.role in FEATURE_ROLES for r in roles):
        raise UserError(f"{cfg.csv} has no feature columns besides '{cfg.target}' (roles: "
                        f"{ {r.name: r.role for r in roles} }): name some with --numeric or --categorical")
    scratch = Scratch(stage / ".scratch")
    try:
        seen = first_pass(path, cfg, head, roles, scratch)
    finally:
        scratch.close()
    if seen.rows == 0:
        raise UserError(f"{cfg.csv}: target column '{cfg.target}' is empty: choose another --target")
    require_numbers(seen, cfg)
    task, y, labels, task_why = targets(scratch.column(cfg.target), seen.target_vocabulary, cfg, decimal_of(head))
    if is_boolean(head.column(cfg.target)) and labels is not None:  # the words its predictions are
        task_why = f"true/false: classes {' and '.join(f'`{label}`' for label in labels)}"
    elif labels is not None and seen.target_codes:
        task_why = f"whole numbers written with a leading zero ({labels[0]!r}, ...): codes, classes as written " \
                   "(--task regression for amounts)"
    split = split_rows(seen.rows, y, labels, cfg.test_size, cfg.val_size, cfg.seed).codes
    pre, constant = fit_steps(scratch, seen, split, cfg, y, labels)
    for role in roles:
        if role.name in constant:
            role.role, role.why = "dropped", "one value in every labelled row"
    target = regression_target(y, split, cfg) if labels is None else None
    if target is not None:
        target = dataclasses.replace(target, thousands="." if cfg.target in seen.grouped else "",
                                     instants=cfg.target in seen.instants)
    far = far_target_values(y, split, cfg.seed) if labels is None else None  # read before the scratch files go
    sizes = write_splits(stage, scratch, seen, pre, split, y, target)
    for file in scratch.folder.iterdir():
        file.unlink()
    scratch.folder.rmdir()
    for role in roles:
        note_what_was_read(role, seen, pre, cfg.max_levels)
    source = {"csv": str(path.resolve()), "target": cfg.target, "rows_read": seen.rows_read,
              "batches_read": seen.batches, "rows_without_target": seen.rows_read - seen.rows,
              "ids": [r.name for r in roles if r.role == "id"],
              "dropped_columns": [r.name for r in roles if r.role == "dropped"],
              "seed": cfg.seed, "test_size": cfg.test_size, "val_size": cfg.val_size, "task_reason": task_why}
    # its labels are its words as written: two of them, spelling false and true (`True`, `true` and
    # `false` stay three text classes)
    if labels is not None and is_boolean(head.column(cfg.target)) and label_truths(labels):
        source["target_boolean"] = True
    if labels is not None and (few := classes_of_few_rows(y, labels, split)):
        source["classes_of_few_rows"] = few
    if far:
        source["target_far_values"] = far
    return dataset_meta(task, pre, labels, target, sizes, roles, source)


FEW_CLASS_ROWS = 10  # a class with fewer training rows can hardly be learned, yet weighs as much in macro-F1


def classes_of_few_rows(y: np.ndarray, labels: list[Any], split: np.ndarray) -> dict[str, int]:
    """{label as text: training rows} of the classes under FEW_CLASS_ROWS."""
    counts = np.bincount(y[split == TRAIN], minlength=len(labels))
    return {str(label): int(n) for label, n in zip(labels, counts, strict=True) if n < FEW_CLASS_ROWS}


FEATURE_ROLES = ("numeric", "categorical", "date")


def require_utf8(path: Path, cfg: MakeDataConfig, head: Any) -> None:
    """A CSV column pyarrow could only read as bytes holds some that are not UTF-8 (a file saved
    as Latin-1, say): the file's fault, not a column to drop without a word, unless --drop names
    it. Past the head the read itself stops at such bytes (tables.unreadable), as here."""
    import pyarrow as pa

    if path.suffix.lower() in PARQUET_SUFFIXES:
        return
    for column, field in enumerate(head.schema):
        if pa.types.is_binary(field.type) and field.name not in cfg.drop:
            drop = f", or leave the column out with --drop {field.name}" if field.name != cfg.target else ""
            raise UserError(f"cannot read {path} ({undecodable_column(path, cfg.sep, column, field.name)}): "
                            f"save it as UTF-8 CSV{drop}")


def require_target_type(head: Any, cfg: MakeDataConfig) -> None:
    """A target of lists or records names no class and no amount; one of dates is taken for
    classes of text (or an id) unless --task says what to predict; one of words is no amount a
    regression can take."""
    import pyarrow as pa

    column = head.column(cfg.target)
    kind = column.type
    if pa.types.is_nested(kind):
        raise UserError(f"{cfg.csv}: target column '{cfg.target}' holds {kind} values, several to a row, which "
                        "cannot be predicted: choose another --target")
    if is_date_type(kind) and cfg.task is None:
        raise UserError(f"{cfg.csv}: target column '{cfg.target}' holds dates ({kind}): give --task regression to "
                        "predict them (as seconds since 1970), --task classification to take each date as a class, "
                        "or choose another --target")
    if cfg.task == "regression" and is_text_type(kind) and column.null_count < len(column) \
            and not column_looks_numeric(column, decimal_of(head)):
        words = Counter(text for text in column_texts(column) if text is not None)
        raise UserError(f"{cfg.csv}: target column '{cfg.target}' holds words ({most_frequent(words)}), not "
                        "numbers, which --task regression needs: leave out --task to predict its classes, or "
                        "choose another --target")


def require_numbers(seen: FirstPass, cfg: MakeDataConfig) -> None:
    """A numeric column of words alone (`--numeric` given a column of text) would be all blanks;
    one that is mostly words, its numbers first (a role decided on its first cells), would lose
    most of its cells as blanks: refused, unless --numeric asked for it."""
    for name, words in seen.words.items():
        cells = sum(words.cells.values())
        if words.cells and cells + seen.nulls.get(name, 0) >= seen.rows_read:  # every row read
            raise UserError(f"{cfg.csv}: column '{name}' holds no numbers, only words "
                            f"({most_frequent(words.cells)}): give it as --categorical, or leave it out of --numeric")
        numbers = seen.rows_read - seen.nulls.get(name, 0) - cells
        if cells > numbers and name not in cfg.numeric:
            raise UserError(f"{cfg.csv}: column '{name}' holds more words than numbers ({cells:,} cells: "
                            f"{most_frequent(words.cells, counted=True)}; {numbers:,} numbers), though its first "
                            "cells are numbers: give it as --categorical, or as --numeric to read its words as blanks")


def most_frequent(words: dict[str, int], counted: bool = False) -> str:
    """The five most frequent words, quoted, with their cells where `counted`; "..." for more."""
    top = sorted(words.items(), key=lambda item: -item[1])[:5]
    shown = ", ".join(f"'{word}' ({n})" if counted else f"'{word}'" for word, n in top)
    return shown + (", ..." if len(words) > 5 else "")


def note_what_was_read(role: ColumnRole, seen: FirstPass, pre: Preprocessor, max_levels: int) -> None:
    """A role's blanks in the rows kept (those with a target, every split's; a column of no role keeps
    the head's count), and its line's notes over the file: cells that were no date, words read as
    blanks (the most frequent five), a date's cycles, a view as codes, levels past --max-levels."""
    unparsed = seen.unparsed.get(role.name, 0)
    words = seen.words[role.name].cells if role.name in seen.words else {}
    role.missing = seen.blanks.get(role.name, role.missing)
    if unparsed:
        role.why += f"; {unparsed} cell(s) not dates, read as blanks"
    if words:
        role.why += f"; words read as blanks: {most_frequent(words, counted=True)}"
    step = next((step for step in pre.dates if step.name == role.name), None)
    if step is not None:
        role.why += ": " + ", ".join(CYCLE_WORDS[part] for part in step.date_parts)
    view = pre.code_view(role.name)
    if view is not None:
        role.why += f"; also as codes ({len(view.levels)} values)"
    text = next((step for step in pre.text_categorical if step.name == role.name), None)
    values = seen.categorical.get(role.name)
    kept = [level for level in text.levels if level is not None] if text is not None else []
    # the cap filled, and values left out: the cap decided them, not --min-level-rows
    if text is not None and values is not None and len(text.levels) >= max_levels and len(values.values) > len(kept):
        role.why += f"; only the {max_levels} most frequent kept as levels (--max-levels), the rest share one code"


def target_is_numeric(head: Any, name: str, task: str | None, written: Any = None) -> bool:
    """Numbers make a regression or a few integer classes; text makes classes. Text that is
    mostly numbers is read as numbers unless --task classification says otherwise. Whole numbers
    written with a leading zero (`007`, `010`: the head's column as the file wrote it, `written`),
    up to ID_CLASSES values, are codes: classes named as written, unless --task regression says
    otherwise (more are amounts written to a fixed width)."""
    import pyarrow as pa

    kind = head.column(name).type
    if task == "regression":
        return True
    if is_number_type(kind):
        return not (written is not None and pa.types.is_integer(kind) and written_as_codes(written))
    return bool(pa.types.is_string(kind) and task != "classification" and not written_as_codes(head.column(name))
                and column_looks_numeric(head.column(name), decimal_of(head)))


def reads_as_numbers(column: Any, decimal: str) -> bool:
    """Numbers, or text that is mostly numbers (column_looks_numeric)."""
    return bool(is_number_type(column.type) or is_text_type(column.type) and column_looks_numeric(column, decimal))


def written_as_codes(written: Any) -> bool:
    """Whole numbers written with a leading zero (`007`), up to ID_CLASSES values: codes, not
    amounts (more values are amounts written to a fixed width, `00021`)."""
    import pyarrow.compute as pc

    return zero_led(written) and pc.count_distinct(written).as_py() <= ID_CLASSES


def target_as_written(path: Path, cfg: MakeDataConfig, head: Any) -> Any:
    """The target column of a CSV's head as text, where pyarrow read it as whole numbers (and so
    dropped any leading zero); None elsewhere."""
    import pyarrow as pa

    assert cfg.target is not None
    if path.suffix.lower() in PARQUET_SUFFIXES or not pa.types.is_integer(head.column(cfg.target).type) \
            or not writes_leading_zeros(path):
        return None
    return read_table(path, cfg.sep, text_columns=[cfg.target], head=True).column(cfg.target)


def zero_led(column: Any) -> bool:
    """Whether a text column writes a whole number with a leading zero (`007`, `-01`; not `0`)."""
    import pyarrow.compute as pc

    return bool(pc.any(pc.match_substring_regex(column, r"^\s*-?0[0-9]")).as_py())


def date_types(names: list[str]) -> dict[str, Any]:
    """CSV types for the streamed date columns: text, whatever the head read, so that training
    reads a date as prediction does (common/data/dates.py): pyarrow would turn `12:00+05:00` into
    07:00 UTC and lose the clock as written, and stop at a later cell of another form."""
    import pyarrow as pa

    return {name: pa.string() for name in names}


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
    dates = [r.name for r in roles if r.role == "date"]
    categorical = [r.name for r in roles if r.role == "categorical"]
    written = target_as_written(path, cfg, head)
    numeric_target = target_is_numeric(head, cfg.target, cfg.task, written)
    seen = FirstPass(numeric + dates, {name: Vocabulary() for name in categorical},
                     None if numeric_target else Vocabulary(), dates,
                     times_of_day={name for name in numeric if pa.types.is_time(head.column(name).type)},
                     durations={name for name in numeric if pa.types.is_duration(head.column(name).type)},
                     instants={name for name in [*numeric, cfg.target] if is_date_type(head.column(name).type)},
                     grouped=grouped_columns(head, numeric + ([cfg.target] if numeric_target else [])),
                     target_codes=not numeric_target and reads_as_numbers(head.column(cfg.target), decimal_of(head))
                     and written_as_codes(written if written is not None else head.column(cfg.target)))
    text = categorical + ([] if numeric_target else [cfg.target])
    types = stream_types(head, numeric + ([cfg.target] if numeric_target else [])) | date_types(dates)
    decimal = decimal_of(head)
    try:
        for table in table_batches(path, cfg.sep, text, types, [*numeric, *dates, *categorical, cfg.target]):
            target = table.column(cfg.target)
            # every row labelled (the usual case): views of the batch, not copies
            keep = slice(None) if target.null_count == 0 else pc.is_valid(target).to_numpy(zero_copy_only=False)
            for name in numeric:
                words = seen.words.setdefault(name, WordsAsBlanks(learn=True))
                values = numeric_values(table.column(name), name, path, decimal, seen.rows_read, words, FLOAT32_LIMIT,
                                        grouped=name in seen.grouped, fix=codes_fix(name))
                scratch.append(name, seen.with_blanks_counted(name, values[keep]))
            for name in dates:
                found = date_values(table.column(name))
                scratch.append(name, seen.with_blanks_counted(name, found.instant[keep]))
                scratch.append(name + WALL, found.wall[keep])
                seen.unparsed[name] = seen.unparsed.get(name, 0) + found.unparsed
            for name in categorical:
                codes = seen.categorical[name].encode(table.column(name))[keep]
                scratch.append(name, seen.with_blanks_counted(name, codes, -1))
            if seen.target_vocabulary is None:
                y = numeric_values(target, cfg.target, path, decimal, seen.rows_read, limit=FLOAT32_LIMIT,
                                   grouped=cfg.target in seen.grouped)[keep]
            else:
                y = seen.target_vocabulary.encode(target)[keep]
            scratch.append(cfg.target, y)
            scratch.append("row", np.arange(seen.rows_read, seen.rows_read + table.num_rows)[keep])
            seen.batches += 1
            for name in table.column_names:
                seen.nulls[name] = seen.nulls.get(name, 0) + table.column(name).null_count
            seen.rows_read += table.num_rows
            seen.rows += len(y)
    except pa.ArrowInvalid as err:
        if "conversion error" not in str(err):
            raise unreadable(path, err, cfg.sep) from None
        raise cell_error(path, cfg.sep, str(err).splitlines()[0], seen.rows_read) from None
    except (pa.ArrowException, OSError, UnicodeDecodeError) as err:
        raise unreadable(path, err, cfg.sep) from None
    return seen


def is_boolean(column: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_boolean(column.type))


def grouped_columns(head: Any, numeric: list[str]) -> set[str]:
    """The numeric columns (a regression's target among them) of a decimal-comma file that read a
    point as a thousands mark (`1.186,70`, `12.000`), as such files write it: every column of
    numbers, those with no point in the head too (a `12.000` at prediction is then 12000, never
    12), unless a cell of the head shows a point as a decimal mark (`2.5`): the file's points are
    then decimal marks, in every column. Decided once, recorded on the step (the target's too),
    read so at prediction."""
    import pyarrow as pa

    if decimal_of(head) != ",":
        return set()
    texts = {name: head.column(name).to_pylist() for name in numeric if pa.types.is_string(head.column(name).type)}
    if any(writes_point_decimals(cells) for cells in texts.values()):  # the file's points are decimal marks
        return set()
    numbers = {name for name in numeric if is_number_type(head.column(name).type)}  # no point in the head
    return numbers | {name for name, cells in texts.items()
                      if not pointed_numbers(cells) or points_group_thousands(cells)}


def cell_error(path: Path, sep: str | None, arrow_message: str, rows_before: int) -> UserError:
    """A cell past the head that does not fit the type the head decided (a word in a column of
    numbers), named by column (pyarrow counts the file's columns from 0) and by data row where
    pyarrow numbers the row within the piece it parsed; else after the rows read before it."""
    import re

    if "invalid UTF8" in arrow_message:  # not the column's type: the file's encoding
        return unreadable(path, ValueError(arrow_message), sep)
    found = re.search(r"column #(\d+)", arrow_message)
    header = csv_header(path, sep) if found else []
    index = int(found.group(1)) if found else -1
    column = f"column '{header[index]}'" if 0 <= index < len(header) else "a column"
    value = re.search(r"invalid value '(.*)'", arrow_message)
    # Parsing a piece of the file (tables.table_batches' pieces of a plain file), pyarrow numbers
    # its rows from 1 past the rows before it (checked on files of 700,000 rows, a word in row
    # 550,001 and 600,000); its own streaming reader (a compressed file) gives no row.
    numbered = re.search(r"Row #(\d+)", arrow_message)
    where = f"in data row {rows_before + int(numbered.group(1)) - 1}" if numbered else f"after data row {rows_before}"
    if value and (sep or detect_delimiter(path)) == ";" and is_point_grouped(value.group(1)):
        return UserError(f"{path}: {column} has {value.group(1)!r} {where}, its point grouping "
                         "thousands, where the file's head (its first 8 MiB) writes that column's numbers without "
                         "points and they were read as plain numbers: write the column's numbers one way (4000), or "
                         "move such a row into the head")
    kind = re.search(r"conversion error to (\w+)", arrow_message)
    if value and numbered and kind:
        held = {"double": "numbers", "int64": "whole numbers"}.get(kind.group(1), f"{kind.group(1)} values")
        return UserError(f"{path}: {column} has {value.group(1)!r} {where}, where the file's head (its first 8 MiB) "
                         f"holds {held} only: fix that cell or leave it blank (a missing value), or name the column "
                         "with --categorical")
    return UserError(f"{path}: {column} has a cell {where} that does not fit it "
                     f"({arrow_message}): fix that cell or leave it blank (a missing value), "
                     "or name the column with --categorical")


FIT_WORKERS = 2  # numeric columns fitted at once (fit_steps)


def fit_steps(scratch: Scratch, seen: FirstPass, split: np.ndarray, cfg: MakeDataConfig, y: Any,
              labels: list[Any] | None) -> tuple[Preprocessor, list[str]]:
    """Every fitted step from the training rows alone, read a chunk at a time (common/data/preprocess.py),
    and the columns left out because they hold one value in every training row: the head of the
    file decided the roles over all rows, and a column that varies only where the target is
    blank tells the model nothing."""
    n_train = int(np.count_nonzero(split == TRAIN))
    sample = median_sample(split, n_train, cfg.seed)
    ranges = {name: ValueRange() for name in [*seen.numeric, *seen.categorical]}

    def fitted(name: str) -> NumericStep:
        return fit_numeric(name, scratch.column(name).take(sample),
                           ranges[name].watch(training_chunks(scratch.column(name), split)), cfg.scaling == "quantile")

    # Columns fitted side by side, each on its own (its reads, sorts and sums release the GIL):
    # the same steps in about half the time on two cores. Each holds its median sample and a
    # chunk (~55 MB at MEDIAN_SAMPLE), so never more than FIT_WORKERS at once.
    numeric = list(side_by_side(fitted, iter(seen.numeric), min(usable_cores(), FIT_WORKERS)))
    for step in numeric:
        if step.name in seen.dates:
            step.date_parts = date_cycles(training_chunks(scratch.column(step.name + WALL), split))
        if step.name in seen.words:
            step.blank_words = tuple(sorted(seen.words[step.name].known))
        step.time_of_day = step.name in seen.times_of_day
        step.durations = step.name in seen.durations
        step.instants = step.name in seen.instants
        step.thousands = "." if step.name in seen.grouped else ""
    categorical = [fit_categorical(name, vocabulary.values,
                                   ranges[name].watch(training_chunks(scratch.column(name), split)),
                                   cfg.min_level_rows, cfg.max_levels)
                   for name, vocabulary in seen.categorical.items()]
    constant = [name for name, seen_range in ranges.items() if seen_range.constant]
    numeric = [s for s in numeric if s.name not in constant]
    return Preprocessor(numeric, [c for c in categorical if c.name not in constant]
                        + code_views(scratch, split, numeric, cfg, y, labels, sample)), constant


def code_views(scratch: Scratch, split: np.ndarray, numeric: list[NumericStep], cfg: MakeDataConfig, y: Any,
               labels: list[Any] | None, sample: np.ndarray) -> list[CategoricalStep]:
    """Each whole-number column's (or repeated fraction's) view as categories where it has the shape of codes
    (preprocess.fit_code_view) and its values, in their order, do not move the target smoothly
    (preprocess.roughness), but for dates, columns named with --numeric, or with
    --no-integer-codes: trees split a code such as an occupation's into its groups, which a
    network reading only the number cannot do well."""
    if not cfg.integer_codes or np.count_nonzero(split == TRAIN) < MIN_CODE_TABLE_ROWS:
        return []
    fitted = [fit_code_view(step.name, training_chunks(scratch.column(step.name), split), cfg.min_level_rows,
                            cfg.max_levels)
              for step in numeric if not step.is_date and step.name not in cfg.numeric]
    views = [view for view in fitted if view is not None]
    if not views:
        return []
    as_target = target_vectors(y, labels, split, sample)
    return [view for view in views if roughness(view, zip(training_chunks(scratch.column(view.name), split),
                                                          as_target(), strict=True)) >= MIN_CODE_ROUGHNESS]


def target_vectors(y: Any, labels: list[Any] | None, split: np.ndarray, sample: np.ndarray
                   ) -> Callable[[], Iterator[np.ndarray]]:
    """The training rows' targets a chunk at a time, as rows of numbers to average: a class's
    0/1 indicators, or a regression value's rank among the training values in [0, 1] (from
    their quantiles in the median's sample of rows, so that a skewed target's few large values
    do not rule)."""
    if labels is not None:
        eye = np.eye(len(labels))
        return lambda: (eye[chunk] for chunk in training_chunks(y, split))
    values = y.take(sample)
    cuts = np.quantile(values[~np.isnan(values)], np.linspace(0, 1, 101))
    return lambda: ((np.searchsorted(cuts, chunk) / len(cuts))[:, None] for chunk in training_chunks(y, split))


def write_splits(stage: Path, scratch: Scratch, seen: FirstPass, pre: Preprocessor, split: np.ndarray,
                 y: Any, target: TargetStep | None) -> dict[str, int]:
    """Each split's inputs, targets and source rows, a chunk at a time, into its .npy files."""
    per_code = np.bincount(split, minlength=len(SPLIT_CODES))
    sizes = {name: int(per_code[code]) for name, code in SPLIT_CODES.items()}
    numeric = {name: scratch.column(name) for name in seen.numeric}
    numeric |= {name + WALL: scratch.column(name + WALL) for name in seen.dates}
    ids = {name: scratch.column(name) for name in seen.categorical}
    values = {name: vocabulary.values for name, vocabulary in seen.categorical.items()}
    source_rows = scratch.column("row")
    writers: dict[str, SplitWriter] = {}
    try:
        for name, count in sizes.items():
            writers[name] = SplitWriter(stage, name, count, len(pre.input_names), target is not None)
        # The next chunk's inputs made on a thread while this one is written: two cores overlap
        # the transform and the writes, at the memory of one chunk more.
        made = ((part, chunk_inputs(pre, numeric, ids, values, part)) for part in chunks(len(split)))
        with closing(prefetched(made)) as inputs:  # closed (the chunk in the making done) before the files
            for part, X in inputs:
                targets = y[part] if target is None else target.forward(y[part]).reshape(-1, 1)
                rows = source_rows[part]
                for name, code in SPLIT_CODES.items():
                    chosen = split[part] == code
                    pick = slice(None) if chosen.all() else chosen  # a chunk of one split: written as it is
                    writers[name].append(X=X[pick], y=targets[pick], rows=rows[pick])
    finally:
        for writer in writers.values():
            writer.close()
    return sizes


def chunk_inputs(pre: Preprocessor, numeric: dict[str, ScratchColumn], ids: dict[str, ScratchColumn],
                 values: dict[str, list[str]], part: slice) -> np.ndarray:
    return pre.transform(lambda n: numeric[n][part], lambda n: Categories(ids[n][part], values[n]),
                         part.stop - part.start, lambda n: numeric[n + WALL][part])


def ingest_to_folder(cfg: MakeDataConfig, source: str | None = None, stem: str | None = None,
                     accept: Callable[[Path], object] | None = None) -> tuple[Path, DatasetDescription, str | None]:
    """The data set folder of a user's table, written whole or not at all: <out-dir>/<stem>, the
    file's stem by default. `source`: where the table came from, where that is not the file (a
    table given in memory, written out to be read). `accept`: called with the finished data set
    before it takes the folder's place; an error it raises leaves the earlier one there. Third:
    the table an earlier data set in the folder was made from, where it may have been another
    (for the caller to say so)."""
    assert cfg.csv is not None
    folder = dataset_folder(cfg.out_dir, stem or table_stem(cfg.csv))
    require_table_file(cfg.csv, "--csv")
    if folder.resolve() in Path(cfg.csv).resolve().parents:
        raise UserError(f"{cfg.csv} lies in {folder}, the folder its data set would replace: "
                        "choose another --out-dir")
    earlier = recorded_source(folder)
    with atomic_folder(folder, is_dataset_file) as stage:
        meta = ingest_file(cfg, stage)
        if source is not None:
            meta.source["csv"] = source
        write_json_file(stage / DATASET_FILE, meta.to_json())
        if accept is not None:
            accept(stage)
    # Two files of one name, say; a table in memory is known by its description alone.
    replaced = earlier if earlier is not None and (earlier != meta.source["csv"] or source is not None) else None
    return folder, meta, replaced
