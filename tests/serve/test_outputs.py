"""Prediction's output files: the CSV lines composed as bytes equal, to the byte, those pyarrow's
path writes, for every probability it can print and labels and carried text of every kind."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from common.serve.outputs import PredictionWriter, carried_names, probability_text


def never(*args):
    raise AssertionError("the other path wrote")


def csv_bytes(tmp_path, name, labels, batches, fast: bool | None) -> bytes:
    """fast: bytes only; False: pyarrow only (as for a regression); None: either, as it comes."""
    writer = PredictionWriter(tmp_path / name, "csv", labels)
    if fast is False:
        writer.csv_bytes = lambda named, result: None
    if fast is True:
        writer._write = never
    for extra, proba in batches:
        writer.write(writer.formatted(extra, {"prediction": np.asarray(labels)[proba.argmax(axis=1)], "proba": proba,
                                              "class": proba.argmax(axis=1)}))
    writer.close()
    return (tmp_path / name).read_bytes()


def test_every_six_decimal_probability_is_written_as_pyarrow_writes_it():
    p = np.concatenate([np.arange(1_000_001) / 1e6, np.random.default_rng(0).random(100_000),
                        [0.0, 1.0, 5e-7, 4.9999e-7, 0.9999995, 0.99999949, 1.0 + 4e-7]])
    text = probability_text(p)
    ours = [bytes(row[row != 0]).decode() for row in text]
    assert ours == pc.cast(pa.array(np.round(p, 6)), pa.string()).to_pylist()


@pytest.mark.parametrize("value", [-0.0, -1e-9, 1.000001, np.nan, np.inf])
def test_a_probability_without_a_plain_form_goes_the_pyarrow_way(value):
    assert probability_text(np.array([0.5, value])) is None


@pytest.mark.parametrize("labels", [[0, 1, 2], ["cat", "a,b", 'say "hi"'], [10, -3, 7], ["x", "", "é"]])
def test_csv_lines_composed_as_bytes_equal_pyarrows(tmp_path, labels):
    rng = np.random.default_rng(1)
    ids = pa.chunked_array([pa.array(["133", "a,b", 'q"x', "", "line\nbreak", "é"] * 5)])
    batches = [({"ID": ids, "note": ids}, rng.dirichlet([0.2, 1, 1], 30)) for _ in range(3)]
    batches.append(({"ID": ids, "note": ids}, np.tile([[1.0, 0.0, 0.0], [0.25, 0.5, 0.25]], (15, 1))))
    fast = csv_bytes(tmp_path, "fast.csv", labels, batches, fast=True)
    assert fast == csv_bytes(tmp_path, "slow.csv", labels, batches, fast=False)
    assert fast.count(b"\n") == 1 + 4 * 30 + 2 * 4 * 5  # the header, each row, the line breaks in two columns


def test_a_long_carried_text_takes_the_pyarrow_path_with_the_same_lines(tmp_path):
    long = pa.chunked_array([pa.array(["x" * 200, "short"])])
    batches = [({"ID": pa.chunked_array([pa.array(["a", "b"])])}, np.array([[0.1, 0.9], [0.6, 0.4]])),
               ({"ID": long}, np.array([[0.3, 0.7], [1.0, 0.0]]))]
    fast = csv_bytes(tmp_path, "fast.csv", ["no", "yes"], batches, fast=None)
    assert fast == csv_bytes(tmp_path, "slow.csv", ["no", "yes"], batches, fast=False)
    assert fast.decode().splitlines()[3] == "x" * 200 + ",yes,0.3,0.7"


def test_npz_batches_written_under_one_header_are_what_np_savez_writes_of_them_joined(tmp_path):
    """Text labels whose batches differ in width are widened as np.concatenate widens them."""
    import zipfile

    rng = np.random.default_rng(0)
    writer = PredictionWriter(tmp_path / "ours.npz", "npz", ["a", "bbb"])
    parts = []
    for rows, labels in [(5, ["a"]), (3, ["bbb"]), (4, ["a", "bbb"])]:
        proba = rng.random((rows, 2))
        result = {"prediction": np.asarray(labels)[np.arange(rows) % len(labels)], "proba": proba,
                  "class": np.zeros(rows, np.int64)}
        writer.write(writer.formatted({}, result))
        parts.append(result)
    writer.close()
    np.savez(tmp_path / "joined.npz", **{k: np.concatenate([p[k] for p in parts]) for k in ("prediction", "proba")})
    np.savez(tmp_path / "classes.npz", classes=np.asarray(["a", "bbb"]))  # what names the proba columns
    ours, joined = zipfile.ZipFile(tmp_path / "ours.npz"), zipfile.ZipFile(tmp_path / "joined.npz")
    assert ours.namelist() == [*joined.namelist(), "classes.npy"] == ["prediction.npy", "proba.npy", "classes.npy"]
    for name in joined.namelist():
        assert ours.read(name) == joined.read(name)
        assert ours.getinfo(name).compress_type == zipfile.ZIP_STORED
    assert ours.read("classes.npy") == zipfile.ZipFile(tmp_path / "classes.npz").read("classes.npy")


def test_an_input_column_named_like_an_npz_array_is_kept_apart():
    """An .npz holds `proba` (rows x classes) and `classes`; a table holds `proba_<label>`."""
    assert list(carried_names(["proba", "classes", "proba_a", "id"], ["a", "b"], "npz").values()) == \
        ["proba_input", "classes_input", "proba_a", "id"]
    assert list(carried_names(["proba", "classes", "proba_a", "prediction"], ["a", "b"], "csv").values()) == \
        ["proba", "classes", "proba_a_input", "prediction_input"]
    # an input column of the renamed one's name keeps it: the renamed one takes the next free name
    assert carried_names(["prediction", "prediction_input", "prediction_input2"], ["a"]) == \
        {"prediction": "prediction_input3", "prediction_input": "prediction_input",
         "prediction_input2": "prediction_input2"}
