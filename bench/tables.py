"""Benchmark section 6, reading (run through bench/bench.py): make_data.py on a CSV and a Parquet
file of N rows x 10 numeric columns plus a categorical one, rows/s and peak memory, each in a
fresh process. Section 7 (the default path's quality on users' tables) is bench/quality.py.
"""
from __future__ import annotations

import contextlib
import io
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np


def write_numeric_table(path: Path, rows: int, seed: int = 0) -> None:
    """rows x (10 numeric + 1 categorical + a class label), as CSV or Parquet by suffix."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    columns = {f"x{i}": rng.standard_normal(rows).astype(np.float32) for i in range(10)}
    columns["shop"] = pa.array(np.asarray(["north", "south", "east", "west"])[rng.integers(0, 4, rows)])
    columns["label"] = (columns["x0"] + columns["x1"] > 0).astype(np.int64)
    table = pa.table(columns)
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    else:
        pa_csv.write_csv(table, path)


@contextlib.contextmanager
def quiet():
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def reading(tmp: Path, sizes: list[int], in_worker) -> list[dict[str, Any]]:
    """make_data.py on generated CSV and Parquet files, each in a fresh process."""
    rows = []
    for n in sizes:
        for suffix, scaling in ((".csv", "quantile"), (".csv", "standard"), (".parquet", "quantile")):
            path = tmp / f"read_{n}{suffix}"
            if not path.exists():
                write_numeric_table(path, n)
            result = in_worker("ingest", f"{path},{tmp / ('ingest_' + str(n))},{scaling}")
            rows.append({"rows": n, "format": suffix[1:] + ("" if scaling == "quantile" else ", standard scaling"),
                         "mb": path.stat().st_size / 2**20, **result, "rows_per_s": n / result["seconds"]})
    return rows


def ingest_worker(arg: str, peak_rss_mb) -> dict[str, float]:
    """In a fresh process: make_data.py end to end (its peak memory), then a whole read of the
    table alone (its time: the floor for any reader)."""
    import make_data
    from common.allocator import keep_chunk_memory
    from common.data.tables import read_table, without_pandas

    keep_chunk_memory()  # as make_data.py's own process does (run_cli)
    without_pandas()  # and its main block: pyarrow would import pandas on the first array
    path, out, scaling = arg.split(",")
    base = peak_rss_mb()
    start = time.perf_counter()
    with quiet():
        make_data.main(["--csv", path, "--target", "label", "--out-dir", out, "--scaling", scaling])
    seconds, peak = time.perf_counter() - start, peak_rss_mb()
    start = time.perf_counter()
    read_table(path)
    return {"read_seconds": time.perf_counter() - start, "seconds": seconds, "peak_rss_mb": peak, "base_rss_mb": base}
