"""Data larger than memory: memory-mapped data sets, chunked gathering, bounded evaluation."""
import json

import numpy as np
import pyarrow as pa
import pytest
import torch
from builders import ROOT, make_data, people, train, user_error, write

import make_data as make_data_script
from common.data import ingest as ingest_module
from common.data import tables as table
from common.data.dataset import ARRAYS, load_dataset
from common.data.ingest import looks_like_counts
from common.errors import UserError
from common.train import batching


def weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("shuffle", ["rows", "blocks"])
def test_chunked_gathering_gives_the_weights_of_one_gather_per_epoch(small_val, tmp_path, shuffle, monkeypatch):
    """Chunks bound memory only: a chunk of 37 rows, read in file order as from a split too large
    for the page cache, trains bit for bit like the whole split gathered at once."""
    args = ["--data", small_val, "--epochs", "2", "--batch-size", "64", "--shuffle", shuffle]
    train(*args, "--ckpt-dir", tmp_path / "whole")
    monkeypatch.setattr(batching, "SORTED_READS_FRACTION", 0.0)
    train(*args, "--ckpt-dir", tmp_path / "chunked", "--chunk-rows", "37")
    whole, chunked = weights(tmp_path / "whole"), weights(tmp_path / "chunked")
    assert all(torch.equal(whole[k], chunked[k]) for k in whole)
    config = json.loads((tmp_path / "chunked" / "config.json").read_text())
    assert config["training"]["shuffle"] == shuffle and config["training"]["chunk_rows"] == 37


def test_the_data_set_is_memory_mapped_not_read(small_cls):
    data = load_dataset(small_cls)
    for name in ("X_train", "y_train", "X_val", "X_test"):
        assert isinstance(getattr(data, name), np.memmap)
        assert not getattr(data, name).flags.writeable  # a run can never change its data


def test_auto_shuffle_switches_to_blocks_above_the_threshold(small_cls, tmp_path, monkeypatch):
    monkeypatch.setattr(batching, "ROW_SHUFFLE_MAX", 1000)
    train("--data", small_cls, "--ckpt-dir", tmp_path, "--epochs", "1")
    assert json.loads((tmp_path / "config.json").read_text())["training"]["shuffle"] == "blocks"


def test_evaluation_reads_in_chunks_and_counts_every_row(small_cls, tmp_path, monkeypatch):
    from common.train import trainer as loop

    monkeypatch.setattr(loop, "EVAL_CHUNK", 100)
    train("--data", small_cls, "--ckpt-dir", tmp_path, "--epochs", "1")
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["test_n"] == len(load_dataset(small_cls).y_test) > 100


# ---- make_data.py streams a user's table ----

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
    monkeypatch.setattr(ingest_module, "CHUNK_ROWS", 7)
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
    monkeypatch.setattr(ingest_module, "MEDIAN_SAMPLE", 2000)
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
    assert data.description.roles[0]["role"] == "numeric"
    rows[550] = "oops,1"
    (tmp_path / "bad.csv").write_text("x,label\n" + "\n".join(rows) + "\n")
    message = user_error(make_data_script.main, "--csv", tmp_path / "bad.csv", "--target", "label",
                         "--out-dir", tmp_path)
    assert "column 'x' has a cell" in message and "'oops'" in message and "--categorical" in message
    after = int(message.split("after data row ")[1].split()[0])
    assert 300 < after <= 551  # the batch that holds the cell


def test_a_resident_copy_and_the_mapped_file_give_the_same_batches(small_cls, monkeypatch):
    """The GPU's fast path (a copy kept on the device), direct gathers from the mapped file, and
    sorted reads (a split too large for the page cache) hand out the same rows; on this machine
    all live in host memory, which is all the comparison needs."""
    data = load_dataset(small_cls)
    kept, mapped = (batching.RowSource(data.X_train, data.y_train, "cpu", resident) for resident in (True, False))
    monkeypatch.setattr(batching, "SORTED_READS_FRACTION", 0.0)
    from_disk = batching.RowSource(data.X_train, data.y_train, "cpu")
    assert from_disk.sorted_reads and not mapped.sorted_reads
    idx = np.random.default_rng(0).permutation(len(data.X_train))[:1000]
    for source in (mapped, from_disk):
        for a, b in zip(kept.gather(idx), source.gather(idx), strict=True):
            assert torch.equal(a, b)
        for a, b in zip(kept.slice(100, 300), source.slice(100, 300), strict=True):
            assert torch.equal(a, b)
    assert torch.equal(from_disk.gather(idx)[0], torch.from_numpy(np.asarray(data.X_train)[idx]))


def test_a_folder_that_is_not_a_data_set_is_never_replaced(tmp_path):
    (tmp_path / "people").mkdir()
    mine = write(tmp_path / "people" / "people.csv", people(rows=200))
    message = user_error(make_data_script.main, "--csv", mine, "--target", "label", "--out-dir", tmp_path)
    assert "choose another --out-dir" in message and mine.is_file()
    (tmp_path / "people" / "notes.txt").write_text("mine")
    other = write(tmp_path / "people.csv", people(rows=200))
    message = user_error(make_data_script.main, "--csv", other, "--target", "label", "--out-dir", tmp_path)
    assert "not a data set folder" in message and (tmp_path / "people" / "notes.txt").read_text() == "mine"


def test_a_kill_between_the_two_renames_leaves_the_earlier_data_set(tmp_path, small_cls):
    """atomic_folder moves the earlier folder aside, then the new one in: a kill in between
    leaves only the aside copy, which the next write puts back before anything else."""
    import shutil

    from common.files import restore_or_clear_leftovers

    final = tmp_path / "cls_data"
    shutil.copytree(small_cls, tmp_path / ".cls_data.123.old.part")  # the state such a kill leaves
    (tmp_path / ".cls_data.abc.part").mkdir()                       # and a half-filled stage
    restore_or_clear_leftovers(final)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cls_data"]
    np.testing.assert_array_equal(load_dataset(final).X_train, load_dataset(small_cls).X_train)


def test_a_prediction_input_without_rows_is_one_line_and_writes_nothing(small_model, tmp_path):
    import infer as infer_script

    (tmp_path / "empty.csv").write_text(",".join(f"x{i}" for i in range(10)) + "\n")
    (tmp_path / "p.parquet").write_bytes(b"earlier")
    message = user_error(infer_script.main, "--ckpt-dir", small_model, "--input", tmp_path / "empty.csv",
                         "--output", tmp_path / "p.parquet")
    assert "no data rows" in message and (tmp_path / "p.parquet").read_bytes() == b"earlier"


def test_a_block_order_of_other_geometry_is_not_resumed(small_cls, tmp_path, monkeypatch):
    import train as train_script

    args = ["--data", small_cls, "--ckpt-dir", tmp_path, "--shuffle", "blocks", "--checkpoint-every", "1"]
    train(*args, "--epochs", "1")
    monkeypatch.setattr(batching, "BLOCK_ROWS", 1024)
    message = user_error(train_script.main, *args, "--epochs", "2", "--resume")
    assert "order_geometry: '4096x256' -> '1024x256'" in message


def test_a_reader_puts_back_a_data_set_that_a_killed_swap_left_hidden(tmp_path, small_cls):
    import shutil

    shutil.copytree(small_cls, tmp_path / ".cls_data.123.old.part")  # a kill between the two renames
    data = load_dataset(tmp_path / "cls_data")  # what train.py and infer.py do first
    np.testing.assert_array_equal(data.X_train, load_dataset(small_cls).X_train)
    assert (tmp_path / "cls_data").is_dir() and not list(tmp_path.glob("*.part"))


def test_a_reader_leaves_a_swap_to_the_writer_at_work(tmp_path, small_cls):
    import shutil

    from common.files import exclusive_lock, folder_lock_file

    shutil.copytree(small_cls, tmp_path / ".cls_data.123.old.part")
    with exclusive_lock(folder_lock_file(tmp_path / "cls_data")) as holder:  # a writer between its renames
        assert holder is None
        with pytest.raises(UserError, match="not found"):
            load_dataset(tmp_path / "cls_data")
        assert (tmp_path / ".cls_data.123.old.part").is_dir()


@pytest.mark.e2e
def test_a_second_writer_of_a_data_set_stops_in_one_line_and_spares_the_first(tmp_path):
    """Two make_data.py runs on one output folder: the second would have deleted the first's staging."""
    import subprocess
    import sys
    import textwrap

    from common.files import atomic_folder

    script = textwrap.dedent(f"""
        import sys, time
        from common.files import atomic_folder
        with atomic_folder({str(tmp_path / 'cls_data')!r}, lambda name: True) as stage:
            (stage / "X_train.npy").write_bytes(b"first")
            print("staged", flush=True)
            sys.stdin.readline()
    """)
    first = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "staged"
        with pytest.raises(UserError, match=rf"another process is writing {tmp_path / 'cls_data'} \(pid {first.pid}"), \
                atomic_folder(tmp_path / "cls_data", lambda name: True):
            pass
        first.communicate("go\n", timeout=30)
    finally:
        first.kill()
    assert first.returncode == 0 and (tmp_path / "cls_data" / "X_train.npy").read_bytes() == b"first"


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
    (HEADER + "1,2,x\n1,oops,y\n" + "1,2,x\n1,2,y\n" * 3, ["--target", "label"], ["column 'b'", "'oops'", "row 2"]),
    (HEADER + "1,2,x\n1,2,y\ninf,2,x\n" + "1,2,y\n" * 3, ["--target", "label"], ["column 'a'", "infinite", "row 3"]),
    (HEADER + "1,2\n", ["--target", "label"], ["Expected 3 columns, got 2", "--sep"]),
    (HEADER + ",,x\n,,y\n", ["--target", "label"], ["no feature columns", "'a': 'dropped'"]),
    (HEADER + "1,2,\n3,4,\n", ["--target", "label"], ["target column 'label' is empty"]),
    (HEADER + "1,2,x\n7,3,y\n3,9,y\n4,5,x\n2,6,y\n", ["--target", "label", "--test-size", "0.2", "--val-size", "0.1"],
     ["('x')", "fewer than 3 rows"]),
    (HEADER + "1,2,1.5\n", ["--target", "label", "--numeric", "a"], ["holds one value only"]),  # one-row regression
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


def test_a_count_target_with_few_values_is_a_regression_unless_told(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=600)
    write(tmp_path / "visits.csv", {"x": x, "visits": np.minimum(rng.poisson(np.exp(0.8 * x - 0.3)), 12)})
    make_data("--csv", tmp_path / "visits.csv", "--target", "visits", "--out-dir", tmp_path / "auto")
    counted = load_dataset(tmp_path / "auto" / "visits").description
    assert counted.task == "regression" and "skewed like counts" in counted.source["task_reason"]
    make_data("--csv", tmp_path / "visits.csv", "--target", "visits", "--task", "classification",
              "--out-dir", tmp_path / "told")
    assert load_dataset(tmp_path / "told" / "visits").description.task == "classification"


COUNTS = np.arange(10.0)


@pytest.mark.parametrize("frequencies,counts", [
    ([500, 200, 100, 60, 40, 30, 20, 10, 5, 3], True),     # doctor visits: piled up at 0, a long tail
    ([100] * 10, False),                                     # the ten digits: evenly spread classes
    ([5, 20, 100, 300, 400, 300, 100, 20, 5, 1], False),     # scores around a middle
])
def test_whole_numbers_skewed_like_counts_are_a_regression(frequencies, counts):
    assert looks_like_counts(COUNTS, np.array(frequencies)) is counts


def test_few_or_negative_whole_numbers_stay_classes():
    assert not looks_like_counts(np.arange(3.0), np.array([900, 50, 50]))  # an imbalanced class code
    assert not looks_like_counts(COUNTS - 5, np.array([500, 200, 100, 60, 40, 30, 20, 10, 5, 3]))


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
    roles = {r["name"]: (r["role"], r["why"]) for r in data.description.roles}
    assert roles["batch"] == roles["level"] == ("dropped", "one value in every labelled row")
    assert data.description.feature_names == ["x"] and data.X_train.shape == (40, 1)


def test_a_number_target_written_as_text_is_a_regression(tmp_path):
    rng = np.random.default_rng(6)
    salary = rng.integers(30_000, 200_000, 300)
    write(tmp_path / "t.csv", {"x": salary / 1000 + rng.normal(size=300), "salary": [f"{s:,}" for s in salary]})
    make_data("--csv", tmp_path / "t.csv", "--target", "salary", "--out-dir", tmp_path)
    data = load_dataset(tmp_path / "t")
    assert data.task == "regression" and 30_000 < data.description.y_mean < 200_000
