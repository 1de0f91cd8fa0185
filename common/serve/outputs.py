"""Prediction's outputs: CSV, Parquet or .npz files written batch by batch, the carried input
columns in front of the predictions and class probabilities."""
from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np


def carried_name(name: str, class_labels: list | None) -> str:
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
        named = {carried_name(name, self.class_labels): values for name, values in extra.items()}
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

