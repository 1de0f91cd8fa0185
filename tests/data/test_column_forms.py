"""One reading of a column whatever its physical type: every Arrow type a CSV file, a Parquet
file or a pandas DataFrame can give a feature, and every spelling of a blank, gives the same
data set and the same predictions as the plain CSV file of the same rows, bit for bit.

The forms are listed per logical column (FORMS); the file-level test writes one Parquet file
per position k in those lists (each column in its k-th form, cycling), so every form of every
column is made into a data set and predicted, in a dozen files rather than a hundred."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

import infer as infer_script
import make_data as make_data_script
from builders import infer, make_data, train, train_args, user_error
from common.data.columns import NULL_VALUES, numeric_values, plain_column, text_values
from common.errors import UserError

ROWS = 120
BLANK_EVERY = 7  # rows i % 7 == 3 are blank in every feature column


def blank(i: int) -> bool:
    return i % BLANK_EVERY == 3


def logical_columns() -> dict[str, list]:
    """The rows as Python values, None for a blank."""
    rng = np.random.default_rng(0)
    colours = ["red", "green", "blue", "true", "01"]  # text that a reader might take for a boolean or a number
    size = [None if blank(i) else float(k) * 0.25 for i, k in enumerate(rng.integers(-40, 41, ROWS))]
    count = [None if blank(i) else int(k) for i, k in enumerate(rng.integers(0, 121, ROWS))]
    price = [None if blank(i) else round(float(k) / 100, 2) for i, k in enumerate(rng.integers(100, 99_999, ROWS))]
    colour = [None if blank(i) else colours[int(k)] for i, k in enumerate(rng.integers(0, 5, ROWS))]
    member = [None if blank(i) else bool(k) for i, k in enumerate(rng.integers(0, 2, ROWS))]
    joined = [None if blank(i) else dt.date(2020, 1, 1) + dt.timedelta(days=int(k))
              for i, k in enumerate(rng.integers(0, 1500, ROWS))]
    seen = [None if blank(i) else dt.datetime(2021, 6, 1) + dt.timedelta(seconds=int(k))
            for i, k in enumerate(rng.integers(0, 10**8, ROWS))]
    score = [(s or 0) + (c or 0) / 40 + (col == "red") for s, c, col in zip(size, count, colour, strict=True)]
    label = ["yes" if s > np.median(score) else "no" for s in score]
    return {"customer_id": [f"C{i:04d}" for i in range(ROWS)], "size": size, "count": count, "price": price,
            "colour": colour, "member": member, "joined": joined, "seen": seen, "nothing": [None] * ROWS,
            "label": label}


def text(values, kind=None):
    return pa.array(values, type=kind or pa.string())


def dictionary(index, value=None):
    value = value or pa.string()
    return lambda values: pa.array(values, type=value).dictionary_encode().cast(pa.dictionary(index, value))


def spelled(values, spelling):
    """Text with its blanks written as `spelling`."""
    return pa.array([spelling if v is None else v for v in values], type=pa.string())


def nan_blanks(kind):
    return lambda values: pa.array([np.nan if v is None else v for v in values], type=pa.float64()).cast(kind)


def as_text(values):
    return pa.array([None if v is None else str(v) for v in values], type=pa.string())


TEXT_FORMS = [text, lambda v: text(v, pa.large_string()), lambda v: text(v, pa.string_view()),
              dictionary(pa.int8()), dictionary(pa.int16()), dictionary(pa.int32()), dictionary(pa.int64()),
              dictionary(pa.int32(), pa.large_string()),
              *[lambda v, s=s: spelled(v, s) for s in NULL_VALUES],
              # pandas writes a `category` column as a dictionary, its blanks as whatever the user had
              *[lambda v, s=s: spelled(v, s).dictionary_encode() for s in ("", "NA", "nan")]]

FORMS = {
    "customer_id": [text, lambda v: text(v, pa.large_string()), dictionary(pa.int16())],
    "size": [lambda v: pa.array(v, pa.float64()), lambda v: pa.array(v, pa.float32()),
             lambda v: pa.array(np.array([np.nan if x is None else x for x in v], np.float16)),
             nan_blanks(pa.float64()), nan_blanks(pa.float32()),
             lambda v: pa.array(v, pa.float64()).cast(pa.decimal128(6, 2)), as_text],
    "count": [*(lambda v, t=t: pa.array(v, t) for t in (pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(),
                                                      pa.uint16(), pa.uint32(), pa.uint64(), pa.float32())),
              nan_blanks(pa.float64()), lambda v: pa.array(v, pa.int16()).cast(pa.decimal128(5, 0)),
              lambda v: pa.array(v, pa.int16()).cast(pa.decimal256(40, 0)), as_text],
    "price": [lambda v: pa.array(v, pa.float64()), lambda v: pa.array(v, pa.float64()).cast(pa.decimal128(7, 2)),
              lambda v: pa.array(v, pa.float64()).cast(pa.decimal256(30, 2)), as_text, nan_blanks(pa.float64())],
    "colour": TEXT_FORMS,
    "member": [lambda v: pa.array(v, pa.bool_()),
               lambda v: text([None if x is None else str(x) for x in v]),          # pandas' CSV: True/False
               lambda v: text([None if x is None else str(x).lower() for x in v]),  # pyarrow's: true/false
               lambda v: dictionary(pa.int8())([None if x is None else str(x).upper() for x in v])],
    "joined": [lambda v: pa.array(v, pa.date32()), lambda v: pa.array(v, pa.date64()),
               *(lambda v, u=u: pa.array(v, pa.date32()).cast(pa.timestamp(u)) for u in ("s", "ms", "us", "ns"))],
    "seen": [*(lambda v, u=u: pa.array(v, pa.timestamp("s")).cast(pa.timestamp(u)) for u in ("s", "ms", "us", "ns")),
             lambda v: pa.array(v, pa.timestamp("s")).cast(pa.timestamp("us", tz="UTC"))],
    "nothing": [lambda v: pa.nulls(len(v)), lambda v: pa.array(v, pa.string()), nan_blanks(pa.float64()),
                lambda v: pa.array(v, pa.float32()), dictionary(pa.int32()), lambda v: spelled(v, "NA")],
    "label": [text, dictionary(pa.int8()), lambda v: text(v, pa.string_view())],
}
FILES = max(len(forms) for forms in FORMS.values())


def plain_table() -> pa.Table:
    """The rows in the types a CSV read gives them."""
    values = logical_columns()
    kinds = {"size": pa.float64(), "count": pa.int64(), "price": pa.float64(), "member": pa.bool_(),
             "joined": pa.date32(), "seen": pa.timestamp("s"), "nothing": pa.null()}
    return pa.table({name: pa.array(column, kinds.get(name, pa.string())) for name, column in values.items()})


def table_in_forms(k: int) -> pa.Table:
    values = logical_columns()
    return pa.table({name: forms[k % len(forms)](values[name]) for name, forms in FORMS.items()})


def describe(k: int) -> str:
    return ", ".join(f"{field.name}: {field.type}" for field in table_in_forms(k).schema)


# ---- one column at a time, every form, in-process ----

def reference(name: str):
    column = pa.chunked_array([plain_table().column(name).combine_chunks()])
    return plain_column(column)


@pytest.mark.parametrize("name", ["size", "count", "price", "joined", "seen", "nothing"])
def test_every_form_of_a_numeric_column_reads_as_the_same_numbers(name):
    expected = numeric_values(reference(name), name, "t")
    for form in FORMS[name]:
        column = plain_column(pa.chunked_array([form(logical_columns()[name])]))
        got = numeric_values(column, name, "t")
        assert got.tobytes() == expected.tobytes(), (name, column.type)
        assert column.null_count == reference(name).null_count, (name, column.type)


@pytest.mark.parametrize("name", ["colour", "customer_id", "label", "nothing"])
def test_every_form_of_a_text_column_reads_as_the_same_categories(name):
    def as_lists(categories):
        return [None if i < 0 else categories.values[i] for i in categories.index]

    expected = as_lists(text_values(reference(name)))
    for form in [*FORMS[name], *TEXT_FORMS]:
        column = plain_column(pa.chunked_array([form(logical_columns()[name])]))
        assert as_lists(text_values(column)) == expected, (name, form(logical_columns()[name]).type)


# ---- whole files: data sets and predictions ----

@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    """The plain CSV file, its data set, a model trained on it and its predictions of the same file."""
    folder = tmp_path_factory.mktemp("forms")
    csv = folder / "plain.csv"
    pa_csv.write_csv(plain_table(), csv)
    make_data("--csv", csv, "--target", "label", "--out-dir", folder / "data")
    train(*train_args(folder / "data" / "plain", folder / "model", "--epochs", "3", "--folds", "2"))
    infer("--ckpt-dir", folder / "model", "--input", csv, "--output", folder / "plain.pred.parquet")
    return folder


def data_set(folder: Path) -> dict:
    """Everything a data set holds but where it was read from and what the file stored: each
    role's type and its why ("numbers written as text" is what the file holds, not a reading)."""
    meta = json.loads((folder / "dataset.json").read_text())
    meta.pop("source")
    meta["roles"] = [{k: v for k, v in role.items() if k not in ("kind", "why")} for role in meta["roles"]]
    arrays = {f.name: f.read_bytes() for f in sorted(folder.glob("*.npy"))}
    return {"meta": meta, "arrays": arrays}


@pytest.mark.parametrize("k", range(FILES))
def test_a_file_in_any_physical_form_makes_the_same_data_set_and_predictions(plain_run, tmp_path, k):
    path = tmp_path / f"forms{k}.parquet"
    pq.write_table(table_in_forms(k), path)
    make_data("--csv", path, "--target", "label", "--out-dir", tmp_path / "data")
    made, plain = data_set(tmp_path / "data" / f"forms{k}"), data_set(plain_run / "data" / "plain")
    assert made["arrays"] == plain["arrays"], describe(k)
    for key in plain["meta"]:
        if key != "preprocess":
            assert made["meta"][key] == plain["meta"][key], (key, describe(k))
    # A boolean's levels keep the spelling its file gave them; every other step is the same.
    spelling = {level: level.lower() if isinstance(level, str) else level
                for step in made["meta"]["preprocess"]["categorical"] if step["name"] == "member"
                for level in step["levels"]}
    for step in made["meta"]["preprocess"]["categorical"]:
        if step["name"] == "member":
            step["levels"] = [spelling[level] for level in step["levels"]]
    assert made["meta"]["preprocess"] == plain["meta"]["preprocess"], describe(k)

    infer("--ckpt-dir", plain_run / "model", "--input", path, "--output", tmp_path / "pred.parquet")
    got, expected = pq.read_table(tmp_path / "pred.parquet"), pq.read_table(plain_run / "plain.pred.parquet")
    assert got.column_names == expected.column_names
    for name in ("prediction", "proba_no", "proba_yes", "customer_id"):
        assert got.column(name).equals(expected.column(name)), (name, describe(k))


def test_the_plain_csv_with_every_blank_spelling_predicts_the_same(plain_run, tmp_path):
    table = plain_table()
    spellings = [s for s in NULL_VALUES if s]

    def written_out(column):
        return pa.array([spellings[i % len(spellings)] if v is None else str(v).lower() if isinstance(v, bool)
                         else str(v) for i, v in enumerate(column.to_pylist())])

    written = pa.table({name: table.column(name) if name == "label" else written_out(table.column(name))
                        for name in table.column_names})
    path = tmp_path / "spelled.csv"
    pa_csv.write_csv(written, path)
    infer("--ckpt-dir", plain_run / "model", "--input", path, "--output", tmp_path / "pred.parquet")
    got, expected = pq.read_table(tmp_path / "pred.parquet"), pq.read_table(plain_run / "plain.pred.parquet")
    assert pc.all(pc.equal(got.column("proba_yes"), expected.column("proba_yes"))).as_py()


# ---- types that cannot be a feature ----

def with_column(table: pa.Table, name: str, column: pa.Array) -> pa.Table:
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, column)
    return table.append_column(name, column)


def tags(rows: int = ROWS) -> pa.Array:
    return pa.array([["a", "b"] if i % 2 else [] for i in range(rows)], pa.list_(pa.string()))


def test_a_column_with_no_text_form_is_left_out_of_the_predictions_with_a_note(plain_run, tmp_path, capsys):
    path = tmp_path / "tagged.parquet"
    pq.write_table(with_column(plain_table(), "tags", tags()), path)
    infer("--ckpt-dir", plain_run / "model", "--input", path, "--output", tmp_path / "pred.parquet")
    got, expected = pq.read_table(tmp_path / "pred.parquet"), pq.read_table(plain_run / "plain.pred.parquet")
    assert "tags" not in got.column_names and got.column("proba_yes").equals(expected.column("proba_yes"))
    assert "column 'tags' (list<element: string>) is not a feature" in " ".join(capsys.readouterr().out.split())


def test_a_list_in_a_features_place_is_one_line_naming_column_and_type(plain_run, tmp_path):
    path = tmp_path / "listed.parquet"
    pq.write_table(with_column(plain_table(), "colour", tags()), path)
    message = user_error(infer_script.main, "--ckpt-dir", plain_run / "model", "--input", path,
                         "--output", tmp_path / "pred.csv")
    assert "'colour'" in message and "list" in message and "one value per cell" in message
    assert "as Parquet" not in message and not (tmp_path / "pred.csv").exists()


def test_a_list_column_is_dropped_by_make_data_unless_named_as_a_feature(tmp_path):
    path = tmp_path / "listed.parquet"
    pq.write_table(with_column(plain_table(), "tags", tags()), path)
    make_data("--csv", path, "--target", "label", "--out-dir", tmp_path / "data")
    roles = {r["name"]: r for r in json.loads((tmp_path / "data" / "listed" / "dataset.json").read_text())["roles"]}
    assert roles["tags"]["role"] == "dropped" and "one value per cell" in roles["tags"]["why"]
    message = user_error(make_data_script.main, "--csv", path, "--target", "label", "--categorical", "tags",
                         "--out-dir", tmp_path / "again")
    assert "'tags'" in message and "list" in message and not (tmp_path / "again" / "listed").exists()


def test_money_and_percentages_written_as_text_are_numbers():
    """`$33,704` and `65.7%` made categoricals of ~600 levels in 600 rows, nearly all rare."""
    from common.data.roles import guess_role

    money = pa.chunked_array([["$33,704", "-$5.50", "€ 12", None, "$1,000,000.25"] * 10])
    share = pa.chunked_array([["65.7%", "0.5 %", "100%", "", "-3%"] * 10])
    assert guess_role("income", money, None).role == guess_role("rate", share, None).role == "numeric"
    read = numeric_values(money, "income", "t")[:5]
    assert read[[0, 1, 2, 4]].tolist() == [33704.0, -5.5, 12.0, 1000000.25] and np.isnan(read[3])
    assert numeric_values(share, "rate", "t")[[0, 1, 2, 4]].tolist() == [65.7, 0.5, 100.0, -3.0]
    for text in ("$", "%", "$abc", "$$5", "5%%", "$-5", "$nan", "inf%", "$1_000"):  # no plain number inside
        with pytest.raises(UserError, match="non-numeric value"):
            numeric_values(pa.chunked_array([["1", "2", text]]), "x", "t")
    # a point decimal in a semicolon file's column is said as such, not as "a non-numeric value"
    with pytest.raises(UserError, match=r"has '2.5' in data row 2, a point as its decimal mark, where a semicolon"):
        numeric_values(pa.chunked_array([["1,5", "2.5"]]), "x", "t", ",", grouped=True)  # as trained: no points


@pytest.mark.parametrize("kind", [pa.time32("s"), pa.time32("ms"), pa.time64("us"), pa.time64("ns")])
def test_a_time_of_day_written_as_text_reads_as_its_arrow_time_to_the_bit(kind):
    """What pyarrow writes to CSV for a time (`14:05:09.250000`), and the shorter forms a person
    writes, read as the seconds the Arrow time itself gives."""
    unit = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[kind.unit]
    rng = np.random.default_rng(0)
    seconds = rng.integers(0, 86_400, 500)
    fractions = rng.integers(0, unit, 500) if unit > 1 else np.zeros(500, dtype=np.int64)
    storage = pa.int32() if pa.types.is_time32(kind) else pa.int64()
    times = pa.chunked_array([pa.array(seconds * unit + fractions, storage).cast(kind)])
    written = pc.cast(times, pa.string())  # as pyarrow's CSV writer spells them
    expected = numeric_values(times, "t", "f")
    assert np.array_equal(numeric_values(written, "t", "f", time_of_day=True), expected)
    short = [f"{s // 3600}:{s // 60 % 60:02d}" for s in seconds[:20] - seconds[:20] % 60]
    read = numeric_values(pa.chunked_array([[*short, None, " "]]), "t", "f", time_of_day=True)
    assert read[:20].tolist() == (seconds[:20] - seconds[:20] % 60).tolist() and np.isnan(read[20:]).all()
    for text in ("24:00", "12:60", "7", "12:05 pm", "1:2"):
        with pytest.raises(UserError, match="no time of day"):
            numeric_values(pa.chunked_array([["12:00", text]]), "t", "f", time_of_day=True)


def test_a_time_column_trained_from_csv_predicts_from_text_rows_and_parquet_alike(tmp_path):
    """pyarrow reads `14:05:09` in a CSV as a time; at prediction the column comes as text (a CSV
    streamed as text, a DataFrame of strings, a dict): it read as no number and stopped the file."""
    rng = np.random.default_rng(3)
    seconds = rng.integers(0, 86_400, 400)
    clock = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in seconds]
    label = np.where(np.sin(seconds / 86_400 * 2 * np.pi) + rng.normal(0, 0.3, 400) > 0, "day", "night")
    csv = tmp_path / "shifts.csv"
    pa_csv.write_csv(pa.table({"start time": clock, "x": rng.normal(size=400), "label": label}), csv)
    make_data("--csv", csv, "--target", "label", "--out-dir", tmp_path / "data")
    step = next(s for s in json.loads((tmp_path / "data" / "shifts" / "dataset.json").read_text())
                ["preprocess"]["numeric"] if s["name"] == "start time")
    assert step["time_of_day"] is True
    train(*train_args(tmp_path / "data" / "shifts", tmp_path / "model", "--epochs", "2", "--folds", "2"))
    infer("--ckpt-dir", tmp_path / "model", "--input", csv, "--output", tmp_path / "text.npz")
    typed = pa_csv.read_csv(csv)
    assert typed.schema.field("start time").type == pa.time32("s")
    pq.write_table(typed, tmp_path / "typed.parquet")
    infer("--ckpt-dir", tmp_path / "model", "--input", tmp_path / "typed.parquet", "--output", tmp_path / "typed.npz")
    with np.load(tmp_path / "text.npz") as text, np.load(tmp_path / "typed.npz") as arrow:
        assert np.array_equal(text["proba"], arrow["proba"])
    from common.api import Predictor

    model = Predictor.load(tmp_path / "model")
    row = {"start time": clock[0], "x": float(typed.column("x")[0].as_py())}
    with np.load(tmp_path / "text.npz") as text:
        assert np.array_equal(model.predict_proba(row)[0], text["proba"][0])
