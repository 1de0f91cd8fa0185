"""Scratch storage for streamed ingestion: columns appended batch by batch to raw files in the
data set's staging folder, read back a chunk at a time, and the .npy files each split is
written into. Memory holds a chunk, never a column."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from common.data.columns import text_values
from common.data.splits import TRAIN, chunks
from common.files import write_error

MEDIAN_SAMPLE = 1_000_000     # training rows sampled for each median (all of them below this)


MEDIAN_STREAM = 2             # the median sample's random stream, apart from the split's (common/data/splits.py)



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


def write_values(fh: Any, values: np.ndarray) -> None:
    """An array's bytes through the Python file, which raises where the disk is full. numpy's
    `tofile` writes a small array through a buffer of its own and drops the error of its flush:
    on a full disk the file silently stays short."""
    fh.write(np.ascontiguousarray(values).data)


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
            write_values(self.files[name], values)
        except OSError as err:  # a full disk: said as such, not taken for a fault of the input file
            raise write_error(self.folder.parent, err) from None

    def close(self) -> None:
        failed = None
        for fh in self.files.values():
            try:
                fh.close()  # the last bytes written now: the full disk may show here
            except OSError as err:
                failed = failed or err  # the others are closed all the same
        if failed is not None:
            raise write_error(self.folder.parent, failed) from None

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
            write_values(fh, np.asarray(values, dtype=dtype))

    def close(self) -> None:
        for fh, _ in self.files.values():
            fh.close()


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

