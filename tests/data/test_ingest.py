"""make_data.py's path for a user's CSV or Parquet file (common/data/ingest.py): read in batches with
memory bounded by a batch, not the file; the task, the rows without a target and the columns
that carry nothing decided from the data; each bad table refused in one line, the earlier data
set kept."""
import json
import shutil

import numpy as np
import pyarrow as pa
import pytest

import infer as infer_script
import make_data as make_data_script
from builders import make_data, people, tmpfs, user_error, write, write_csv
from common.data import scratch as scratch_module
from common.data import splits as splits_module
from common.data import tables as table
from common.data.dataset import ARRAYS, load_dataset
from common.errors import InputNote


def ingest(path, out, *extra):
    make_data("--csv", path, "--target", "label", "--out-dir", out, *extra)
    return load_dataset(out / path.stem)


def people_with_gaps(rows=3000):
    """people() with rows whose label is blank, so that dropped rows shift every batch."""
    columns = people(rows=rows, seed=3)
    labels = np.asarray(columns["label"], dtype=object)
    labels[::97] = None
    columns["label"] = pa.array(labels.tolist())
    return columns


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_table_read_in_many_small_batches_gives_the_same_data_set(tmp_path, monkeypatch, suffix):
    """Batches of a few rows, chunks of 7 rows, a median from a 500-row sample: the same arrays
    as one batch (the median aside, which the sample only estimates)."""
    path = write(tmp_path / f"people{suffix}", people_with_gaps())
    whole = ingest(path, tmp_path / "whole")
    monkeypatch.setattr(table, "BATCH_BYTES", 4096)
    monkeypatch.setattr(table, "BATCH_ROWS", 50)
    monkeypatch.setattr(splits_module, "CHUNK_ROWS", 7)
    small = ingest(path, tmp_path / "small")
    assert whole.description.source["batches_read"] == 1 and small.description.source["batches_read"] > 20
    assert whole.description.source["rows_without_target"] == small.description.source["rows_without_target"] == 31
    assert whole.description.preprocess.categorical == small.description.preprocess.categorical
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(small, name), getattr(whole, name))
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(np.load(tmp_path / "small" / "people" / f"rows_{name}.npy"),
                                      np.load(tmp_path / "whole" / "people" / f"rows_{name}.npy"))


def test_each_split_keeps_the_class_proportions_and_names_its_file_rows(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.choice(["a", "b", "c"], 5000, p=[0.7, 0.25, 0.05])
    path = write(tmp_path / "t.csv", {"x": rng.normal(size=5000), "label": labels})
    data = ingest(path, tmp_path, "--test-size", "0.2", "--val-size", "0.1")  # a locked test set, asked for
    totals = {k: int((labels == k).sum()) for k in "abc"}
    for split, share in (("train", 0.7), ("val", 0.1), ("test", 0.2)):
        y = np.asarray(data.split(split)[1])
        for code, k in enumerate("abc"):
            assert abs((y == code).sum() - share * totals[k]) <= 1  # exact per class, up to rounding
        rows = np.load(tmp_path / "t" / f"rows_{split}.npy")
        assert np.all(np.diff(rows) > 0)  # file order within a split
        assert [["a", "b", "c"][c] for c in y] == labels[rows].tolist()
    every = np.concatenate([np.load(tmp_path / "t" / f"rows_{s}.npy") for s in ("train", "val", "test")])
    assert sorted(every.tolist()) == list(range(5000))
    again = ingest(path, tmp_path / "again", "--test-size", "0.2", "--val-size", "0.1")
    np.testing.assert_array_equal(again.X_test, data.X_test)  # seeded: the same split every time


def test_the_median_comes_from_a_bounded_sample_of_training_rows(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.exponential(size=20000)
    path = write(tmp_path / "t.csv", {"x": x, "label": (x > 1).astype(np.int64)})
    monkeypatch.setattr(scratch_module, "MEDIAN_SAMPLE", 2000)
    (step,) = ingest(path, tmp_path).preprocessor.numeric
    assert step.median == pytest.approx(np.log(2), abs=0.05)  # the exponential's median, from 2000 rows
    train = np.load(tmp_path / "t" / "rows_train.npy")
    assert step.mean == pytest.approx(x[train].mean(), rel=1e-9)  # means and scales use every training row
    assert step.scale == pytest.approx(x[train].std(), rel=1e-9)


def test_types_decided_by_the_head_hold_for_the_rest_of_the_file(tmp_path, monkeypatch):
    """Whole numbers in the head and decimals later are numbers; a word later is one line naming it."""
    monkeypatch.setattr(table, "HEAD_BYTES", 1024)
    monkeypatch.setattr(table, "BATCH_BYTES", 1024)
    rows = [f"{i % 7},{i % 3}" for i in range(600)]
    rows[500] = "2.5,1"
    (tmp_path / "t.csv").write_text("x,label\n" + "\n".join(rows) + "\n")
    data = ingest(tmp_path / "t.csv", tmp_path)
    assert data.description.roles[0].role == "numeric"
    rows[550] = "oops,1"
    (tmp_path / "bad.csv").write_text("x,label\n" + "\n".join(rows) + "\n")
    message = user_error(make_data_script.main, "--csv", tmp_path / "bad.csv", "--target", "label",
                         "--out-dir", tmp_path)
    assert "column 'x' has 'oops' in data row 551, where the file's head" in message, message
    assert "holds numbers only" in message and "--categorical" in message


def test_a_code_among_numbers_is_refused_with_the_flag_that_reads_the_column_as_codes(tmp_path):
    """Postal codes, a few of them not digits (`K1A 0B1`): the message said to fix the cell or
    blank it, neither of which is what to do about a column of codes."""
    rng = np.random.default_rng(0)
    postal = rng.integers(10000, 99999, 600).astype(str).astype(object)
    postal[-10:] = "K1A 0B1"
    path = write(tmp_path / "t.csv", {"postal code": postal, "label": rng.integers(0, 2, 600)})
    message = user_error(make_data_script.main, "--csv", path, "--target", "label", "--out-dir", tmp_path)
    assert "column 'postal code' has a non-numeric value 'K1A 0B1' in data row 591" in message, message
    assert message.endswith("or give --categorical 'postal code' if the column holds codes, not amounts")
    ingest(path, tmp_path, "--categorical", "postal code")  # as it says


def test_a_folder_that_is_not_a_data_set_is_never_replaced(tmp_path):
    (tmp_path / "people").mkdir()
    mine = write(tmp_path / "people" / "people.csv", people(rows=200))
    message = user_error(make_data_script.main, "--csv", mine, "--target", "label", "--out-dir", tmp_path)
    assert "choose another --out-dir" in message and mine.is_file()
    (tmp_path / "people" / "notes.txt").write_text("mine")
    other = write(tmp_path / "people.csv", people(rows=200))
    message = user_error(make_data_script.main, "--csv", other, "--target", "label", "--out-dir", tmp_path)
    assert "not a data set folder (it holds notes.txt, people.csv)" in message, message  # what to move, named
    assert (tmp_path / "people" / "notes.txt").read_text() == "mine"


# ---- a bad table: one line, and the earlier data set kept ----

HEADER = "a,b,label\n"
EARLIER = b"earlier data set"


@pytest.fixture
def out_dir(tmp_path):
    """A folder that already holds a data set: bad input must leave it as it was."""
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "X_train.npy").write_bytes(EARLIER)
    return tmp_path


def make_from_csv(out_dir, text, *extra):
    (out_dir / "t.csv").write_text(text)
    return user_error(make_data_script.main, "--csv", out_dir / "t.csv", "--out-dir", out_dir, *extra)


@pytest.mark.parametrize("text,extra,words", [
    (HEADER + "1,2,x\n3,4,y\n", ["--target", "kind"], ["no target column 'kind'", "label"]),
    (HEADER + "1,2,x\n3,4,y\n", [], ["--target", "label"]),
    (HEADER, ["--target", "label"], ["no data rows"]),
    ("", ["--target", "label"], ["Empty CSV file"]),
    (HEADER + "1,2,x\n1,2,y\ninf,2,x\n" + "1,2,y\n" * 3, ["--target", "label"], ["column 'a'", "infinite", "row 3"]),
    (HEADER + "1,2\n", ["--target", "label"], ["Expected 3 columns, got 2", "--sep"]),
    (HEADER + ",,x\n,,y\n", ["--target", "label"], ["no feature columns", "'a': 'dropped'"]),
    (HEADER + "1,2,\n3,4,\n", ["--target", "label"], ["target column 'label' is empty"]),
    (HEADER + "1,2,x\n7,3,y\n3,9,y\n4,5,x\n2,6,y\n", ["--target", "label", "--test-size", "0.2", "--val-size", "0.1"],
     ["class 'x' has fewer than 3 rows"]),
    (HEADER + "1,2,1.5\n", ["--target", "label", "--numeric", "a"], ["has one data row", "add rows"]),  # one row
    (HEADER + "1,2,x\n7,3,x\n3,9,x\n", ["--target", "label"], ["one class only ('x')"]),
    (HEADER + "1,2,1.5\n3,4,2.5\n", ["--target", "label", "--test-size", "0.2", "--val-size", "0.1"],
     ["2 row(s) cannot be split"]),  # two rows, three splits
    (HEADER + "1,2,1.5\n3,4,2.5\n", ["--target", "label", "--val-size", "0", "--test-size", "0.9"],
     ["2 row(s) cannot be split"]),
    ("a,label\n" + "".join(f"{i * i % 7},{'xyzuv'[i % 5]}\n" for i in range(10)),
     ["--target", "label", "--val-size", "0", "--test-size", "0.8"], ["training split"]),
    (HEADER + "1,2,x\n3,4,y\n", ["--target", "label", "--test-size", "1.5"], ["--test-size"]),
    (HEADER + "1,2,x\n3,4,y\n", ["--target", "label", "--val-size", "1.0"], ["--val-size"]),
    (HEADER + "1,2,x\n3,4,y\n", ["--target", "label", "--drop", "a", "--id", "a"], ["'a' is given two roles"]),
    (HEADER + "1,2,x\n3,4,y\n", ["--target", "label", "--drop", "c"], ["no column named ['c']"]),
    (HEADER + "1,2,x\n3,4,y\n", ["--target", "label", "--numeric", "label"], ["'label' is the target"]),
    ("a,a,label\n1,2,x\n", ["--target", "label"], ["more than one column named ['a']"]),
    ("id,label\nr1,x\nr2,y\n", ["--target", "label"], ["no feature columns"]),
])
def test_bad_csv(out_dir, text, extra, words):
    message = make_from_csv(out_dir, text, *extra)
    for word in words:
        assert word in message
    assert (out_dir / "t" / "X_train.npy").read_bytes() == EARLIER


def test_missing_csv(tmp_path):
    assert "not found" in user_error(make_data_script.main, "--csv", tmp_path / "none.csv", "--target", "y")


def test_blanks_are_filled_and_flagged_and_categories_coded(people_set):
    tmp, _ = people_set
    data = load_dataset(tmp / "people")
    pre = data.preprocessor
    assert data.description.feature_names == ["age", "age_missing", "city", "member"]
    (age,) = pre.numeric
    assert age.indicator and np.isfinite(age.median)
    # The indicator is 0/1; the codes are whole numbers with 0 left for unseen values.
    assert set(np.unique(data.X_train[:, 1])) == {0.0, 1.0}
    city, member = pre.categorical
    assert set(city.levels) == {"oslo", "paris", "rome", None}  # blanks are a level of their own
    assert set(member.levels) == {"true", "false"}
    assert data.X_train[:, 2].min() >= 1 and data.X_train[:, 2].max() <= len(city.levels)
    assert (data.description.n_train, data.description.n_val, data.description.n_test) == (600, 0, 0)  # all train
    assert data.description.source["ids"] == ["person_id"]


def test_rows_without_a_target_are_dropped_and_counted(tmp_path, capsys):
    path = write(tmp_path / "t.csv", {"a": np.arange(50) % 7 * 1.0, "y": pa.array([1.5, None, 2.5, 3.5, 0.5] * 10)})
    make_data("--csv", path, "--target", "y", "--out-dir", tmp_path)
    assert "Dropped 10 row(s) without a target value" in capsys.readouterr().out
    meta = load_dataset(tmp_path / "t").description
    assert meta.n_train + meta.n_val + meta.n_test == 40 and meta.source["rows_without_target"] == 10


def test_a_column_constant_among_the_labelled_rows_is_dropped(tmp_path):
    """Roles are guessed on the whole file; a column that varies only where the target is blank
    tells the model nothing and is dropped once the labelled rows are known."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=60)
    label = [None if i % 3 == 0 else ("a" if x[i] > 0 else "b") for i in range(60)]
    batch = [f"b{i % 4}" if i % 3 == 0 else "b1" for i in range(60)]
    level = [float(i) if i % 3 == 0 else 2.0 for i in range(60)]
    write(tmp_path / "t.csv", {"x": x, "batch": batch, "level": level, "label": label})
    make_data("--csv", tmp_path / "t.csv", "--target", "label", "--out-dir", tmp_path)
    data = load_dataset(tmp_path / "t")
    roles = {r.name: (r.role, r.why) for r in data.description.roles}
    assert roles["batch"] == roles["level"] == ("dropped", "one value in every labelled row")
    assert data.description.feature_names == ["x"] and data.X_train.shape == (40, 1)


def test_a_number_target_written_as_text_is_a_regression(tmp_path):
    rng = np.random.default_rng(6)
    salary = rng.integers(30_000, 200_000, 300)
    write(tmp_path / "t.csv", {"x": salary / 1000 + rng.normal(size=300), "salary": [f"{s:,}" for s in salary]})
    make_data("--csv", tmp_path / "t.csv", "--target", "salary", "--out-dir", tmp_path)
    data = load_dataset(tmp_path / "t")
    assert data.task == "regression" and 30_000 < data.description.target.mean < 200_000


def test_a_full_disk_while_make_data_streams_a_table_keeps_the_earlier_data_set(small_cls, tmp_path):
    """A 3 MB tmpfs: the earlier data set fits, the scratch files of a 60k-row table do not."""
    table = write(tmp_path / "people.csv", people(rows=60_000))
    with tmpfs(tmp_path / "disk", "size=3M") as disk:
        shutil.copytree(small_cls, disk / "people")  # an earlier data set of the same name
        before = {p.name: p.read_bytes() for p in (disk / "people").iterdir()}
        message = user_error(make_data_script.main, "--csv", table, "--target", "label", "--out-dir", disk)
        assert "No space left on device" in message and message.startswith(f"cannot write {disk / 'people'} (")
        assert "people keeps what it held before" in message  # the data set named, not its hidden stage
        # No staging folder left behind; the writers' lock file stays (a lock file deleted on release
        # could be locked by one process and recreated by another).
        assert sorted(p.name for p in disk.iterdir()) == [".people.lock", "people"]
        assert {p.name: p.read_bytes() for p in (disk / "people").iterdir()} == before


@pytest.mark.parametrize("free_kb", [0, 4, 12])
def test_a_full_disk_while_make_data_writes_a_small_table_says_so(tmp_path, free_kb):
    """The few kilobytes of a small table's scratch columns: a write the disk cannot take is a full
    disk, never columns silently left short (which read as a table without rows)."""
    table = write(tmp_path / "people.csv", people(rows=400))
    with tmpfs(tmp_path / "disk", "size=3M") as disk:
        free = shutil.disk_usage(disk).free - free_kb * 1024
        with open(disk / "filler", "wb") as fh:
            fh.write(b"\0" * max(free, 0))
        message = user_error(make_data_script.main, "--csv", table, "--target", "label", "--out-dir", disk / "out")
        assert "No space left on device" in message and "add rows" not in message, message
        assert not (disk / "out" / "people").exists()


def test_csv_becomes_a_data_set(animals):
    tmp, X, labels = animals
    data = load_dataset(tmp / "animals")
    assert data.task == "classification"
    assert data.description.class_labels == ["bird", "cat", "dog"]
    assert data.description.feature_names == ["w", "x", "y", "z", "city"]  # numeric inputs, then category codes
    assert data.description.source["ids"] == ["id"] and data.description.source["dropped_columns"] == []
    assert [c["name"] for c in data.description.preprocess.to_json()["categorical"]] == ["city"]
    assert len(data.y_train) == 600 and len(data.y_val) == len(data.y_test) == 0  # every labelled row trains
    # Mapped through the training split's quantiles onto a normal: centred, spread about 1.
    np.testing.assert_allclose(data.X_train[:, :4].mean(0), 0, atol=0.05)
    assert np.all((data.X_train[:, :4].std(0) > 0.8) & (data.X_train[:, :4].std(0) < 1.35))
    assert set(np.unique(data.X_train[:, 4])) == {1.0, 2.0}  # the two cities' codes; 0 is kept for unseen


@pytest.mark.parametrize("values,task", [(["1.5", "2.25", "3.0", "0.1"] * 10, "regression"),
                                         (["0", "1", "2", "1"] * 10, "classification")])
def test_task_is_inferred_from_the_target(tmp_path, values, task, capsys):
    rng = np.random.default_rng(1)
    write_csv(tmp_path / "t.csv", ["a", "b", "target"], [[*rng.normal(size=2).tolist(), v] for v in values])
    make_data("--csv", tmp_path / "t.csv", "--target", "target", "--out-dir", tmp_path)
    assert f"{task}: " in capsys.readouterr().out
    assert load_dataset(tmp_path / "t").task == task


def test_a_few_words_among_numbers_are_blanks_learned_at_make_data_and_kept_at_prediction(tmp_path, capsys):
    """A weather table writes `T` for a trace of rain among its numbers: the column stays numeric,
    `T` is a blank (counted), and prediction reads `T` so too, while a word it never saw is an error."""
    from builders import infer, train, train_args

    rng = np.random.default_rng(0)
    rain = [("T" if i % 9 == 0 else f"{v:.2f}") for i, v in enumerate(rng.gamma(1.0, 0.3, 300))]
    path = write(tmp_path / "w.csv", {"rain": rain, "wind": rng.normal(size=300),
                                      "event": ["wet" if i % 3 else "dry" for i in range(300)]})
    make_data("--csv", path, "--target", "event", "--out-dir", tmp_path / "data")
    meta = json.loads((tmp_path / "data" / "w" / "dataset.json").read_text())
    role = next(r for r in meta["roles"] if r["name"] == "rain")
    assert role["role"] == "numeric" and "'T' (34)" in role["why"] and role["missing"] == 34
    step = next(s for s in meta["preprocess"]["numeric"] if s["name"] == "rain")
    assert step["blank_words"] == ["T"] and step["indicator"]
    train(*train_args(tmp_path / "data" / "w", tmp_path / "run", "--epochs", "2", "--folds", "2"))
    infer("--ckpt-dir", tmp_path / "run", "--input", path, "--output", tmp_path / "p.csv")
    write(tmp_path / "new.csv", {"rain": ["T", "0.5", "lots"], "wind": [0.0, 1.0, 2.0]})
    message = user_error(infer_script.main, "--ckpt-dir", tmp_path / "run", "--input", tmp_path / "new.csv")
    assert "'lots'" in message and "row 3" in message


def test_blanks_are_counted_in_the_rows_that_train_not_in_those_dropped_for_a_blank_target(tmp_path):
    """Rows without a target are dropped: their blanks are none of the model's, and the role table
    (and the card, which shows it) counts the blanks of the kept rows alone."""
    rows = 300
    dropped = np.arange(rows) % 10 == 0  # a blank target: these rows are dropped
    with_blank = np.arange(rows) % 7 == 0  # blanks that train
    path = write(tmp_path / "t.csv", {
        "gone": [None if d else float(i) for i, d in enumerate(dropped)],  # blank only where dropped
        "both": [None if d or b else float(i) for i, (d, b) in enumerate(zip(dropped, with_blank, strict=True))],
        "city": [None if d else ["oslo", "rome"][i % 2] for i, d in enumerate(dropped)],
        "day": [None if b else f"2024-01-{1 + i % 28:02d}" for i, b in enumerate(with_blank)],
        "label": [None if d else ["p", "q"][i % 3 == 0] for i, d in enumerate(dropped)]})
    make_data("--csv", path, "--target", "label", "--out-dir", tmp_path / "data")
    meta = json.loads((tmp_path / "data" / "t" / "dataset.json").read_text())
    missing = {r["name"]: r["missing"] for r in meta["roles"]}
    kept_with_blank = int((with_blank & ~dropped).sum())
    assert missing == {"gone": 0, "both": kept_with_blank, "city": 0, "day": kept_with_blank}, missing
    assert not any(s["indicator"] for s in meta["preprocess"]["numeric"] if s["name"] == "gone")


def test_a_column_of_numbers_with_many_different_words_is_still_an_error(tmp_path):
    """A few words among numbers are blanks; fifty different ones say the column is not numbers."""
    def word(k):  # letters only: a word with a digit in it is a number written wrong, never a blank
        return "w" + chr(97 + k % 26) + chr(97 + k // 26)

    rows = [f"{word(i // 3)},{i % 2}" if i % 3 == 0 else f"{i},{i % 2}" for i in range(200)]  # two thirds numbers
    (tmp_path / "t.csv").write_text("x,label\n" + "\n".join(rows) + "\n")
    message = user_error(make_data_script.main, "--csv", tmp_path / "t.csv", "--target", "label", "--out-dir",
                         tmp_path / "data")
    assert "column 'x'" in message and f"'{word(50)}'" in message and "row 151" in message  # the 51st word


def test_a_column_of_numbers_first_and_mostly_words_after_is_refused_not_emptied(tmp_path):
    """Its role is decided on its first cells (numbers): its words, three quarters of it, would
    be blanks. Refused in one line naming the words and the ways out; --categorical trains."""
    rows = [f"{i % 5},{i % 2}" for i in range(10_000)] + [f"{'ABC'[i % 3]},{i % 2}" for i in range(30_000)]
    (tmp_path / "t.csv").write_text("grade,label\n" + "\n".join(rows) + "\n")
    argv = ["--csv", str(tmp_path / "t.csv"), "--target", "label", "--out-dir", str(tmp_path / "data")]
    message = user_error(make_data_script.main, *argv)
    assert "column 'grade' holds more words than numbers" in message and "'A' (10,000)" not in message, message
    assert "'A' (10000)" in message and "--categorical" in message and not (tmp_path / "data" / "t").exists()
    make_data_script.main([*argv, "--categorical", "grade"])
    assert (tmp_path / "data" / "t" / "dataset.json").is_file()


def test_a_column_of_words_alone_given_as_numeric_is_refused(tmp_path):
    """--numeric on a column of a few words: each would be read as a blank, the column all blanks."""
    rows = [f"{['red', 'green', 'blue'][i % 3]},{i},{i % 2}" for i in range(60)] + [",61,1"]
    (tmp_path / "t.csv").write_text("colour,x,label\n" + "\n".join(rows) + "\n")
    message = user_error(make_data_script.main, "--csv", tmp_path / "t.csv", "--target", "label", "--numeric",
                         "colour", "--out-dir", tmp_path / "data")
    assert message == (f"{tmp_path / 't.csv'}: column 'colour' holds no numbers, only words ('red', 'green', "
                       "'blue'): give it as --categorical, or leave it out of --numeric")
    assert not (tmp_path / "data" / "t").exists()
    # Numbers in the labelled rows, words besides in rows without a target: a numeric column.
    rows = [f"{i if i % 2 else 'red'},{i},{i % 3 % 2}" for i in range(60)] + [f"red,{i}," for i in range(60)]
    (tmp_path / "t.csv").write_text("colour,x,label\n" + "\n".join(rows) + "\n")
    make_data_script.main(["--csv", str(tmp_path / "t.csv"), "--target", "label", "--numeric", "colour",
                           "--out-dir", str(tmp_path / "data")])
    assert (tmp_path / "data" / "t" / "dataset.json").is_file()


def test_a_number_written_wrong_is_never_taken_for_a_word(tmp_path):
    """`3,5` in a file of decimal points, `12kg`: a digit says it was meant as a number."""
    rows = [f"{i}.5,{i % 2}" for i in range(40)] + ["12kg,1"]
    (tmp_path / "t.csv").write_text("x,label\n" + "\n".join(rows) + "\n")
    message = user_error(make_data_script.main, "--csv", tmp_path / "t.csv", "--target", "label", "--out-dir",
                         tmp_path / "data")
    assert "'12kg'" in message and "row 41" in message


def test_whole_number_codes_reach_the_model_as_numbers_and_as_categories(tmp_path, capsys):
    """An occupation code: numeric, and also its frequent values as categories, said in the role
    table; prediction reads it from a table, an array of numbers and a Python row alike."""
    from builders import infer, train, train_args
    from common.api import Predictor

    rng = np.random.default_rng(0)
    occupation = rng.choice(np.arange(100, 3100, 100), 8000)  # 30 codes, ~270 rows each
    path = write(tmp_path / "jobs.csv", {"occ": occupation, "hours": rng.normal(40, 5, 8000).round(1),
                                         "label": (occupation % 700 < 300).astype(int)})
    capsys.readouterr()
    make_data("--csv", path, "--target", "label", "--out-dir", tmp_path / "data")
    assert "also as codes (30 values)" in capsys.readouterr().out
    meta = json.loads((tmp_path / "data" / "jobs" / "dataset.json").read_text())
    assert [(c["name"], c.get("of_number")) for c in meta["preprocess"]["categorical"]] == [("occ", True)]
    assert load_dataset(tmp_path / "data" / "jobs").description.feature_names == ["occ", "hours", "occ_code"]
    for flags in (["--numeric", "occ"], ["--no-integer-codes"]):
        make_data("--csv", path, "--target", "label", "--out-dir", tmp_path / "plain", *flags)
        assert load_dataset(tmp_path / "plain" / "jobs").description.preprocess.categorical == []
    train(*train_args(tmp_path / "data" / "jobs", tmp_path / "run", "--epochs", "2", "--folds", "2"))
    infer("--ckpt-dir", tmp_path / "run", "--input", path, "--output", tmp_path / "p.npz")
    np.save(tmp_path / "rows.npy", np.stack([occupation, np.full(8000, 40.0)], axis=1)[:5])
    infer("--ckpt-dir", tmp_path / "run", "--input", tmp_path / "rows.npy", "--output", tmp_path / "q.npz")
    from_array = np.load(tmp_path / "q.npz")["proba"]
    predictor = Predictor.load(tmp_path / "run")
    assert np.array_equal(predictor.predict_proba({"occ": occupation[:5].tolist(), "hours": [40.0] * 5}), from_array)
    assert np.array_equal(predictor.predict_proba({"occ": int(occupation[3]), "hours": 40.0})[0], from_array[3])
    assert np.load(tmp_path / "p.npz")["proba"].shape == (8000, 2)
    # a number the view has no code for is said, as a text column's value of no level is (a blank is not)
    capsys.readouterr()
    np.save(tmp_path / "new.npy", np.array([[999.0, 40.0], [100.0, 40.0], [np.nan, 40.0]]))
    infer("--ckpt-dir", tmp_path / "run", "--input", tmp_path / "new.npy", "--output", tmp_path / "new.npz")
    said = " ".join(capsys.readouterr().out.split())
    assert "column 'occ' had 1 cell(s) with numbers its view as codes has no level for (999 among them" in said
    with pytest.warns(InputNote, match=r"'occ' had 2 cell\(s\) with numbers its view as codes has no level for \(7"):
        predictor.predict_proba({"occ": [7, 100, 8], "hours": [40.0] * 3})
    make_data("--csv", write(tmp_path / "few.csv", {"occ": occupation[:1500], "label": (occupation[:1500] > 900)}),
              "--target", "label", "--out-dir", tmp_path / "few")
    assert load_dataset(tmp_path / "few" / "few").description.preprocess.categorical == []  # too few rows


def test_a_fraction_shared_by_a_few_rows_gets_a_view_read_alike_as_double_or_float(tmp_path, capsys):
    """A panel: each household's income (a fraction) on its ten rows, its visits following the
    household; prediction finds its codes from a CSV's doubles and an array's floats alike."""
    from builders import infer, train, train_args
    from common.api import Predictor

    rng = np.random.default_rng(2)
    household = rng.integers(0, 800, 8000)
    income, effect = np.log(rng.uniform(5_000, 90_000, 800)), rng.normal(size=800)
    linc, hours = income[household], rng.normal(40, 5, 8000)
    label = (effect[household] + rng.normal(0, 0.5, 8000) > 0).astype(int)
    path = write(tmp_path / "panel.csv", {"linc": linc, "hours": hours, "label": label})
    capsys.readouterr()
    make_data("--csv", path, "--target", "label", "--out-dir", tmp_path / "data")
    assert "also as codes (" in capsys.readouterr().out
    pre = load_dataset(tmp_path / "data" / "panel").description.preprocess
    assert [(view.name, view.fractional) for view in pre.categorical] == [("linc", True)]  # not the hours
    train(*train_args(tmp_path / "data" / "panel", tmp_path / "run", "--epochs", "1", "--folds", "2"))
    np.save(tmp_path / "rows.npy", np.stack([linc, hours], axis=1)[:50].astype(np.float32))
    infer("--ckpt-dir", tmp_path / "run", "--input", tmp_path / "rows.npy", "--output", tmp_path / "q.npz")
    from_floats = np.load(tmp_path / "q.npz")["proba"]
    rows = {"linc": linc[:50].tolist(), "hours": hours[:50].tolist()}
    from_doubles = Predictor.load(tmp_path / "run").predict_proba(rows)
    assert np.allclose(from_floats, from_doubles, atol=1e-4)  # the numbers' last bits differ, never the codes
    codes = {name: pre.transform({"linc": values, "hours": hours[:50]}.__getitem__, None, 50)[:, -1]
             for name, values in (("double", linc[:50]), ("float", linc[:50].astype(np.float32).astype(float)))}
    assert (codes["double"] > 0).all() and np.array_equal(codes["double"], codes["float"])


def test_a_regression_gives_a_code_its_view_and_a_smooth_whole_number_none(tmp_path):
    """Ranked amounts as the target: a region code's values move it in no order, an age's smoothly."""
    rng = np.random.default_rng(1)
    region, age = rng.integers(0, 40, 8000), rng.integers(20, 70, 8000)
    amount = np.exp(rng.normal(size=40)[region] + ((age - 45) / 25.0) ** 2 + rng.normal(0, 0.5, 8000))
    make_data("--csv", write(tmp_path / "pay.csv", {"region": region, "age": age, "pay": amount.round(2)}),
              "--target", "pay", "--out-dir", tmp_path / "data")
    views = load_dataset(tmp_path / "data" / "pay").description.preprocess.categorical
    assert [(view.name, view.of_number) for view in views] == [("region", True)]


def test_classes_of_few_training_rows_are_kept_and_named(tmp_path, capsys):
    """A class of 1-9 training rows weighs as much as any in macro-F1: said at make_data.py."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    y = np.where(x > 0, "a", "b").astype(object)
    y[:3], y[3] = "rare", "Yes"
    write(tmp_path / "t.csv", {"x": x, "y": y})
    make_data("--csv", tmp_path / "t.csv", "--target", "y", "--out-dir", tmp_path)
    meta = json.loads((tmp_path / "t" / "dataset.json").read_text())
    assert meta["source"]["classes_of_few_rows"] == {"Yes": 1, "rare": 3}
    assert "Note: class(es) with few training rows: 'Yes' (1), 'rare' (3)." in " ".join(capsys.readouterr().out.split())
    y[:300] = [f"c{i:03d}" for i in range(100)] * 3  # 100 classes of 3 rows: eight named, and a count
    write(tmp_path / "many.csv", {"x": x, "y": y})
    make_data("--csv", tmp_path / "many.csv", "--target", "y", "--task", "classification", "--out-dir", tmp_path)
    said = " ".join(capsys.readouterr().out.split())
    assert "'c007' (" in said and "'c008'" not in said and "and 92 more of the 102 classes" in said, said
    assert len(json.loads((tmp_path / "many" / "dataset.json").read_text())["source"]["classes_of_few_rows"]) == 100
    write(tmp_path / "u.csv", {"x": x, "y": np.where(x > 0, "a", "b")})
    make_data("--csv", tmp_path / "u.csv", "--target", "y", "--out-dir", tmp_path)
    assert "classes_of_few_rows" not in json.loads((tmp_path / "u" / "dataset.json").read_text())["source"]


@pytest.mark.parametrize("column", ["x", "y"])
def test_a_number_beyond_float32_is_one_line_naming_its_row(tmp_path, column):
    """1e308 overflowed the scaling's squares (numpy warnings) into a data set of infinite targets
    that train.py refused, and remaking it gave the same."""
    rng = np.random.default_rng(0)
    columns = {"x": rng.normal(size=200), "z": rng.normal(size=200), "y": rng.normal(size=200)}
    columns[column][56] = 1e308
    write(tmp_path / "t.csv", columns)
    message = user_error(make_data_script.main, "--csv", tmp_path / "t.csv", "--target", "y", "--out-dir", tmp_path)
    assert f"column '{column}' has 1e+308 in data row 57, beyond the 3.4e+38" in message, message
    assert not (tmp_path / "t").exists()


def test_levels_past_max_levels_are_said_at_make_data_and_at_prediction(tmp_path):
    """A column of 400 values, well populated, capped at 100 levels: the role said "text, 400
    values" and prediction called the cut values "new, or too rare in training"."""
    import json

    from common.serve.inputs import InputNotes
    from common.steps import Preprocessor

    rng = np.random.default_rng(0)
    write(tmp_path / "t.csv", {"u": [f"u{v}" for v in rng.permutation(np.arange(3000) % 400)],
                               "a": rng.normal(size=3000), "y": rng.integers(0, 2, 3000)})
    make_data("--csv", tmp_path / "t.csv", "--target", "y", "--out-dir", tmp_path, "--max-levels", "100")
    roles = json.loads((tmp_path / "t" / "dataset.json").read_text())["roles"]
    why = next(r["why"] for r in roles if r["name"] == "u")
    assert why.startswith("text, 400 values") and "only the 100 most frequent kept as levels (--max-levels)" in why
    for cap in ("5000", "400"):  # every value kept: a cap reached but nothing past it, or far off
        make_data("--csv", tmp_path / "t.csv", "--target", "y", "--out-dir", tmp_path / cap, "--max-levels", cap)
        roles = json.loads((tmp_path / cap / "t" / "dataset.json").read_text())["roles"]
        assert "--max-levels" not in next(r["why"] for r in roles if r["name"] == "u")
    notes = InputNotes(Preprocessor([], []))
    notes.unknown["u"], notes.unknown_example["u"] = 5, "u7"
    assert any("past make_data.py's --max-levels" in line for line in notes.lines())
