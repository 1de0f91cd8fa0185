"""Data set folders on disk (common/data/dataset.py): what train.py and infer.py load, and each
way a folder can be missing, damaged or of an older form."""
import json
import shutil

import numpy as np
import pytest

import train as train_script
from builders import user_error
from common.data.dataset import ARRAYS, load_dataset
from common.errors import UserError
from common.steps import TargetStep

HEADER = "a,b,label\n"


@pytest.mark.parametrize("content,words", [
    (None, ["not found", "make_data.py"]),
    (b"not an npz", ["single-file form", "make_data.py"]),
])
def test_bad_data_file(tmp_path, content, words):
    if content is not None:
        (tmp_path / "bad.npz").write_bytes(content)
    message = user_error(train_script.main, "--data", tmp_path / "bad.npz", "--ckpt-dir", tmp_path / "run")
    assert all(word in message for word in words)
    assert not (tmp_path / "run").exists()


def damage_byte(path, at, value):
    blob = bytearray(path.read_bytes())
    blob[at] = value
    path.write_bytes(bytes(blob))


@pytest.mark.parametrize("damage,words", [
    (lambda folder: (folder / "X_test.npy").unlink(), ["X_test.npy not found", "make_data.py"]),
    (lambda folder: (folder / "X_train.npy").write_bytes(b"\x93NUMPY damaged"), ["X_train.npy", "unreadable"]),
    # a header whose text numpy tokenizes into no Python: tokenize.TokenError, a traceback
    (lambda folder: damage_byte(folder / "X_train.npy", 8, 0x28), ["X_train.npy", "unreadable"]),
    (lambda folder: damage_byte(folder / "X_test.npy", 8, 0x28), ["X_test.npy", "unreadable"]),
    (lambda folder: (folder / "dataset.json").write_text("{"), ["dataset.json", "not valid JSON"]),
])
def test_damaged_data_set_folder(tmp_path, small_cls, damage, words):
    folder = tmp_path / "copy"
    shutil.copytree(small_cls, folder)
    damage(folder)
    message = user_error(train_script.main, "--data", folder, "--ckpt-dir", tmp_path / "run")
    assert all(word in message for word in words), message


def test_a_data_set_of_an_older_single_file_form_is_one_line_saying_to_remake_it(tmp_path, small_cls):
    data = load_dataset(small_cls)
    np.savez(tmp_path / "old.npz", **{name: np.asarray(getattr(data, name)) for name in ARRAYS})
    (tmp_path / "old.json").write_text(json.dumps(data.description.to_json()))
    with pytest.raises(UserError, match="single-file form: remake it with make_data.py"):
        load_dataset(tmp_path / "old.npz")
    (tmp_path / "gone").mkdir()
    with pytest.raises(UserError, match="pass --data"):
        load_dataset(tmp_path / "gone.npz")


def test_a_table_given_to_train_py_says_to_run_make_data_first(tmp_path):
    (tmp_path / "t.csv").write_text(HEADER + "1,2,x\n")
    message = user_error(train_script.main, "--data", tmp_path / "t.csv")
    assert "make_data.py --csv" in message and "--target" in message


def test_an_older_log1p_model_still_predicts_expm1_of_its_output_within_range():
    target = TargetStep("log1p", 1.0, 0.5, 0.0, 50.0)
    out = np.array([[-3.0], [0.0], [1.0], [9.0]])
    predicted = target.original(out)[:, 0]
    np.testing.assert_allclose(predicted, np.clip(np.expm1(out[:, 0] * 0.5 + 1.0), 0.0, 50.0))
    assert target.original(out, prediction=False)[3, 0] == pytest.approx(np.expm1(5.5))


def test_the_data_set_is_memory_mapped_not_read(small_cls):
    data = load_dataset(small_cls)
    for name in ("X_train", "y_train", "X_val", "X_test"):
        assert isinstance(getattr(data, name), np.memmap)
        assert not getattr(data, name).flags.writeable  # a run can never change its data


@pytest.mark.parametrize("array,damage,words", [
    ("X_train", lambda a: a.__setitem__((4000, 3), np.nan), ["the train split", "NaN or infinite inputs"]),
    ("X_test", lambda a: a.__setitem__((7, 0), np.inf), ["the test split", "NaN or infinite inputs"]),
    ("y_test", lambda a: a.__setitem__(11, 3), ["the test split", "class ids outside 0..2"]),
])
def test_a_data_set_damaged_after_it_was_written_is_one_line(small_cls, tmp_path, array, damage, words):
    data = tmp_path / "data"
    shutil.copytree(small_cls, data)
    values = np.load(data / f"{array}.npy")
    damage(values)
    np.save(data / f"{array}.npy", values)
    message = user_error(train_script.main, "--data", data, "--ckpt-dir", tmp_path / "run", "--epochs", "1")
    assert all(word in message for word in words) and "regenerate the data set" in message, message
    assert not (tmp_path / "run" / "model.safetensors").exists()


@pytest.mark.parametrize("array,dtype", [("X_train", np.float64), ("X_train", np.int64), ("X_train", np.float16),
                                         ("X_train", np.bool_), ("X_test", np.int32), ("y_train", np.uint8),
                                         ("y_test", np.int32)])
def test_arrays_of_another_type_than_make_data_writes_are_one_line(small_cls, tmp_path, array, dtype):
    """The model multiplies float32 and takes int64 class codes: any other type is a damaged data set,
    said before training, never torch's traceback from inside a step."""
    data = tmp_path / "data"
    shutil.copytree(small_cls, data)
    np.save(data / f"{array}.npy", np.load(data / f"{array}.npy").astype(dtype))
    with pytest.raises(UserError) as info:
        load_dataset(data)
    assert array in str(info.value) and np.dtype(dtype).name in str(info.value), str(info.value)
    assert "regenerate the data set with make_data.py" in str(info.value)


def test_a_regressions_targets_of_another_width_are_one_line(reg_data, tmp_path):
    """An extra target column would broadcast in the loss and train without a word."""
    data = tmp_path / "data"
    shutil.copytree(reg_data, data)
    y = np.load(data / "y_train.npy")
    np.save(data / "y_train.npy", np.concatenate([y, y], axis=1))
    with pytest.raises(UserError, match=r"y_train holds float32 of shape \(\d+, 2\), not one float32 target column"):
        load_dataset(data)


def test_row_counts_that_disagree_with_the_arrays_are_one_line(small_cls, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(small_cls, data)
    meta = json.loads((data / "dataset.json").read_text())
    meta["n_test"] += 5
    (data / "dataset.json").write_text(json.dumps(meta))
    message = user_error(train_script.main, "--data", data, "--ckpt-dir", tmp_path / "run")
    assert "X_test.npy holds 1201 rows but dataset.json says 1206" in message and "make_data.py" in message


def test_a_tables_source_rows_cut_short_are_one_line(people_set, tmp_path):
    made, _ = people_set
    data = tmp_path / "data"
    shutil.copytree(made / "people", data)
    rows = np.load(data / "rows_train.npy")
    np.save(data / "rows_train.npy", rows[:-3])
    message = user_error(train_script.main, "--data", data, "--ckpt-dir", tmp_path / "run")
    assert f"rows_train.npy holds {len(rows) - 3} rows but X_train.npy {len(rows)}" in message


def test_a_data_set_of_another_file_of_the_same_name_is_replaced_with_a_note(tmp_path, capsys):
    from builders import make_data, write

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        write(tmp_path / folder / "cust.csv", {"x": np.arange(40.0) % 7 + 0.5, "y": ["p", "q"] * 20})
    make_data("--csv", tmp_path / "a" / "cust.csv", "--target", "y", "--out-dir", tmp_path / "data")
    make_data("--csv", tmp_path / "a" / "cust.csv", "--target", "y", "--out-dir", tmp_path / "data")  # made again
    assert "held the data set of" not in capsys.readouterr().out
    make_data("--csv", tmp_path / "b" / "cust.csv", "--target", "y", "--out-dir", tmp_path / "data")
    out = " ".join(capsys.readouterr().out.split())
    assert f"Note: {tmp_path / 'data' / 'cust'} held the data set of {tmp_path / 'a' / 'cust.csv'}, now replaced" in out
