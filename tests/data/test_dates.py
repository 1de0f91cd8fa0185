"""Dates and times (common/data/dates.py and the date step of common/steps.py): every text form
accepted, read as Python reads it; Arrow's date types; the cycles a date feeds the model; the
role; and a model trained on dates of one form predicting dates of another."""
from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

import infer as infer_script
import make_data as make_data_script
from builders import infer, make_data, read_csv_rows, train, train_args, user_error, write
from common.data.dates import date_values, looks_like_dates
from common.steps import date_cycle_inputs

FORMS = {  # how each accepted form writes a moment; Python then reads it back with fromisoformat
    "date": lambda m: m.strftime("%Y-%m-%d"),
    "date with slashes": lambda m: m.strftime("%Y/%m/%d"),
    "minutes": lambda m: m.strftime("%Y-%m-%d %H:%M"),
    "seconds, T": lambda m: m.strftime("%Y-%m-%dT%H:%M:%S"),
    "fraction": lambda m: m.strftime("%Y-%m-%d %H:%M:%S.%f"),
    "Z": lambda m: m.strftime("%Y-%m-%dT%H:%M:%SZ"),
    "+hh:mm": lambda m: m.strftime("%Y-%m-%dT%H:%M:%S") + zone(m, ":"),
    "+hhmm": lambda m: m.strftime("%Y-%m-%d %H:%M:%S") + zone(m, ""),
}


def zone(moment: dt.datetime, sep: str) -> str:
    minutes = int(moment.utcoffset().total_seconds() // 60)
    sign, minutes = ("-" if minutes < 0 else "+"), abs(minutes)
    return f"{sign}{minutes // 60:02d}{sep}{minutes % 60:02d}"


def moments(n: int, seed: int) -> list[dt.datetime]:
    rng = np.random.default_rng(seed)
    zones = [dt.timezone(dt.timedelta(minutes=int(m))) for m in (0, 60, -300, 330, -570, 840)]
    return [dt.datetime(1900, 1, 1, tzinfo=zones[int(rng.integers(len(zones)))])
            + dt.timedelta(seconds=int(rng.integers(0, 200 * 365 * 86400)), microseconds=int(rng.integers(0, 10**6)))
            for _ in range(n)]


def python_reading(text: str) -> dt.datetime:
    """Python's own reading of a form we accept (a time without a zone is UTC)."""
    moment = dt.datetime.fromisoformat(text.replace("/", "-").replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("form", FORMS)
def test_every_accepted_form_reads_as_python_reads_it(form):
    texts = [FORMS[form](m) for m in moments(300, seed=len(form))]
    found = date_values(pa.chunked_array([pa.array(texts)]))
    assert found.unparsed == 0
    for text, instant, wall in zip(texts, found.instant, found.wall, strict=True):
        moment = python_reading(text)
        assert instant == pytest.approx(moment.timestamp(), abs=1e-6), text
        as_written = moment.replace(tzinfo=dt.timezone.utc).timestamp()  # the wall clock, as if it were UTC
        assert wall == pytest.approx(as_written, abs=1e-6), text


@pytest.mark.parametrize("text", ["31/01/2012", "01/31/2012", "2012-1-5", "2011-02-29", "2012-13-01",
                                  "2012-01-01 24:00", "soon", "20120131"])
def test_what_is_not_a_date_is_a_blank_counted(text):
    found = date_values(pa.array([text, "2012-01-31", None]))
    assert np.isnan(found.instant[0]) and found.unparsed == 1 and not np.isnan(found.instant[1])


def test_arrow_dates_and_timestamps_read_as_their_moments():
    day = dt.date(2021, 3, 14)
    noon = dt.datetime(2021, 3, 14, 12, 30)
    for column, instant, wall in [
        (pa.array([day], pa.date32()), 1615680000.0, 1615680000.0),
        (pa.array([day], pa.date64()), 1615680000.0, 1615680000.0),
        (pa.array([noon], pa.timestamp("ns")), 1615725000.0, 1615725000.0),
        # a zone's timestamp is stored in UTC: its wall clock is the zone's (New York: UTC-4 that day)
        (pa.array([noon], pa.timestamp("s", tz="UTC")).cast(pa.timestamp("s", tz="America/New_York")),
         1615725000.0, 1615725000.0 - 4 * 3600),
    ]:
        found = date_values(column)
        assert (found.instant[0], found.wall[0]) == (instant, wall), column.type


def test_a_dates_cycles_put_neighbours_side_by_side():
    def seconds(*ymd):
        return dt.datetime(*ymd, tzinfo=dt.timezone.utc).timestamp()

    parts = ("year_day", "month_day", "week_day", "day_time")
    wall = np.array([seconds(2021, 1, 4), seconds(2021, 1, 4, 18), seconds(2020, 12, 31), seconds(2021, 1, 1),
                     np.nan])
    cycles = date_cycle_inputs(wall, parts)  # sin and cos of year_day, month_day, week_day, day_time
    assert cycles.shape == (5, 8) and np.all(cycles[4] == 0)
    assert cycles[0, 4:6] == pytest.approx([0.0, 1.0], abs=1e-12)  # 2021-01-04 is a Monday: phase 0
    assert cycles[1, 6:8] == pytest.approx([-1.0, 0.0], abs=1e-12)  # 18:00: three quarters of the day
    assert np.hypot(*(cycles[2, :2] - cycles[3, :2])) < 0.03  # the year's last day beside the next year's first


def test_a_text_column_of_dates_is_a_date_and_a_text_column_of_words_is_not():
    assert looks_like_dates(pa.chunked_array([pa.array(["2020-01-01", None, "2020-01-03T10:00Z"] * 10)]))
    assert not looks_like_dates(pa.chunked_array([pa.array(["2020-01-01", "soon"] * 10)]))
    assert not looks_like_dates(pa.chunked_array([pa.array([1.0, 2.0])]))


@pytest.mark.parametrize("form, role, hint", [
    ("%d/%m/%Y", "id", "dates day or month first, which are ambiguous: write them year first, 2012-01-31"),
    ("%m-%d-%y %H:%M", "id", "dates day or month first"),
    ("mixed", "id", "67% of its cells are dates year first, the rest other text"),
    ("%A", "categorical", None),  # day names: not dates
])
def test_a_text_column_of_dates_this_suite_does_not_read_says_why_in_its_role(form, role, hint):
    from common.data.roles import guess_role

    days = [dt.datetime(2012, 1, 1, 10) + dt.timedelta(days=k) for k in range(99)]
    cells = [d.isoformat() if k % 3 else d.strftime("%d.%m.%Y") for k, d in enumerate(days)] if form == "mixed" \
        else [d.strftime(form) for d in days]
    found = guess_role("when", pa.chunked_array([cells]), None)
    assert found.role == role
    assert (hint in found.why) if hint else ("dates" not in found.why), found.why


def seasonal(n: int, seed: int = 0) -> dict:
    """Daily records whose label follows the season and the weekend, the date written as text."""
    rng = np.random.default_rng(seed)
    days = [dt.date(2015, 1, 1) + dt.timedelta(days=int(k)) for k in rng.integers(0, 1500, n)]
    doy = np.array([d.timetuple().tm_yday for d in days])
    weekend = np.array([d.weekday() >= 5 for d in days])
    logit = 2 * np.sin(2 * np.pi * doy / 365.25) + 1.5 * weekend
    label = np.where(logit + rng.normal(0, 0.5, n) > 0.5, "busy", "quiet")
    return {"day": [d.isoformat() for d in days], "x": rng.normal(size=n), "label": label}


@pytest.fixture(scope="module")
def dated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dated")
    write(tmp / "days.csv", seasonal(600))
    make_data("--csv", tmp / "days.csv", "--target", "label", "--out-dir", tmp / "data")
    train(*train_args(tmp / "data" / "days", tmp / "run", "--epochs", "30", "--folds", "2"))
    return tmp


def test_a_date_column_is_a_date_with_its_cycles(dated):
    meta = json.loads((dated / "data" / "days" / "dataset.json").read_text())
    role = next(r for r in meta["roles"] if r["name"] == "day")
    assert role["role"] == "date" and "day of week" in role["why"]
    step = next(s for s in meta["preprocess"]["numeric"] if s["name"] == "day")
    assert step["date_parts"] == ["year_day", "month_day", "week_day"]  # no time of day in the column
    assert meta["feature_names"][-6:] == [f"day_{p}_{w}" for p in step["date_parts"] for w in ("sin", "cos")]
    assert json.loads((dated / "run" / "metrics.jsonl").read_text().splitlines()[-1])["val_f1_macro"] > 0.8


def test_dates_of_another_form_predict_the_same_and_a_non_date_is_a_blank_with_a_note(dated, tmp_path, capsys):
    """The model trained on dates pyarrow read as date32 from the CSV; Parquet dates, timestamps and
    slashes give the same predictions; a cell that is no date is a blank, and said."""
    table = pa_csv.read_csv(dated / "days.csv")
    days = table.column("day").cast(pa.date32())
    forms = {"date32.parquet": days, "timestamp.parquet": days.cast(pa.timestamp("ms")),
             "slashes.csv": pa.array([d.strftime("%Y/%m/%d") for d in days.to_pylist()])}
    expected = None
    for name, column in forms.items():
        path = tmp_path / name
        changed = table.set_column(table.column_names.index("day"), "day", column)
        pq.write_table(changed, path) if name.endswith(".parquet") else pa_csv.write_csv(changed, path)
        infer("--ckpt-dir", dated / "run", "--input", path, "--output", tmp_path / f"{name}.pred.csv")
        got = [r["proba_busy"] for r in read_csv_rows(tmp_path / f"{name}.pred.csv")]
        assert expected is None or got == expected, name
        expected = got
    odd = table.set_column(0, "day", pa.array(["someday"] + [d.isoformat() for d in days.to_pylist()[1:]]))
    pa_csv.write_csv(odd, tmp_path / "odd.csv")
    infer("--ckpt-dir", dated / "run", "--input", tmp_path / "odd.csv", "--output", tmp_path / "odd.pred.csv")
    assert len(read_csv_rows(tmp_path / "odd.pred.csv")) == 600
    said = " ".join(capsys.readouterr().out.split())
    assert "column 'day' had 1 blank cell(s), 1 of them not dates (year first" in said
    assert said.count("not dates") == 1  # the same cell, said once


def test_a_date_column_of_which_no_cell_is_a_date_is_refused(dated, tmp_path):
    """Dates written month first (02/08/2020) read as blanks, every one: each row was predicted at
    training's median date with a note, and exit 0."""
    table = pa_csv.read_csv(dated / "days.csv")
    us = [d.strftime("%m/%d/%Y") for d in table.column("day").cast(pa.date32()).to_pylist()]
    pa_csv.write_csv(table.set_column(0, "day", pa.array(us)), tmp_path / "us.csv")
    message = user_error(infer_script.main, "--ckpt-dir", dated / "run", "--input", tmp_path / "us.csv",
                         "--output", tmp_path / "us.pred.csv")
    assert "column 'day' holds no date as training read them (600 cell(s), none year first" in message
    assert not (tmp_path / "us.pred.csv").exists()


def test_whether_a_date_column_holds_dates_is_judged_on_the_whole_input_not_a_batch(dated, tmp_path, capsys):
    """Nine dates and a last cell that is none: judged batch by batch, the file was refused with
    --batch-size 3 (a batch of that cell alone) and read with --batch-size 10."""
    table = pa_csv.read_csv(dated / "days.csv").slice(0, 10)
    days = [d.isoformat() for d in table.column("day").cast(pa.date32()).to_pylist()[:9]] + ["unknown"]
    pq.write_table(table.set_column(0, "day", pa.array(days)), tmp_path / "t.parquet")
    for rows in ("3", "10"):
        infer("--ckpt-dir", dated / "run", "--input", tmp_path / "t.parquet", "--output", tmp_path / f"{rows}.csv",
              "--batch-size", rows)
        assert "1 of them not dates" in " ".join(capsys.readouterr().out.split()), rows
    assert (tmp_path / "3.csv").read_text() == (tmp_path / "10.csv").read_text()


def test_the_api_given_a_files_path_reads_its_dates_as_infer_py_does(dated, tmp_path):
    """A zoned time is the wall clock as written: 01:30+02:00 on 1 March is a Tuesday in March,
    where pyarrow's own reading of the file makes it 23:30 UTC on Monday 29 February."""
    from common.api import Predictor

    days = ["2016-03-01T01:30+02:00", "2016-07-04T00:15+05:00", "2016-01-02T23:00-03:00"]
    write(tmp_path / "zoned.csv", {"day": days, "x": [0.3, -1.2, 0.8]})
    infer("--ckpt-dir", dated / "run", "--input", tmp_path / "zoned.csv", "--output", tmp_path / "zoned.npz")
    model = Predictor.load(dated / "run")
    with np.load(tmp_path / "zoned.npz") as theirs:
        assert np.array_equal(model.predict_proba(tmp_path / "zoned.csv"), theirs["proba"])
        assert not np.array_equal(model.predict_proba(pa_csv.read_csv(tmp_path / "zoned.csv")), theirs["proba"])


@pytest.mark.parametrize("unit", ["D", "h", "m", "s"])
def test_numpy_dates_in_rows_given_in_memory_predict_as_the_text_of_the_same_date(dated, unit):
    """np.datetime64("2016-03-01") in a dict: pyarrow refused a list of such scalars with a message
    about int(), read as "give each column values of one type"."""
    from common.api import Predictor

    model = Predictor.load(dated / "run")
    days, x = ["2016-03-01T10:00", "2015-07-04T00:00", "2016-01-02T23:00"], [0.3, -1.2, 0.8]
    expected = model.predict_proba({"day": days, "x": x})
    dates = [np.datetime64(d).astype(f"datetime64[{unit}]") for d in days]
    if unit == "D":  # the day alone: its time is midnight's
        expected = model.predict_proba({"day": [d[:10] for d in days], "x": x})
    assert np.array_equal(model.predict_proba({"day": dates[0], "x": x[0]}), expected[:1])
    assert np.array_equal(model.predict_proba([{"day": d, "x": v} for d, v in zip(dates, x, strict=True)]), expected)
    assert np.array_equal(model.predict_proba({"day": tuple(dates), "x": x}), expected)
    mixed = [np.datetime64(days[0], "h"), np.datetime64(days[1][:10], "D"), np.datetime64(days[2], "m")]
    assert np.array_equal(model.predict_proba({"day": np.array(mixed, dtype=object), "x": x}),
                          model.predict_proba({"day": days, "x": x}))


def test_a_date_given_by_hand(tmp_path):
    columns = seasonal(60)
    columns["code"] = [f"k{i % 3}" for i in range(60)]
    write(tmp_path / "t.csv", columns)
    make_data("--csv", tmp_path / "t.csv", "--target", "label", "--date", "day", "--out-dir", tmp_path / "data")
    assert json.loads((tmp_path / "data" / "t" / "dataset.json").read_text())["roles"][0]["role"] == "date"
    message = user_error(make_data_script.main, "--csv", tmp_path / "t.csv", "--target", "label", "--date", "code",
                         "--out-dir", tmp_path / "again")
    assert "--date code: its cells are not dates" in message
