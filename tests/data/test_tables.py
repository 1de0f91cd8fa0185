"""Users' tables as files (common/data/tables.py): CSV dialects, Parquet and Arrow's types, blanks.
Every table is made here; nothing is downloaded."""
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest

from builders import ROOT, make_data, write
from common.data import tables
from common.data.dataset import load_dataset
from common.data.tables import read_table


def test_a_given_delimiter_the_header_lacks_is_said_as_such(tmp_path, small_model):
    """`--sep z` on a comma file made one column named by the whole header, and a message about
    that column: make_data.py and infer.py now name the slip and the delimiter the header has."""
    import infer as infer_script
    import make_data as make_data_script
    from builders import user_error

    path = write(tmp_path / "t.csv", {f"x{i}": np.arange(30) * 0.5 for i in range(10)} | {"y": [0, 1] * 15})
    made = user_error(make_data_script.main, "--csv", path, "--target", "y", "--sep", "z", "--out-dir", tmp_path)
    predicted = user_error(infer_script.main, "--ckpt-dir", small_model, "--input", path, "--sep", ";")
    assert "--sep 'z' is not in its header, which ',' splits into 11 columns: give --sep ','" in made, made
    assert "--sep ';' is not in its header" in predicted and not (tmp_path / "t").exists(), predicted
    make_data("--csv", path, "--target", "y", "--sep", ",", "--out-dir", tmp_path)  # the delimiter it names


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


def streamed(path, monkeypatch, piece_bytes, text=()):
    """The file as table_batches streams it, in pieces of about `piece_bytes`, as one table."""
    monkeypatch.setattr(tables, "BATCH_BYTES", piece_bytes)
    batches = list(tables.table_batches(path, None, list(text), {}, None))
    return batches, pa.concat_tables(batches)


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
def test_a_csv_streamed_in_pieces_reads_as_the_whole_file(tmp_path, monkeypatch, ending):
    """BOM, quoted delimiters, blanks, lines longer than a piece, a last line without its line end:
    pieces cut at line ends, each under the header, give the rows pyarrow reads from the whole
    file, in order (and each piece's table is its own: all are held before they are compared)."""
    lines = [b'"id","note",x,when'] + [
        f'{i},"a, {"z" * (5000 if i % 500 == 7 else i % 9)}",{"" if i % 11 == 0 else i * 0.25},2024-01-{1 + i % 28:02d}'
        .encode() for i in range(3000)]
    path = tmp_path / "t.csv"
    path.write_bytes(b"\xef\xbb\xbf" + ending.join(lines))  # no line end after the last row
    whole = pa_csv.read_csv(path)
    batches, table = streamed(path, monkeypatch, 2048)
    assert len(batches) > 20
    assert table.equals(whole.cast(table.schema)) and table.column_names == ["id", "note", "x", "when"]
    assert table.column("x").null_count == len(range(0, 3000, 11))


def test_csv_pieces_keep_the_types_of_the_first(tmp_path, monkeypatch):
    """As pyarrow's streaming reader: whole numbers first, a decimal later is an error, not a column
    that changes type from one piece to the next."""
    (tmp_path / "t.csv").write_text("x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(2000)) + "2.5,1\n")
    with pytest.raises(pa.ArrowInvalid, match="2.5"):
        streamed(tmp_path / "t.csv", monkeypatch, 1024)


@pytest.mark.parametrize("content,rows", [("x,y\n", 0), ("x,y\r1,0\r2,1\r3,0\r", 3), ('"x\ny",z\n1,2\n', 1)])
def test_csv_that_cannot_be_cut_at_newlines_is_streamed_by_pyarrow(tmp_path, monkeypatch, content, rows):
    """A header alone, \\r line ends, a header with a line break inside quotes: read right all the same."""
    (tmp_path / "t.csv").write_text(content, newline="")
    _, table = streamed(tmp_path / "t.csv", monkeypatch, 64)
    assert table.num_rows == rows and table.num_columns == 2


@pytest.mark.parametrize("piece_bytes", [300, 1000, 5000])
@pytest.mark.parametrize("kind", ["lines", "stray quotes"])
def test_values_over_several_lines_and_stray_quotes_survive_the_cuts(tmp_path, monkeypatch, piece_bytes, kind):
    """A newline inside quotes is part of a value wherever a piece ends (pyarrow's own cut would
    split that record in two), a value longer than several pieces is read whole; in a file whose
    values keep to one line, a quote inside an unquoted value (5" pipe) is text, as pyarrow reads it."""
    def note(i):
        if kind == "stray quotes":
            return f'{i % 9} inch"es' if i % 13 == 5 else f'"a, ""{i}"""'
        if i == 500:
            return '"' + "long\n" * 500 + '"'  # pieces long, within MOST_CARRIED of the smallest
        return '"line one\nline two, ""quoted""\nthree"' if i % 7 == 3 else "plain"

    path = tmp_path / "t.csv"
    path.write_bytes(("id,note,y\n" + "".join(f"{i},{note(i)},{i % 2}\n" for i in range(3000))).encode())
    whole = pa_csv.read_csv(path, read_options=pa_csv.ReadOptions(block_size=1 << 26))  # one block: no cut at all
    batches, table = streamed(path, monkeypatch, piece_bytes)
    assert len(batches) > 5 and table.num_rows == 3000
    assert table.equals(whole.cast(table.schema))
    if kind == "lines":
        assert table.column("note")[500].as_py().count("\n") == 500


def test_without_pandas_fails_its_import_and_still_answers_a_search():
    """make_data.py's and infer.py's processes: pyarrow finds no pandas to import, while a search
    for it (torch's compiler stack makes one as it loads, under a two-process launch) gets a spec
    without a file, not an error."""
    code = ("import importlib.util, sys\nfrom common.data.tables import without_pandas\nwithout_pandas()\n"
            "import pyarrow as pa\npa.array([1])\nspec = importlib.util.find_spec('pandas')\n"
            "try:\n    import pandas\nexcept ModuleNotFoundError:\n    print('absent')\n"
            "print('pandas' in sys.modules, spec is not None and spec.origin is None)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["absent", "False", "True"]


@pytest.mark.parametrize("sep", [",", ";"])
def test_a_row_of_too_many_cells_is_named_by_its_line(small_model, tmp_path, sep):
    """pyarrow's message shows the row but not where it is; make_data.py and infer.py say the line."""
    import infer as infer_script
    import make_data as make_data_script
    from builders import user_error

    lines = [sep.join(f"x{i}" for i in range(10))] + [sep.join(["1"] * 10)] * 300
    lines[257] += sep + "9"
    (tmp_path / "rows.csv").write_text("\n".join(lines) + "\n")
    told = ["--sep", sep] if sep != "," else []
    made = user_error(make_data_script.main, "--csv", tmp_path / "rows.csv", "--target", "x0", *told,
                      "--out-dir", tmp_path)
    predicted = user_error(infer_script.main, "--ckpt-dir", small_model, "--input", tmp_path / "rows.csv", *told,
                           "--output", tmp_path / "p.csv")
    for message in (made, predicted):
        assert "(line 258: CSV parse error: Expected 10 columns, got 11" in message, message


def test_bytes_that_are_not_utf8_are_named_by_their_column_and_line(crossfit_run, tmp_path):
    """pyarrow numbers the column from 0 and says no line: infer.py names both."""
    import infer as infer_script
    from builders import user_error

    lines = (crossfit_run / "people.csv").read_bytes().split(b"\n")
    line = next(n for n in range(200, 300) if lines[n].split(b",")[1])  # a city that is not blank
    cells = lines[line].split(b",")
    lines[line] = b",".join([cells[0], cells[1][:-2] + b'\xff"', *cells[2:]])  # "rom\xff"
    (tmp_path / "rows.csv").write_bytes(b"\n".join(lines))
    message = user_error(infer_script.main, "--ckpt-dir", crossfit_run / "run", "--input", tmp_path / "rows.csv",
                         "--output", tmp_path / "p.csv")
    assert f"(line {line + 1}: column 'city' holds bytes that are not UTF-8 text)" in message, message


@pytest.mark.parametrize("where", ["head", "past the head"])
def test_a_latin1_column_stops_make_data_in_one_line_unless_it_is_dropped(tmp_path, where, monkeypatch):
    """Within the head pyarrow reads such a column as bytes (once dropped without a word); past
    it the read stops. Both name the column and line; --drop leaves the column out."""
    import make_data as make_data_script
    from builders import make_data, user_error
    from common.data import tables

    monkeypatch.setattr(tables, "HEAD_BYTES", 8192)  # the file's first ~550 rows

    rows = [f"{i / 7:.4f},{'Paris' if i % 2 else 'Roma'},{i % 2}" for i in range(3000)]
    bad = 2 if where == "head" else 2900
    rows[bad - 2] = rows[bad - 2].replace("Paris", "Zürich").replace("Roma", "Köln")
    (tmp_path / "t.csv").write_bytes("\n".join(["x,city,y", *rows]).encode("latin-1"))
    message = user_error(make_data_script.main, "--csv", tmp_path / "t.csv", "--target", "y", "--out-dir", tmp_path)
    assert f"line {bad}: column 'city' holds bytes that are not UTF-8 text" in message, message
    assert not (tmp_path / "t").exists()
    if where == "head":
        make_data("--csv", tmp_path / "t.csv", "--target", "y", "--out-dir", tmp_path, "--drop", "city")
        assert (tmp_path / "t" / "dataset.json").is_file()


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le"])  # with its byte-order mark, and without
def test_a_utf16_file_is_named_as_such(small_model, tmp_path, encoding):
    """Windows' "Unicode" text: make_data.py stopped at a NUL byte it printed, infer.py said the
    file lacked the columns it has."""
    import infer as infer_script
    import make_data as make_data_script
    from builders import user_error

    header = ",".join(f"x{i}" for i in range(10))
    rows = "\n".join(",".join(str(i + k) for k in range(10)) + f",{i % 2}" for i in range(50))
    (tmp_path / "t.csv").write_text(f"{header},y\n{rows}\n", encoding=encoding)
    said = [user_error(make_data_script.main, "--csv", tmp_path / "t.csv", "--target", "y", "--out-dir", tmp_path),
            user_error(infer_script.main, "--ckpt-dir", small_model, "--input", tmp_path / "t.csv")]
    assert said == [f"{flag} {tmp_path / 't.csv'} is UTF-16 text (or holds NUL bytes): save it as UTF-8 CSV"
                    for flag in ("--csv", "--input")]
    assert not (tmp_path / "t").exists() and not (tmp_path / "t.pred.csv").exists()


def test_a_ragged_row_of_bytes_that_are_not_utf8_is_one_line_without_a_traceback(small_model, tmp_path, capsys):
    """pyarrow cannot hand such a row to the line-finding pass and reports it through the
    unraisable hook: Python's csv reader numbers the line, and nothing else reaches stderr."""
    import infer as infer_script
    from builders import user_error

    lines = [",".join(f"x{i}" for i in range(10)).encode()] + [b",".join([b"1"] * 10)] * 300
    lines[257] += b",\xff"
    (tmp_path / "rows.csv").write_bytes(b"\n".join(lines) + b"\n")
    message = user_error(infer_script.main, "--ckpt-dir", small_model, "--input", tmp_path / "rows.csv",
                         "--output", tmp_path / "p.csv")
    assert "(line 258: CSV parse error: Expected 10 columns, got 11" in message, message
    assert capsys.readouterr().err == ""


def test_the_line_named_is_the_first_bad_cell_of_the_column_named(tmp_path):
    """A bad byte in another column (one the read never reached), and a quoted cell over two lines."""
    from common.data.tables import undecodable_line

    path = tmp_path / "t.csv"
    path.write_bytes('a,b\n1,\xff\n"x\ny",ok\n\xe9,2\n'.encode("latin-1"))
    assert undecodable_line(path, ",", 0) == 5 and undecodable_line(path, ",", 1) == 2
    path.write_bytes("a,b\n1,é\n".encode())
    assert undecodable_line(path, ",", 1) is None


def test_python_numbers_a_ragged_line_after_quoted_lines_and_empty_ones(tmp_path):
    from common.data.tables import ragged_line_read_by_python

    path = tmp_path / "t.csv"
    path.write_bytes(b'a,b\n"x\ny",ok\n\n1,\xff,3\n')
    assert ragged_line_read_by_python(path, ",") == 5
    path.write_bytes(b'a,b\n"x\ny",ok\n\n1,\xff\n')
    assert ragged_line_read_by_python(path, ",") is None


@pytest.mark.parametrize("ending", [".gz", ".bz2", ".zst", ".lz4", ".GZ", ".Bz2"])
def test_every_compression_in_any_case_reads_as_the_file_it_holds(crossfit_run, tmp_path, ending):
    import pyarrow as pa

    plain = crossfit_run / "people.csv"
    packed = tmp_path / f"people.csv{ending}"
    with pa.output_stream(str(packed), compression=tables.COMPRESSIONS[ending.lower()]) as out:
        out.write(plain.read_bytes())
    assert tables.table_stem(packed) == "people" and tables.csv_header(packed, None) == tables.csv_header(plain, None)
    assert read_table(packed).equals(read_table(plain), check_metadata=True)
    assert read_table(packed, head=True).equals(read_table(plain, head=True), check_metadata=True)
    streamed = pa.concat_tables(tables.table_batches(packed, None, [], {}, None))
    assert streamed.equals(pa.concat_tables(tables.table_batches(plain, None, [], {}, None)))


@pytest.mark.parametrize("sep,compress", [(",", "gzip"), (";", "bz2")])
def test_a_compressed_csv_reads_as_the_file_it_holds(crossfit_run, tmp_path, sep, compress):
    """Its delimiter and header are read from the text it holds, not its compressed bytes; its data
    set and predictions are the plain file's, named without the compression's ending."""
    import bz2
    import gzip

    plain = (crossfit_run / "people.csv").read_text()
    if sep == ";":
        plain = plain.replace(",", ";")
    ending, opener = {"gzip": (".gz", gzip.open), "bz2": (".bz2", bz2.open)}[compress]
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "people.csv").write_text(plain)
    packed = tmp_path / f"people.csv{ending}"
    with opener(packed, "wt") as fh:
        fh.write(plain)
    assert tables.table_stem(packed) == "people" and tables.detect_delimiter(packed) == sep
    assert read_table(packed).equals(read_table(tmp_path / "plain" / "people.csv"), check_metadata=True)
    for path, out in ((tmp_path / "plain" / "people.csv", tmp_path / "a"), (packed, tmp_path / "b")):
        make_data("--csv", path, "--target", "label", "--out-dir", out)
    assert sorted(p.name for p in (tmp_path / "b").iterdir() if not p.name.startswith(".")) == ["people"]
    for name in ("X_train.npy", "y_train.npy"):
        assert (tmp_path / "a" / "people" / name).read_bytes() == (tmp_path / "b" / "people" / name).read_bytes()
    from builders import infer

    infer("--ckpt-dir", crossfit_run / "run", "--input", tmp_path / "plain" / "people.csv")
    infer("--ckpt-dir", crossfit_run / "run", "--input", packed)  # written beside it as people.pred.csv
    assert (tmp_path / "people.pred.csv").read_bytes() == (tmp_path / "plain" / "people.pred.csv").read_bytes()


@pytest.mark.parametrize("content,said", [
    ("a,b,y", "has a header but no data rows: add rows"),  # no line end after the header
    ("a,b,y\r\n", "has a header but no data rows: add rows"),
    ("a,b,y\n1,2,x\n", "has one data row: a model learns from many; add rows"),
])
def test_a_table_too_short_to_learn_from_says_so(tmp_path, content, said):
    import make_data as make_data_script
    from builders import user_error

    (tmp_path / "t.csv").write_text(content)
    message = user_error(make_data_script.main, "--csv", tmp_path / "t.csv", "--target", "y", "--out-dir", tmp_path)
    assert message == f"{tmp_path / 't.csv'} {said}", message


def test_a_decimal_comma_files_amounts_grouped_by_points_read_as_the_plain_numbers(tmp_path):
    """`1.186,70` and `2.000` where a semicolon file's points group thousands: decided once per
    column on the training file, recorded on its step, and read so at prediction; the arrays are
    those of the same numbers written plainly, and a `2.5` there is an error, never 2.5."""
    import infer as infer_script
    from builders import infer, train, user_error

    rng = np.random.default_rng(0)
    amounts = np.round(rng.lognormal(7, 1.2, 400), 2)
    amounts[::7] = np.round(amounts[::7])
    label = np.where(amounts > np.median(amounts), "high", "low")
    kind = rng.choice(["a", "b"], 400)

    def grouped(v):  # 1186.7 -> 1.186,70; 2000.0 -> 2.000 (the whole ones without decimals)
        text = f"{v:,.0f}" if v == round(v) else f"{v:,.2f}"
        return text.replace(",", "_").replace(".", ",").replace("_", ".")

    (tmp_path / "eu").mkdir()
    (tmp_path / "eu" / "t.csv").write_text("amount;kind;label\n" + "".join(
        f"{grouped(a)};{k};{y}\n" for a, k, y in zip(amounts, kind, label, strict=True)))
    write(tmp_path / "t.csv", {"amount": amounts, "kind": kind, "label": label})
    for folder in (tmp_path / "eu", tmp_path):
        make_data("--csv", folder / "t.csv", "--target", "label", "--out-dir", folder / "data")
    eu, plain = load_dataset(tmp_path / "eu" / "data" / "t"), load_dataset(tmp_path / "data" / "t")
    assert [s.thousands for s in eu.preprocessor.numeric] == ["."]
    assert [s.thousands for s in plain.preprocessor.numeric] == [""]
    assert eu.X_train.tobytes() == plain.X_train.tobytes()
    train("--data", tmp_path / "eu" / "data" / "t", "--ckpt-dir", tmp_path / "run", "--epochs", "2")
    infer("--ckpt-dir", tmp_path / "run", "--input", tmp_path / "eu" / "t.csv", "--output", tmp_path / "eu.npz")
    infer("--ckpt-dir", tmp_path / "run", "--input", tmp_path / "t.csv", "--output", tmp_path / "plain.npz")
    with np.load(tmp_path / "eu.npz") as a, np.load(tmp_path / "plain.npz") as b:
        assert a["proba"].tobytes() == b["proba"].tobytes()
    (tmp_path / "new.csv").write_text("amount;kind\n1.186,70;a\n2,5;b\n2.5;a\n")
    message = user_error(infer_script.main, "--ckpt-dir", tmp_path / "run", "--input", tmp_path / "new.csv",
                         "--output", tmp_path / "new.npz")
    assert "'2.5'" in message and "row 3" in message, message


def test_a_regression_target_grouped_by_points_reads_as_its_plain_numbers_in_training_and_in_figures(tmp_path):
    """A price of `1.186,70` in a semicolon file is 1186.7 as a target too: recorded on the
    target's step, and read so where infer.py scores rows that carry it."""
    import json

    from builders import infer, train

    rng = np.random.default_rng(1)
    x = rng.normal(size=200)
    price = np.round(2000 + 600 * x + rng.normal(size=200), 2)
    grouped = [f"{v:,.2f}".replace(",", "_").replace(".", ",").replace("_", ".") for v in price]
    (tmp_path / "eu").mkdir()
    (tmp_path / "eu" / "t.csv").write_text("x;price\n" + "".join(
        f"{str(a).replace('.', ',')};{g}\n" for a, g in zip(x, grouped, strict=True)))
    write(tmp_path / "t.csv", {"x": x, "price": price})
    for folder in (tmp_path / "eu", tmp_path):
        make_data("--csv", folder / "t.csv", "--target", "price", "--out-dir", folder / "data")
    eu, plain = load_dataset(tmp_path / "eu" / "data" / "t"), load_dataset(tmp_path / "data" / "t")
    assert eu.y_train.tobytes() == plain.y_train.tobytes()
    assert eu.description.target.thousands == "." and plain.description.target.thousands == ""
    train("--data", tmp_path / "eu" / "data" / "t", "--ckpt-dir", tmp_path / "run", "--epochs", "2")
    for name, source in (("eu", tmp_path / "eu" / "t.csv"), ("plain", tmp_path / "t.csv")):
        infer("--ckpt-dir", tmp_path / "run", "--input", source, "--output", tmp_path / f"{name}.npz",
              "--metrics-json", tmp_path / f"{name}.json")
    eu_figures, plain_figures = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("eu", "plain"))
    assert eu_figures["rows_scored"] == 200 and eu_figures == plain_figures


def test_a_decimal_comma_column_without_points_in_training_reads_a_grouped_number_as_such(tmp_path):
    """A semicolon file's column of `250,5` and `3` (no point in training, typed as numbers or as
    text) reads `12.000` at prediction as 12000 and `1.500,00` as 1500, never 12 and 1.5."""
    import infer as infer_script
    from builders import infer, train, user_error

    rng = np.random.default_rng(3)
    x, w = rng.uniform(1, 999, 400), rng.integers(1, 9, 400)
    (tmp_path / "t.csv").write_text("x;w;cur;y\n" + "".join(
        f"{a:.2f};{b};{a:.1f} €;{2 * a:.2f}\n".replace(".", ",") for a, b in zip(x, w, strict=True)))
    make_data("--csv", tmp_path / "t.csv", "--target", "y", "--out-dir", tmp_path / "data")
    steps = load_dataset(tmp_path / "data" / "t").preprocessor.numeric
    assert {s.name: s.thousands for s in steps} == {"x": ".", "w": ".", "cur": "."}
    train("--data", tmp_path / "data" / "t", "--ckpt-dir", tmp_path / "run", "--epochs", "2")
    (tmp_path / "grouped.csv").write_text("x;w;cur\n12.000;1.000;5,0 €\n1.500,00;2;1.500,5 €\n")
    (tmp_path / "plain.csv").write_text("x;w;cur\n12000;1000;5,0 €\n1500;2;1500,5 €\n")
    for name in ("grouped", "plain"):
        infer("--ckpt-dir", tmp_path / "run", "--input", tmp_path / f"{name}.csv", "--output", tmp_path / f"{name}.npz")
    with np.load(tmp_path / "grouped.npz") as a, np.load(tmp_path / "plain.npz") as b:
        assert a["prediction"].tobytes() == b["prediction"].tobytes()
    (tmp_path / "point.csv").write_text("x;w;cur\n2.5;1;5,0 €\n")
    message = user_error(infer_script.main, "--ckpt-dir", tmp_path / "run", "--input", tmp_path / "point.csv",
                         "--output", tmp_path / "point.npz")
    assert "'2.5'" in message, message


def test_a_grouped_number_past_a_semicolon_files_head_is_named_as_such(tmp_path, monkeypatch):
    """A column the head read as plain numbers cannot take `4.000` later in the file: one line
    that names the cell as a grouped number, not a value for --categorical."""
    import make_data as make_data_script
    from builders import user_error
    from common.data import tables

    monkeypatch.setattr(tables, "HEAD_BYTES", 8192)  # the file's first ~600 rows
    rows = [f"{i % 997},5;{i % 10};{i % 2}" for i in range(3000)] + ["4.000;1;0"]
    (tmp_path / "t.csv").write_text("\n".join(["x;w;y", *rows]) + "\n")
    message = user_error(make_data_script.main, "--csv", tmp_path / "t.csv", "--target", "y", "--out-dir", tmp_path)
    assert "column 'x' has '4.000'" in message and "grouping thousands" in message, message
    assert "--categorical" not in message and not (tmp_path / "t").exists()


@pytest.mark.parametrize("grouped", [True, False])
def test_a_decimal_comma_columns_numbers_read_at_c_speed_are_the_loops(grouped):
    """The vectorised reading of a semicolon file's text column gives the bits of the cell-by-cell
    loop, or leaves the column to it (which reads or names what the other cannot)."""
    import pyarrow as pa

    from common.data.columns import _comma_numbers, _text_to_numbers

    cells = ["1.186,70", "12.000", "250,5", "-3", None, "0,125", "1.000.000", "-1.234,5", "7"]
    mixed = [*cells, "2.5"]
    for column in (cells, mixed, ["2,5", "3", None], ["1,5", "x"]):
        fast = _comma_numbers(pa.array(column, pa.string()), grouped)
        if fast is None:
            continue
        slow = _text_to_numbers(column, "c", "t.csv", ",", grouped=grouped)
        assert np.array_equal(fast, slow, equal_nan=True), column
    # grouped, every cell is read at C speed; else `1.186,70` is no number and the loop names it
    assert (_comma_numbers(pa.array(cells, pa.string()), grouped) is None) is not grouped


@pytest.mark.parametrize("cells,grouped,decimals", [
    (["10,90", "1.186,70", None], True, False), (["1.000.000", "12"], True, False),
    (["1.467,45 €", "2.000 €"], True, False),
    (["14.419", "800"], True, False),  # whole amounts: a comma being the decimal mark, the point groups
    (["2.5", "1.186,70"], False, True),  # a point as a decimal mark: the column's points are not grouping
    (["0.125", "1.250"], False, True),   # no group begins with 0
    (["10,5", "3"], False, False),
])
def test_points_group_thousands_unless_a_cell_says_they_are_decimal_marks(cells, grouped, decimals):
    from common.data.columns import points_group_thousands, writes_point_decimals

    assert points_group_thousands(cells) is grouped and writes_point_decimals(cells) is decimals


def test_a_file_whose_points_are_decimal_marks_in_one_column_groups_none(tmp_path):
    """`14.419` is 14419 in a semicolon file of comma decimals, 14.419 where the file writes `2.5`."""
    rows = "".join(f"{['14.419', '800', '2.000'][i % 3]};{['2.5', '3'][i % 2]};{'ab'[i % 2]}\n" for i in range(60))
    (tmp_path / "a.csv").write_text("km;w;y\n" + rows.replace(";2.5;", ";2,5;"))
    (tmp_path / "b.csv").write_text("km;w;y\n" + rows)
    for name in ("a", "b"):
        make_data("--csv", tmp_path / f"{name}.csv", "--target", "y", "--out-dir", tmp_path / "data")
    grouped = {name: {s.name: s.thousands for s in load_dataset(tmp_path / "data" / name).preprocessor.numeric}
               for name in ("a", "b")}
    assert grouped == {"a": {"km": ".", "w": "."}, "b": {"km": "", "w": ""}}  # a's `w` has no point: as a's others
    assert load_dataset(tmp_path / "data" / "a").preprocessor.numeric[0].median == 2000  # of 800, 2000, 14419
