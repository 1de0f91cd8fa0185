"""Prediction's outputs: CSV, Parquet or .npz files written batch by batch, the carried input
columns in front of the predictions and class probabilities."""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Collection
from pathlib import Path
from typing import Any, cast

import numpy as np

from common.errors import UserError


def check_figures_path(path: str, others: dict[str, str | None]) -> None:
    """The file --metrics-json names is one of its own: not one of `others` (the input, the
    output, the data set: what the run reads or writes), nor a file of a model, checkpoint or data
    set folder (refuse_a_folders_own_file)."""
    target = Path(path).resolve()
    for what, other in others.items():
        if other and target == Path(other).resolve():
            raise UserError(f"--metrics-json {path} is the {what}: choose another path")
    refuse_a_folders_own_file("--metrics-json", path, {".json"})


def refuse_a_folders_own_file(flag: str, path: str, writes: Collection[str]) -> None:
    """`path` (or the file a link there points to, which is what a write replaces) is no file a
    model, checkpoint or data set folder holds, but one of the kinds `flag` writes (suffixes) that
    the user put there: replaced, the model or the data set would be lost."""
    from common.data.dataset import DATASET_FILE
    from common.model_folder import CONFIG_FILE, IMPORTANCE_FILE, MODEL_FILE, STATE_FILE

    target = Path(path).resolve()
    own_json = (CONFIG_FILE, IMPORTANCE_FILE, DATASET_FILE, STATE_FILE)
    ours = any((target.parent / name).is_file() for name in (CONFIG_FILE, MODEL_FILE, DATASET_FILE, STATE_FILE))
    if ours and target.is_file() and (target.suffix.lower() not in writes or target.name in own_json):
        raise UserError(f"{flag} {path} is a file of the model, checkpoint or data set in {target.parent}: "
                        "choose another path")


def carried_names(names: list[str], class_labels: list | None, kind: str = "csv") -> dict[str, str]:
    """Each input column's name in the output, renamed `<name>_input` where ours would take it (a
    table's `proba_<label>` columns, an .npz's `proba` (rows x classes) and `classes` arrays), and
    `<name>_input2`, ... where that is an input column's own name."""
    probabilities = ("proba", NPZ_CLASSES) if kind == "npz" else (f"proba_{label}" for label in class_labels or [])
    ours = {"prediction", *probabilities}
    taken = ours | set(names)
    renamed = {}
    for name in names:
        if name in ours:
            new, k = f"{name}_input", 2
            while new in taken:
                new, k = f"{name}_input{k}", k + 1
            taken.add(new)
            renamed[name] = new
        else:
            renamed[name] = name
    return renamed


NPZ_CLASSES = "classes"  # an .npz's class labels, in its `proba` columns' order


OUTPUT_KINDS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".npz": "npz"}


@dataclasses.dataclass
class FormattedBatch:
    """A batch ready to write: a CSV batch's lines under its header, or its columns (an .npz
    batch's arrays; a table's, for pyarrow)."""
    rows: int
    columns: dict[str, Any] = dataclasses.field(default_factory=dict)
    header: list[str] = dataclasses.field(default_factory=list)
    lines: bytes | None = None


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

    def formatted(self, extra: dict[str, Any], result: dict[str, np.ndarray]) -> FormattedBatch:
        """One batch made ready to write, on any thread, so that batches are formatted side by
        side: it only reads the writer (the labels' text, cached on it, comes out the same from
        either thread). `extra`: the input's other columns (pyarrow columns), copied in front of
        the predictions: of their own types in Parquet, as numbers or text in an .npz, as text in CSV."""
        from common.data.columns import carried_text

        names = carried_names(list(extra), self.class_labels, self.kind)
        named = {names[name]: values for name, values in extra.items()}
        rows = len(result["prediction"])
        if self.kind == "npz":
            # Row-major here, on the predictors' threads, as the .npy members lay the rows out
            # (probabilities come column-major: common.model.class_probabilities). No "class": the labels say it.
            return FormattedBatch(rows, {**{k: npz_column(v) for k, v in named.items()},
                                         **{k: np.ascontiguousarray(v) for k, v in result.items() if k != "class"}})
        if self.kind == "csv":
            named = {name: carried_text(values) for name, values in named.items()}
        proba_names = [f"proba_{label}" for label in self.class_labels or []] if "proba" in result else []
        if self.kind == "csv" and (lines := self.csv_bytes(named, result)) is not None:
            return FormattedBatch(rows, header=[*named, "prediction", *proba_names], lines=lines)
        probabilities = {name: result["proba"][:, k] for k, name in enumerate(proba_names)}
        # Six decimals: all a reader of a table needs (an .npz keeps every bit).
        return FormattedBatch(rows, {**named, "prediction": result["prediction"],
                                     **{name: np.round(p, 6) for name, p in probabilities.items()}})

    def write(self, batch: FormattedBatch) -> None:
        """A formatted batch, after the one before it."""
        self.rows += batch.rows
        if self.kind == "npz":
            self.parts.append(batch.columns)
        elif batch.lines is not None:
            self.writer = self.writer or CsvLines(self.tmp)
            self.writer.write_header(batch.header)
            self.writer.write_lines(batch.lines)
        else:
            self._write(batch.columns)

    def csv_bytes(self, named: dict[str, Any], result: dict[str, np.ndarray]) -> bytes | None:
        """A classification batch's CSV lines composed as bytes with numpy, the same text the
        pyarrow path writes (tested): formatting three million probabilities through pyarrow's
        cast and joins took most of a million-row prediction. None where a value has no such
        form here (a regression's value, long or odd text): the pyarrow path writes it."""
        if "proba" not in result:
            return None
        fields = [padded_text(csv_text(column)) for column in named.values()]
        fields.append(self.label_text(result["class"]))
        fields += [probability_text(result["proba"][:, k]) for k in range(result["proba"].shape[1])]
        if any(field is None for field in fields):
            return None
        return csv_lines(cast(list[np.ndarray], fields))

    def label_text(self, index: np.ndarray) -> np.ndarray | None:
        """Each row's predicted class as the pyarrow path writes its label."""
        return None if self.labels_text is None else self.labels_text[index]

    @functools.cached_property
    def labels_text(self) -> np.ndarray | None:
        """Whole-number and text labels are written as pyarrow writes them (str() and
        quote_text) without importing it, which a prediction from a .npy array otherwise never does."""
        labels = np.asarray(self.class_labels).tolist()
        if all(isinstance(label, str) for label in labels) or all(type(label) is int for label in labels):
            encoded = [(quote_text(label) if isinstance(label, str) else str(label)).encode() for label in labels]
            if max(map(len, encoded)) > WIDEST_PADDED or any(0 in text for text in encoded):
                return None
            return np.asarray(encoded, dtype=bytes).view(np.uint8).reshape(len(encoded), -1)
        import pyarrow as pa

        return padded_text(csv_text(pa.array(np.asarray(self.class_labels))))

    def _write(self, columns: dict[str, Any]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({name: values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
                          for name, values in columns.items()})
        self.schema = self.schema or table.schema  # the first batch's types hold for every batch
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.tmp, table.schema) if self.kind == "parquet" else CsvLines(self.tmp)
        self.writer.write_table(table.cast(self.schema))

    def close(self) -> None:
        if self.kind != "npz":
            if self.writer is not None:
                self.writer.close()
            return
        classes = {} if self.class_labels is None else {NPZ_CLASSES: np.asarray(self.class_labels)}
        if classes and classes[NPZ_CLASSES].dtype == object:  # labels of mixed kinds: as text, no pickle
            classes[NPZ_CLASSES] = classes[NPZ_CLASSES].astype(str)
        write_npz(self.tmp, self.parts, classes)


def npz_column(column: Any) -> np.ndarray:
    """A carried column as an .npz holds it without pickle: numbers as numbers (whole numbers with
    a blank as floats, NaN for it), anything else as text (blank for a missing cell)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from common.data.columns import carried_text

    kind = column.type
    if pa.types.is_floating(kind) or (pa.types.is_integer(kind) and column.null_count == 0):
        return np.asarray(column.to_numpy(zero_copy_only=False))
    if pa.types.is_integer(kind):
        return np.asarray(pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False))
    return np.asarray(cast(Any, carried_text(column)).to_pylist(), dtype=str)  # text-less types are not carried


def write_npz(path: Path, parts: list[dict[str, np.ndarray]], whole: dict[str, np.ndarray] | None = None) -> None:
    """The batches' arrays as np.savez lays them out (uncompressed .npy members), each array's
    batches written one after another under one header: no joined copy of a million rows (and
    none of np.save's own) before the write. Batches of differing types (text labels of
    differing lengths) are joined first, as np.concatenate widens them. `whole`: arrays that are
    not by row (the class labels), written after them."""
    import zipfile

    members = [(name, [part[name] for part in parts]) for name in (parts[0] if parts else [])]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, batches in [*members, *((name, [array]) for name, array in (whole or {}).items())]:
            batches = [np.ascontiguousarray(batch) for batch in batches]
            if len({batch.dtype for batch in batches}) > 1:
                batches = [np.concatenate(batches)]
            header = np.lib.format.header_data_from_array_1_0(batches[0])
            header["shape"] = (sum(len(batch) for batch in batches), *batches[0].shape[1:])
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_1_0(member, header)
                for batch in batches:
                    member.write(batch.reshape(-1).view(np.uint8).data)


class CsvLines:
    """CSV text with values quoted only where they need it (a comma, quote or line break), as
    spreadsheets and pandas write it: `ID,prediction` and `133`, not `"ID","prediction"` and
    `"133"`. pyarrow's CSV writer quotes every header name and every text value even under its
    "needed" style, so the lines are joined by pyarrow's compute functions instead (numbers cast
    to text as its writer casts them), still without a Python step per row."""

    def __init__(self, path: Path):
        self.fh = open(path, "wb")  # noqa: SIM115 (closed by close(), as the pyarrow writers are)
        self.header = False

    def write_header(self, names: list[str]) -> None:
        if not self.header:
            self.fh.write((",".join(quote_text(name) for name in names) + "\n").encode())
            self.header = True

    def write_lines(self, lines: bytes) -> None:
        self.fh.write(lines)

    def write_table(self, table: Any) -> None:
        import pyarrow.compute as pc

        self.write_header(table.column_names)
        if table.num_rows == 0:
            return
        lines = pc.binary_join_element_wise(*(csv_text(column) for column in table.columns), ",")
        lines = pc.binary_join_element_wise(lines, "", "\n").combine_chunks()
        offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset:lines.offset + len(lines) + 1]
        self.fh.write(memoryview(lines.buffers()[2])[offsets[0]:offsets[-1]])

    def close(self) -> None:
        self.fh.close()


def csv_lines(fields: list[np.ndarray]) -> bytes:
    """Rows of fields, each [rows, width] bytes padded with zero bytes, which are dropped."""
    lines = np.empty((len(fields[0]), sum(field.shape[1] + 1 for field in fields)), np.uint8)
    at = 0
    for field in fields:
        lines[:, at:at + field.shape[1]] = field
        lines[:, at + field.shape[1]] = ord(",")
        at += field.shape[1] + 1
    lines[:, -1] = ord("\n")
    lines = lines.ravel()
    return np.compress(lines != 0, lines).tobytes()  # 3x faster than lines[lines != 0]


def quote_text(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\r\n') else text


def csv_text(column: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pa.types.is_string(column.type):
        return pc.cast(column, pa.string())
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(column, '"', '""'), '"', "")
    return pc.if_else(pc.match_substring_regex(column, r'[,"\r\n]'), quoted, column)


WIDEST_PADDED = 64  # a longer text field would make the padded rows costlier than pyarrow's joins


def padded_text(column: Any) -> np.ndarray | None:
    """A pyarrow text column as [rows, longest] bytes, each value padded with zero bytes; None
    where a value is longer than WIDEST_PADDED or holds a zero byte itself."""
    import pyarrow as pa

    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not pa.types.is_string(column.type) or column.null_count:
        return None
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32)[column.offset:column.offset + len(column) + 1]
    data = np.frombuffer(column.buffers()[2], dtype=np.uint8) if len(column) else np.zeros(1, np.uint8)
    lengths = np.diff(offsets)
    width = int(lengths.max(initial=0))
    if width > WIDEST_PADDED or not (data[offsets[0]:offsets[-1]]).all():
        return None
    places = np.arange(width)
    taken = data[np.minimum(offsets[:-1, None] + places, max(len(data) - 1, 0))]
    return np.where(places < lengths[:, None], taken, 0).astype(np.uint8)


PROBABILITY_SCALE = 1_000_000  # six decimals


@functools.cache
def thousands_text() -> np.ndarray:
    """Three digits of 0..999 as the low bytes of a little-endian uint64 (the others zero bytes):
    rows 0..999 with trailing zeros as zero bytes ("05" for 50), rows 1000..1999 whole ("050")."""
    digits = np.stack([np.arange(1000) // 100, np.arange(1000) // 10 % 10, np.arange(1000) % 10], axis=1)
    trailing = np.cumprod(digits[:, ::-1] == 0, axis=1)[:, ::-1].astype(bool)  # zero from here to the end
    whole = digits + ord("0")
    text = np.zeros((2000, 4), np.uint8)
    text[:1000, :3], text[1000:, :3] = np.where(trailing, 0, whole), whole
    return text.view("<u4")[:, 0].astype("<u8")


def probability_text(p: np.ndarray) -> np.ndarray | None:
    """[rows, 8] bytes of np.round(p, 6) as pyarrow casts it to text, zero bytes where nothing
    is: the double nearest k / 10^6 (k = rint(p * 10^6), as np.round computes it) reads as that
    decimal, trailing zeros dropped: "0", "0.25", "0.000001", "1". Built as one uint64 per row
    ("0.", then two groups of three digits looked up whole) because gathering rows of bytes
    costs ten times more; eight bytes, the longest text, so the line has few zero bytes to drop.
    None for a value that is negative, -0.0, past 1 or blank."""
    scaled = np.rint(p * float(PROBABILITY_SCALE))
    if np.signbit(p).any() or not np.all(scaled <= PROBABILITY_SCALE):  # NaN fails too
        return None
    k = scaled.astype(np.int32)
    high, low = np.divmod(k, 1000)
    high %= 1000  # 1.0: "1", its decimals those of 0
    text = thousands_text()
    # "0.05", "0.050001": the first group stripped of its zeros only if it ends the text
    out = text[high + 1000 * (low != 0)] << np.uint64(16)
    out |= text[low] << np.uint64(40)
    out |= np.uint64(ord("0") | ord(".") << 8)
    whole = k % PROBABILITY_SCALE == 0
    out[whole] = ord("0") + (k[whole] == PROBABILITY_SCALE)
    return out.astype("<u8", copy=False).view(np.uint8).reshape(len(k), 8)  # bytes in text order anywhere
