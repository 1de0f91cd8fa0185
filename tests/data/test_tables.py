"""Users' tables as files (common/data/tables.py): CSV dialects, Parquet and Arrow's types, blanks.
Every table is made here; nothing is downloaded."""
import numpy as np
import pyarrow as pa
import pytest

from builders import make_data, write
from common.data.dataset import load_dataset
from common.data.tables import read_table


@pytest.mark.parametrize("sep,given", [(";", False), ("\t", False), ("|", True), (",", False)])
def test_delimiters_are_detected_or_given(tmp_path, sep, given):
    path = write(tmp_path / "t.csv", {"a": np.arange(40) * 1.5, "b": ["x,y", "z"] * 20, "y": [0, 1] * 20}, sep=sep)
    make_data("--csv", path, "--target", "y", "--out-dir", tmp_path, *(["--sep", sep] if given else []))
    assert load_dataset(tmp_path / "t").description.feature_names == ["a", "b"]


def test_bom_crlf_quotes_and_thousands(tmp_path):
    path = tmp_path / "excel.csv"
    rows = "".join(f'"{i}","{1000 + i * 37:,}",{"yes" if i % 3 else "no"},{i % 2}\r\n' for i in range(60))
    path.write_bytes(b"\xef\xbb\xbf" + ('"",amount,ok,y\r\n' + rows).encode())
    make_data("--csv", path, "--target", "y", "--out-dir", tmp_path)
    data = load_dataset(tmp_path / "excel")
    assert data.description.feature_names == ["amount", "ok"] and data.description.source["ids"] == [""]
    (amount,) = data.preprocessor.numeric
    assert 1000 < amount.median < 1000 + 60 * 37


def test_semicolons_come_with_decimal_commas(tmp_path):
    rows = "".join(f"{i % 7},5;{1000 + i},25;{'ab'[i % 2]}\n" for i in range(60))
    (tmp_path / "eu.csv").write_text("temp;weight;y\n" + rows)
    make_data("--csv", tmp_path / "eu.csv", "--target", "y", "--out-dir", tmp_path)
    temp, weight = load_dataset(tmp_path / "eu").preprocessor.numeric
    assert 0.5 <= temp.median <= 6.5 and 1000 < weight.median < 1060  # 3,5 is 3.5, not 35 or a text level


@pytest.mark.parametrize("column,role", [
    (pa.array(["a", "b", "a", None] * 10).dictionary_encode(), "categorical"),  # a pandas category in Parquet
    (pa.array([1.5, 2.25, None, 4.0] * 10, pa.timestamp("ms")), "date"),
    (pa.array([10, 20, None, 40] * 10, pa.time32("s")), "numeric"),
    (pa.array([10, 20, None, 40] * 10, pa.duration("us")), "numeric"),
    (pa.array([2**62 + i for i in range(39)] + [5]), "numeric"),
    (pa.array([float("nan"), 1.0] * 20), "numeric"),  # one value and blanks is not constant
])
def test_columns_of_every_arrow_type_get_a_role_and_numbers(tmp_path, column, role):
    write(tmp_path / "t.parquet", {"c": column, "x": np.arange(40) % 3 * 1.0, "y": [0, 1] * 20})
    make_data("--csv", tmp_path / "t.parquet", "--target", "y", "--out-dir", tmp_path)
    data = load_dataset(tmp_path / "t")
    assert {r.name: r.role for r in data.description.roles}["c"] == role
    assert np.isfinite(data.X_train).all()


def test_parquet_and_csv_read_blanks_alike(tmp_path):
    columns = {"color": ["red", "", "NA", None, "blue"] * 8, "x": [1.0, 2.0, 3.0, 4.0, 5.5] * 8}
    write(tmp_path / "t.parquet", columns)
    write(tmp_path / "t.csv", columns)
    parquet, csv_table = read_table(tmp_path / "t.parquet"), read_table(tmp_path / "t.csv")
    assert parquet.column("color").null_count == csv_table.column("color").null_count == 24
