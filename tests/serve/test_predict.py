"""Loading a model folder and predicting with it (common/serve/predict.py): each bad model folder
or input is one line naming the problem and its fix, and nothing is written."""
import json
import os
import shutil
import socket

import numpy as np
import pyarrow.parquet as pq
import pytest
from safetensors.torch import load_file, save_file

import infer as infer_script
import make_data as make_data_script
from builders import FAST, infer, make_data, people, read_config, read_csv_rows, train, user_error, write, write_csv


def copy_model(model_dir, tmp_path):
    for name in ("model.safetensors", "config.json"):
        (tmp_path / name).write_bytes((model_dir / name).read_bytes())
    return tmp_path


def infer_error(*args):
    return user_error(infer_script.main, *args)


def test_a_folder_a_run_still_trains_in_is_named_as_such(tmp_path):
    """Its first model is not there yet: "not found" would send the user looking for a wrong path."""
    from common.files import exclusive_lock

    with exclusive_lock(tmp_path / ".lock") as held:
        assert held is None
        message = infer_error("--ckpt-dir", tmp_path)
    assert message == (f"{tmp_path} holds no model yet: a run is training there (pid {os.getpid()} on "
                       f"{socket.gethostname()}); wait for it to end")
    # the run has ended (killed) before it wrote anything but its lock: no run saved a model there
    assert infer_error("--ckpt-dir", tmp_path).endswith("holds no model: no run has saved one there")
    # or after it began its record, before it saved a model: said so, where it was "config.json not found"
    (tmp_path / "metrics.running.jsonl").write_text("")
    assert "holds no model: the run there ended before it saved one" in infer_error("--ckpt-dir", tmp_path)


def test_infer_without_a_model(tmp_path, small_cls):
    message = infer_error("--ckpt-dir", tmp_path)
    assert "config.json" in message and "not found" in message and not (tmp_path / ".lock").exists()
    message = infer_error("--ckpt-dir", small_cls)  # make_data.py's folder given for train.py's
    assert f"{small_cls} is a data set" in message and "the folder train.py wrote" in message


@pytest.mark.parametrize("damage,words", [
    (lambda blob: None, ["model.safetensors", "not found"]),
    (lambda blob: blob[: len(blob) // 2], ["unreadable"]),
    (lambda blob: b"\x00" * 40, ["unreadable"]),
])
def test_missing_or_damaged_weights(small_model, tmp_path, damage, words):
    ckpt = copy_model(small_model, tmp_path)
    blob = damage((ckpt / "model.safetensors").read_bytes())
    if blob is None:
        (ckpt / "model.safetensors").unlink()
    else:
        (ckpt / "model.safetensors").write_bytes(blob)
    message = infer_error("--ckpt-dir", ckpt)
    assert all(word in message for word in words)


def test_config_that_does_not_match_the_weights(small_model, tmp_path):
    ckpt = copy_model(small_model, tmp_path)
    config = json.loads((ckpt / "config.json").read_text())
    config["model"]["hidden"] = [32]
    (ckpt / "config.json").write_text(json.dumps(config))
    assert "do not match" in infer_error("--ckpt-dir", ckpt)


def test_weights_and_a_config_of_the_same_shapes_from_two_runs_are_refused(small_model, small_cls, tmp_path):
    """A run swaps its files into the folder one by one: a reader must not pair one run's weights
    with another's steps (the same shapes would load without a word). A re-indented config.json
    is still the one the weights were written with."""
    import common.model_folder as model_folder

    train("--data", small_cls, "--ckpt-dir", tmp_path / "other", *FAST, "--seed", "3")
    for name in ("mixed", "indented"):
        (tmp_path / name).mkdir()
    ckpt = copy_model(small_model, tmp_path / "mixed")
    (ckpt / "config.json").write_bytes((tmp_path / "other" / "config.json").read_bytes())
    assert "config.json was not written with model.safetensors" in infer_error("--ckpt-dir", ckpt)
    ckpt = copy_model(small_model, tmp_path / "indented")
    (ckpt / "config.json").write_text(json.dumps(json.loads((ckpt / "config.json").read_text()), indent=5))
    model_folder.load_model_dir(ckpt)


def test_a_folder_read_while_a_run_swaps_its_files_in_is_read_again(small_model, monkeypatch):
    import common.files as files
    import common.model_folder as model_folder

    read = files.load_weights
    calls = []

    def mid_swap_first(path):  # the first read finds another run's weights: one more tensor, say
        weights = read(path)
        calls.append(path)
        return {**weights, "another": weights[next(iter(weights))]} if len(calls) == 1 else weights

    monkeypatch.setattr(files, "load_weights", mid_swap_first)
    record, _ = model_folder.load_model_dir(small_model)
    assert len(calls) == 2 and record.task == "classification"


def test_a_data_set_made_again_since_training_is_not_scored_without_a_word(tmp_path):
    """The folder the model names, remade with another seed: its test rows are other rows (some of
    them trained on), and infer.py scored them with exit 0."""
    make_data("--n-samples", 600, "--out-dir", tmp_path)
    train("--data", tmp_path / "cls_data", "--ckpt-dir", tmp_path / "run", "--epochs", 1)
    infer("--ckpt-dir", tmp_path / "run", "--metrics-json", tmp_path / "before.json")
    make_data("--n-samples", 600, "--seed", 5, "--out-dir", tmp_path)
    message = infer_error("--ckpt-dir", tmp_path / "run", "--metrics-json", tmp_path / "after.json")
    assert "was made again since this model trained on it" in message and not (tmp_path / "after.json").exists()
    assert "--input FILE" in message  # a way out that works (the next line shows --data does not)
    # Named on purpose, it is still another fit's arrays: its inputs scaled by other figures.
    message = infer_error("--ckpt-dir", tmp_path / "run", "--data", tmp_path / "cls_data",
                          "--metrics-json", tmp_path / "asked.json")
    assert "differs from the model's in its preparation of the columns" in message, message
    assert not (tmp_path / "asked.json").exists()


def test_a_data_set_of_other_classes_is_not_scored_as_the_models(tmp_path):
    """A data set whose classes are others (a class fewer) read its class codes as the model's
    classes of the same number: a third of the rows scored under another class's name."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(900, 2))
    label = np.array(["a", "b", "c"])[np.digitize(x[:, 0], [-0.4, 0.4])]
    write(tmp_path / "t.csv", {"x0": x[:, 0], "x1": x[:, 1], "label": label})
    make_data("--csv", tmp_path / "t.csv", "--target", "label", "--test-size", "0.3", "--out-dir", tmp_path / "all")
    train("--data", tmp_path / "all" / "t", "--ckpt-dir", tmp_path / "run", "--epochs", "2")
    keep = label != "a"
    write(tmp_path / "t.csv", {"x0": x[keep, 0], "x1": x[keep, 1], "label": label[keep]})
    make_data("--csv", tmp_path / "t.csv", "--target", "label", "--test-size", "0.3", "--out-dir", tmp_path / "two")
    message = infer_error("--ckpt-dir", tmp_path / "run", "--data", tmp_path / "two" / "t")
    assert "differs from the model's in its classes" in message and "--input" in message, message


@pytest.mark.parametrize("array,value,what", [("X_test", np.nan, "NaN or infinite inputs"),
                                               ("X_test", np.inf, "NaN or infinite inputs"),
                                               ("y_test", 7, "class ids outside 0..2")])
def test_a_test_split_damaged_since_make_data_is_one_line(small_model, small_cls, tmp_path, array, value, what):
    """As training checks its splits: NaN figures with exit 0, or a reshape traceback, before."""
    data = tmp_path / "data"
    shutil.copytree(small_cls, data)
    damaged = np.load(data / f"{array}.npy")
    damaged[5] = value
    np.save(data / f"{array}.npy", damaged)
    message = infer_error("--ckpt-dir", small_model, "--data", data, "--metrics-json", tmp_path / "m.json")
    assert f"the test split of {data} holds {what}" in message and not (tmp_path / "m.json").exists()


def test_data_of_another_task_writes_no_metrics(small_model, reg_data, tmp_path):
    message = infer_error("--ckpt-dir", small_model, "--data", reg_data, "--metrics-json", tmp_path / "m.json")
    assert "classification" in message and "regression" in message
    assert not (tmp_path / "m.json").exists()


def test_prediction_input_lacking_a_feature(small_model, tmp_path):
    (tmp_path / "rows.csv").write_text("x0,x1\n1,2\n")
    assert "x2" in infer_error("--ckpt-dir", small_model, "--input", tmp_path / "rows.csv")
    assert not (tmp_path / "rows.pred.csv").exists()


def test_non_numeric_prediction_input(small_model, tmp_path):
    header = ",".join(f"x{i}" for i in range(10))
    (tmp_path / "rows.csv").write_text(f"{header}\n{','.join(['1'] * 10)}\n{','.join(['1'] * 9)},abc\n")
    message = infer_error("--ckpt-dir", small_model, "--input", tmp_path / "rows.csv")
    assert "x9" in message and "row 2" in message


def test_dates_where_the_model_trained_on_numbers_are_refused_not_read_as_seconds(small_model, tmp_path):
    """A timestamp in a numeric column would read as seconds since 1970: a Parquet column of
    dates is one line naming the column, as a CSV's date text in it is, and nothing is written."""
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {f"x{i}": [0.5, 0.25] for i in range(10)}
    pq.write_table(pa.table({**columns, "x4": pa.array([dt.datetime(2024, 1, 1), dt.datetime(2024, 2, 1)])}),
                   tmp_path / "rows.parquet")
    # and a time of day or a duration (a DataFrame's timedelta), which would read as seconds
    pq.write_table(pa.table({**columns, "x4": pa.array([dt.time(9, 30), dt.time(17)])}), tmp_path / "times.parquet")
    pq.write_table(pa.table({**columns, "x4": pa.array([dt.timedelta(hours=1), dt.timedelta(0)])}),
                   tmp_path / "durations.parquet")
    header = ",".join(columns)
    (tmp_path / "rows.csv").write_text(f"{header}\n" + ",".join(["1"] * 4 + ["2024-01-05"] + ["1"] * 5) + "\n")
    for name, says in (("rows.parquet", "holds dates (timestamp"), ("rows.csv", "'2024-01-05'"),
                       ("times.parquet", "holds times of day (time64"),
                       ("durations.parquet", "holds durations (duration")):
        message = infer_error("--ckpt-dir", small_model, "--input", tmp_path / name)
        assert "'x4'" in message and says in message, message
        assert not (tmp_path / "rows.pred.csv").exists()


def test_a_column_of_durations_is_trained_and_taken_as_seconds(tmp_path):
    """A DataFrame's timedeltas (Arrow durations): seconds in training, and again at prediction,
    where a column trained on plain numbers refuses them."""
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    from builders import make_data, train
    from common.data.dataset import load_dataset

    rng = np.random.default_rng(0)
    x = rng.normal(size=300)
    waits = [dt.timedelta(seconds=int(s)) for s in np.abs(x) * 3600]
    pq.write_table(pa.table({"wait": pa.array(waits), "x": rng.normal(size=300), "y": np.where(x > 0, "a", "b")}),
                   tmp_path / "t.parquet")
    make_data("--csv", tmp_path / "t.parquet", "--target", "y", "--out-dir", tmp_path / "data")
    steps = {s.name: s for s in load_dataset(tmp_path / "data" / "t").preprocessor.numeric}
    assert steps["wait"].durations and not steps["x"].durations
    train("--data", tmp_path / "data" / "t", "--ckpt-dir", tmp_path / "run", "--epochs", "2")
    infer("--ckpt-dir", tmp_path / "run", "--input", tmp_path / "t.parquet", "--output", tmp_path / "p.csv")
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 301
    odd = pa.table({"wait": pa.array([1.0]), "x": pa.array([dt.timedelta(hours=1)])})  # seconds, and a duration
    pq.write_table(odd, tmp_path / "odd.parquet")
    assert "column 'x' holds durations" in infer_error("--ckpt-dir", tmp_path / "run", "--input",
                                                        tmp_path / "odd.parquet")


def test_a_date_column_made_numeric_by_flag_still_takes_its_dates_at_prediction(tmp_path):
    """`--numeric` on a Parquet timestamp column trains on its seconds: the step says so, and the
    model predicts its own training file, where a column trained on numbers refuses dates."""
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    from builders import make_data, train
    from common.data.dataset import load_dataset

    rng = np.random.default_rng(0)
    start = dt.datetime(2020, 1, 1)
    stamps = [start + dt.timedelta(hours=int(h)) for h in rng.integers(0, 20_000, 300)]
    x = rng.normal(size=300)
    pq.write_table(pa.table({"ts": pa.array(stamps), "x": x, "y": np.where(x > 0, "a", "b")}), tmp_path / "t.parquet")
    make_data("--csv", tmp_path / "t.parquet", "--target", "y", "--numeric", "ts", "--out-dir", tmp_path / "data")
    steps = {s.name: s for s in load_dataset(tmp_path / "data" / "t").preprocessor.numeric}
    assert steps["ts"].instants and not steps["ts"].is_date and not steps["x"].instants
    train("--data", tmp_path / "data" / "t", "--ckpt-dir", tmp_path / "run", "--epochs", "2")
    infer("--ckpt-dir", tmp_path / "run", "--input", tmp_path / "t.parquet", "--output", tmp_path / "p.csv")
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 301


def test_a_regressions_figures_refuse_dates_as_its_target_and_write_strict_json(tmp_path):
    """Rows whose target is a timestamp would be scored as seconds since 1970: one line, nothing
    written. Rows whose targets are all equal have no R²: null in --metrics-json, which programs
    other than Python's json read, never NaN."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from builders import make_data, train, write

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=300), rng.normal(size=300)
    write(tmp_path / "t.csv", {"a": a, "b": b, "r": 3 * a + b})
    make_data("--csv", tmp_path / "t.csv", "--target", "r", "--out-dir", tmp_path / "data")
    train("--data", tmp_path / "data" / "t", "--ckpt-dir", tmp_path / "run", "--epochs", "2")
    stamps = pa.array(np.full(20, np.datetime64("2020-01-01T00:00:00", "us")))
    pq.write_table(pa.table({"a": a[:20], "b": b[:20], "r": stamps}), tmp_path / "dated.parquet")
    message = infer_error("--ckpt-dir", tmp_path / "run", "--input", tmp_path / "dated.parquet",
                          "--output", tmp_path / "dated.csv", "--metrics-json", tmp_path / "dated.json")
    assert "'r'" in message and "holds dates" in message, message
    assert not (tmp_path / "dated.csv").exists() and not (tmp_path / "dated.json").exists()
    write(tmp_path / "same.csv", {"a": a[:20], "b": b[:20], "r": np.full(20, 5.0)})
    infer("--ckpt-dir", tmp_path / "run", "--input", tmp_path / "same.csv", "--output", tmp_path / "same.pred.csv",
          "--metrics-json", tmp_path / "same.json")

    def no_constant(word):
        raise AssertionError(f"{word} is not JSON")

    figures = json.loads((tmp_path / "same.json").read_text(), parse_constant=no_constant)
    assert figures["r2"] is None and figures["rows_scored"] == 20 and figures["mae"] > 0


def test_a_regression_trained_on_timestamps_scores_its_own_file(tmp_path):
    """`--task regression` on a timestamp target trains on its seconds: its step says so, and
    its own file is scored, where a model trained on numbers refuses dates as its target."""
    import datetime as dt
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from builders import make_data, train
    from common.data.dataset import load_dataset

    x = np.random.default_rng(0).normal(size=200)
    when = pa.array([dt.datetime(2020, 1, 1) + dt.timedelta(days=float(v)) for v in 30 * x + 100])
    pq.write_table(pa.table({"x": x, "when": when}), tmp_path / "t.parquet")
    make_data("--csv", tmp_path / "t.parquet", "--target", "when", "--task", "regression", "--out-dir", tmp_path / "d")
    assert load_dataset(tmp_path / "d" / "t").description.target.instants
    train("--data", tmp_path / "d" / "t", "--ckpt-dir", tmp_path / "run", "--epochs", "2")
    infer("--ckpt-dir", tmp_path / "run", "--input", tmp_path / "t.parquet", "--output", tmp_path / "p.csv",
          "--metrics-json", tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text())["rows_scored"] == 200


def test_an_empty_npy_file_is_one_line(small_model, tmp_path):
    (tmp_path / "rows.npy").write_bytes(b"")
    assert "cannot read" in infer_error("--ckpt-dir", small_model, "--input", tmp_path / "rows.npy")


def test_an_npy_file_whose_header_is_no_python_is_one_line(small_model, tmp_path):
    np.save(tmp_path / "rows.npy", np.zeros((4, 3), dtype=np.float32))
    blob = bytearray((tmp_path / "rows.npy").read_bytes())
    blob[8] = 0x28  # an opening bracket: numpy's tokenizer of the header fails (tokenize.TokenError)
    (tmp_path / "rows.npy").write_bytes(bytes(blob))
    assert "cannot read" in infer_error("--ckpt-dir", small_model, "--input", tmp_path / "rows.npy")


def test_a_target_of_bytes_that_are_not_utf8_is_one_line(crossfit_run, tmp_path):
    """A labelled input is scored on its target: pyarrow reads such a column as binary."""
    lines = (crossfit_run / "people.csv").read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b'"high"', b'"hi\xe9"').replace(b'"low"', b'"lo\xe9"')
    (tmp_path / "rows.csv").write_bytes(b"\n".join(lines))
    message = infer_error("--ckpt-dir", crossfit_run / "run", "--input", tmp_path / "rows.csv",
                          "--output", tmp_path / "p.csv")
    assert "column 'label' holds binary values, not labels: save the file as UTF-8 text" in message


def test_npy_input_of_the_wrong_width(small_model, tmp_path):
    np.save(tmp_path / "rows.npy", np.zeros((5, 7)))
    message = infer_error("--ckpt-dir", small_model, "--input", tmp_path / "rows.npy")
    assert "(5, 7)" in message and "10" in message
    assert not (tmp_path / "rows.pred.csv").exists()
    np.save(tmp_path / "rows.npy", np.zeros((5, 10), np.complex64) + 1j)  # its imaginary parts were dropped
    assert "type complex64" in infer_error("--ckpt-dir", small_model, "--input", tmp_path / "rows.npy")
    assert not (tmp_path / "rows.pred.csv").exists()


@pytest.mark.parametrize("name,kind", [("rows.npz", "a NumPy archive"), ("rows.json", "JSON"),
                                       ("rows.xlsx", "a spreadsheet")])
def test_a_file_of_another_kind_is_named_as_such_not_read_as_csv(small_model, tmp_path, name, kind):
    """Their bytes were read as a CSV's header: "lacks column(s) [...]", or "no data rows"."""
    np.savez(tmp_path / "a.npz", X=np.zeros((5, 10)))
    (tmp_path / name).write_bytes((tmp_path / "a.npz").read_bytes())
    message = infer_error("--ckpt-dir", small_model, "--input", tmp_path / name)
    assert message == (f"--input {tmp_path / name} is {kind}, not a table: save it as CSV or Parquet (or the model's "
                       "inputs as a .npy array)")
    message = user_error(make_data_script.main, "--csv", tmp_path / name, "--target", "y", "--out-dir", tmp_path)
    assert message == f"--csv {tmp_path / name} is {kind}, not a table: save it as CSV or Parquet"
    np.save(tmp_path / "rows.npy", np.zeros((5, 10)))  # infer.py's, not make_data.py's
    message = user_error(make_data_script.main, "--csv", tmp_path / "rows.npy", "--target", "y", "--out-dir", tmp_path)
    assert message == f"--csv {tmp_path / 'rows.npy'} is a NumPy array, not a table: save it as CSV or Parquet"


def test_output_equal_to_input_is_refused_before_any_write(small_model, tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text(",".join(f"x{i}" for i in range(10)) + "\n" + ",".join(["1"] * 10) + "\n")
    before = rows.read_bytes()
    for output in (rows, tmp_path / "." / "rows.csv"):
        assert "is the input file" in infer_error("--ckpt-dir", small_model, "--input", rows, "--output", output)
    assert rows.read_bytes() == before
    message = infer_error("--ckpt-dir", small_model, "--input", rows, "--output", tmp_path / "p.txt")
    assert ".csv, .parquet or .npz" in message


@pytest.mark.parametrize("value", ["0", "-5"])
def test_infer_batch_size_must_be_positive(small_model, value):
    assert "--batch-size must be a positive integer" in infer_error("--ckpt-dir", small_model, "--batch-size", value)



def test_predictions_do_not_depend_on_the_batch_size(crossfit_run, tmp_path):
    for size in ("7", "65536"):
        infer("--ckpt-dir", crossfit_run / "run", "--input", crossfit_run / "people.csv",
              "--output", tmp_path / f"{size}.csv", "--batch-size", size)
    assert (tmp_path / "7.csv").read_text() == (tmp_path / "65536.csv").read_text()


def test_a_prediction_in_passes_of_a_few_rows_has_the_bits_of_one_pass(crossfit_run):
    from common.config import PREDICT_BATCH_ROWS
    from common.model import PASS_ACTIVATIONS, ModelSpec, pass_rows, predicted_outputs
    from common.model_folder import load_model_dir
    from common.serve.inputs import feature_batches

    config, model = load_model_dir(str(crossfit_run / "run"))
    X = next(feature_batches(str(crossfit_run / "people.csv"), config.preprocess, None, 10_000)).X.astype(np.float32)
    whole = predicted_outputs(model, X, config.task, rows_per_pass=len(X))
    assert len(X) == 500 and config.model.members == 5
    passes = []

    def counted(x):
        passes.append(len(x))
        return model(x)

    np.testing.assert_array_equal(predicted_outputs(counted, X, config.task, rows_per_pass=62), whole)
    assert passes == [64] * 8 + [32]  # 8 x 62 rows and the last 4, each padded to whole blocks of 32
    spec = config.model
    assert pass_rows(spec) * max(spec.layer_widths) * spec.members <= PASS_ACTIVATIONS  # the cache holds a layer
    recipe = ModelSpec(in_features=10, hidden=(20,), out_features=3, activation="relu")
    assert pass_rows(recipe) >= PREDICT_BATCH_ROWS  # a small model keeps a batch in one pass


def test_infer_without_a_test_split_says_where_the_figures_are(crossfit_run):
    message = user_error(infer_script.main, "--ckpt-dir", crossfit_run / "run")
    assert "no test split" in message and "metrics.jsonl" in message and "--input" in message


def test_a_locked_test_set_is_still_scored_by_the_averaged_members(tmp_path):
    write(tmp_path / "people.csv", people(rows=400))
    make_data("--csv", tmp_path / "people.csv", "--target", "label", "--out-dir", tmp_path, "--test-size", "0.25")
    train("--data", tmp_path / "people", "--ckpt-dir", tmp_path / "run", "--epochs", "4", "--decision", "argmax")
    infer("--ckpt-dir", tmp_path / "run", "--metrics-json", tmp_path / "m.json")
    figures = json.loads((tmp_path / "m.json").read_text())
    assert np.sum(figures["confusion_matrix"]) == 100
    assert figures["f1_macro"] == pytest.approx(read_config(tmp_path / "run")["outcome"]["final_metrics"]["f1_macro"])


def test_a_number_that_is_not_one_still_names_column_and_row(people_set, tmp_path):
    tmp, _ = people_set
    train("--data", tmp / "people", "--ckpt-dir", tmp_path, "--epochs", "1")
    write(tmp_path / "bad.csv", {"member": [True, False], "city": ["rome", "oslo"], "age": ["41", "forty"]})
    message = user_error(infer_script.main, "--ckpt-dir", tmp_path, "--input", tmp_path / "bad.csv")
    assert "column 'age'" in message and "'forty'" in message and "row 2" in message


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_an_input_without_the_models_columns_names_the_model_before_any_work(small_model, tmp_path, suffix,
                                                                            monkeypatch):
    """Left out, --ckpt-dir is the recipe's ckpt/: the line says which model wanted the columns."""
    write(tmp_path / f"rows{suffix}", {"age": [41.0], "city": ["rome"]})
    monkeypatch.setattr(infer_script, "predict_to_file", lambda *args: pytest.fail("the rows were read"))
    message = user_error(infer_script.main, "--ckpt-dir", small_model, "--input", tmp_path / f"rows{suffix}",
                         "--output", tmp_path / "out.csv")
    assert "lacks column(s) ['x0'" in message and f"the model in {small_model} needs" in message


def test_parquet_in_and_out_of_prediction(tmp_path):
    columns = people(rows=300, seed=5)
    write(tmp_path / "p.parquet", columns)
    make_data("--csv", tmp_path / "p.parquet", "--target", "label", "--out-dir", tmp_path)
    train("--data", tmp_path / "p", "--ckpt-dir", tmp_path / "run", "--epochs", "3")
    infer("--ckpt-dir", tmp_path / "run", "--input", tmp_path / "p.parquet", "--output", tmp_path / "pred.npz")
    with np.load(tmp_path / "pred.npz", allow_pickle=False) as preds:
        assert len(preds["prediction"]) == 300 and preds["proba"].shape == (300, 2)
        assert preds["classes"].tolist() == ["high", "low"]  # the proba columns' labels
        assert preds["person_id"].tolist() == list(range(300)) and preds["person_id"].dtype == np.int64  # its type


def test_a_parquet_files_other_columns_keep_their_types_in_parquet_and_npz(small_model, small_cls, tmp_path):
    """Carried into Parquet as they are (blanks stay blanks); into an .npz, numbers as numbers."""
    import datetime

    import pyarrow as pa

    X = np.load(small_cls / "X_test.npy")[:4]
    when = [datetime.datetime(2020, 1, d, tzinfo=datetime.timezone.utc) for d in range(1, 5)]
    extra = {"n": pa.array([1, None, 3, 4]), "code": pa.array(["a", "b", "a", None]).dictionary_encode(),
             "when": pa.array(when), "day": pa.array([w.date() for w in when]),
             "ok": pa.array([True, False, None, True]), "k": pa.array([7, 8, 9, 10])}
    table = pa.table({**{f"x{i}": X[:, i] for i in range(10)}, **extra})
    pq.write_table(table, tmp_path / "rows.parquet")
    infer("--ckpt-dir", small_model, "--input", tmp_path / "rows.parquet", "--output", tmp_path / "p.parquet")
    written = pq.read_table(tmp_path / "p.parquet")
    for name, column in extra.items():  # a dictionary's values as text
        kind = pa.string() if name == "code" else column.type
        assert written.column(name).type == kind and written.column(name).to_pylist() == column.to_pylist(), name
    infer("--ckpt-dir", small_model, "--input", tmp_path / "rows.parquet", "--output", tmp_path / "p.npz")
    with np.load(tmp_path / "p.npz", allow_pickle=False) as arrays:
        assert arrays["k"].tolist() == [7, 8, 9, 10] and arrays["k"].dtype == np.int64
        assert np.array_equal(arrays["n"], [1.0, np.nan, 3.0, 4.0], equal_nan=True)
        assert arrays["code"].tolist() == ["a", "b", "a", ""] and arrays["ok"].tolist() == ["true", "false", "", "true"]


def test_categories_read_the_same_whatever_else_the_file_holds(tmp_path):
    """In training the column holds True, False and maybe (text); a prediction file with only True
    and False would be read as booleans if the column were left to pyarrow's guess."""
    rng = np.random.default_rng(4)
    flag = rng.choice(["True", "False", "maybe"], 400)
    write(tmp_path / "t.csv", {"flag": flag, "x": rng.normal(size=400), "y": (flag == "True").astype(int)})
    make_data("--csv", tmp_path / "t.csv", "--target", "y", "--out-dir", tmp_path)
    train("--data", tmp_path / "t", "--ckpt-dir", tmp_path / "run", "--epochs", "40")
    write(tmp_path / "new.csv", {"flag": ["True", "False", "True"], "x": [0.0, 0.0, 0.0]})
    infer("--ckpt-dir", tmp_path / "run", "--input", tmp_path / "new.csv", "--output", tmp_path / "p.csv")
    assert [r["prediction"] for r in read_csv_rows(tmp_path / "p.csv")] == ["1", "0", "1"]


def test_an_input_column_named_like_an_output_is_kept_apart(people_set, tmp_path):
    tmp, _ = people_set
    train("--data", tmp / "people", "--ckpt-dir", tmp_path, "--epochs", "1")
    write(tmp_path / "new.csv", {"member": [True], "city": ["rome"], "age": [30.0], "prediction": ["mine"]})
    infer("--ckpt-dir", tmp_path, "--input", tmp_path / "new.csv", "--output", tmp_path / "p.csv")
    (row,) = read_csv_rows(tmp_path / "p.csv")
    assert row["prediction_input"] == "mine" and row["prediction"] in ("high", "low")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_prediction_streams_every_row_once_in_order(people_set, tmp_path, suffix):
    tmp, _ = people_set
    train("--data", tmp / "people", "--ckpt-dir", tmp_path, "--epochs", "2")
    columns = people(rows=1000, seed=9)
    write(tmp_path / f"new{suffix}", columns)
    outputs = {}
    for batch in ("37", "100000"):  # many batches, and one
        out = tmp_path / f"p{batch}.csv"
        infer("--ckpt-dir", tmp_path, "--input", tmp_path / f"new{suffix}", "--output", out, "--batch-size", batch)
        outputs[batch] = out.read_text()
    assert outputs["37"] == outputs["100000"]
    rows = read_csv_rows(tmp_path / "p37.csv")
    assert [r["person_id"] for r in rows] == [str(i) for i in range(1000)]
    # Parquet output, written a row group per batch: the same predictions, in the same order.
    infer("--ckpt-dir", tmp_path, "--input", tmp_path / f"new{suffix}", "--output", tmp_path / "p.parquet",
          "--batch-size", "37")
    written = pq.read_table(tmp_path / "p.parquet")
    # A Parquet file's columns are carried of their own types; a CSV file's, streamed, as its text.
    assert written.column("person_id").to_pylist() == ([int(r["person_id"]) for r in rows] if suffix == ".parquet"
                                                       else [r["person_id"] for r in rows])
    assert written.column("prediction").to_pylist() == [r["prediction"] for r in rows]
    np.testing.assert_allclose(written.column("proba_high").to_numpy(),
                               [float(r["proba_high"]) for r in rows], rtol=1e-5)


def test_a_bad_cell_deep_in_a_streamed_file_names_its_row(people_set, tmp_path, monkeypatch):
    """Named by the stream that reads the number columns as text, never by reading the file whole
    (memory as large as the file)."""
    import common.serve.inputs as inputs

    tmp, _ = people_set
    train("--data", tmp / "people", "--ckpt-dir", tmp_path, "--epochs", "1")
    ages = [str(30 + i % 20) for i in range(300)]
    ages[256] = "old"
    write(tmp_path / "new.csv", {"member": [True] * 300, "city": ["rome"] * 300, "age": ages})
    monkeypatch.setattr(inputs, "read_table", lambda *args, **kwargs: pytest.fail("read whole"))
    message = user_error(infer_script.main, "--ckpt-dir", tmp_path, "--input", tmp_path / "new.csv",
                         "--batch-size", "10")
    assert "'old'" in message and "row 257" in message
    assert not (tmp_path / "new.pred.csv").exists()


@pytest.mark.parametrize("cut", [False, True])
def test_an_input_written_to_while_it_is_read_replaces_no_earlier_predictions(small_model, small_cls, tmp_path,
                                                                               monkeypatch, cut):
    """Another program appends to the file, or cuts it short (read whole again, from the start, by
    the fallback for files that stop streaming), while its first batches are predicted."""
    import common.serve.predict as serving
    from common.data.tables import NotStreamable

    X = np.load(small_cls / "X_test.npy")[:400]
    write(tmp_path / "rows.csv", {f"x{i}": X[:, i] for i in range(X.shape[1])})
    (tmp_path / "p.csv").write_text("earlier\n")
    batches = serving.feature_batches

    def changed_after_the_first(*args, **kwargs):
        for i, batch in enumerate(batches(*args, **kwargs)):
            yield batch
            if i == 0 and cut:
                text = (tmp_path / "rows.csv").read_text()
                (tmp_path / "rows.csv").write_text(text[:len(text) // 2])  # the last line cut mid-row
                raise NotStreamable  # as the stream meets the cut
            if i == 0:
                with open(tmp_path / "rows.csv", "a") as fh:
                    fh.write(",".join(["0.5"] * X.shape[1]) + "\n")

    monkeypatch.setattr(serving, "feature_batches", changed_after_the_first)
    message = user_error(infer_script.main, "--ckpt-dir", small_model, "--input", tmp_path / "rows.csv",
                         "--output", tmp_path / "p.csv", "--batch-size", "50")
    assert "rows.csv changed while it was read" in message
    assert (tmp_path / "p.csv").read_text() == "earlier\n" and not list(tmp_path.glob(".p.csv*"))


def test_numbers_written_with_thousands_separators_predict_as_plain_ones(small_model, small_cls, tmp_path):
    """`1,360.268` stops the typed stream; the stream that reads number columns as text reads it,
    and every other column through pyarrow's parser, to the same bits as the plain file."""
    X = np.load(small_cls / "X_test.npy")[:300] * 1000
    plain = {f"x{i}": [f"{v:.3f}" for v in X[:, i]] for i in range(X.shape[1])}
    write(tmp_path / "plain.csv", plain)
    write(tmp_path / "thousands.csv", plain | {"x2": [f"{v:,.3f}" for v in X[:, 2]]})
    assert '"1,' in (tmp_path / "thousands.csv").read_text() or '"-1,' in (tmp_path / "thousands.csv").read_text()
    for name in ("plain", "thousands"):
        infer("--ckpt-dir", small_model, "--input", tmp_path / f"{name}.csv", "--output", tmp_path / f"{name}.npz")
    with np.load(tmp_path / "plain.npz") as plain_out, np.load(tmp_path / "thousands.npz") as thousands_out:
        assert np.array_equal(plain_out["proba"], thousands_out["proba"])


def test_an_unwritable_metrics_file_is_refused_before_the_predictions_are_written(small_model, small_cls, tmp_path,
                                                                                   monkeypatch):
    np.save(tmp_path / "rows.npy", np.load(small_cls / "X_test.npy")[:20])
    (tmp_path / "p.csv").write_text("earlier\n")
    (tmp_path / "locked").write_text("a file where the folder should be")
    monkeypatch.setattr(infer_script, "predict_to_file", lambda *args: pytest.fail("predicted"))
    message = user_error(infer_script.main, "--ckpt-dir", small_model, "--input", tmp_path / "rows.npy",
                         "--output", tmp_path / "p.csv", "--metrics-json", tmp_path / "locked" / "m.json")
    assert message.startswith(f"cannot write in {tmp_path / 'locked'}")
    assert (tmp_path / "p.csv").read_text() == "earlier\n"


def test_a_prediction_input_without_rows_is_one_line_and_writes_nothing(small_model, tmp_path):
    (tmp_path / "empty.csv").write_text(",".join(f"x{i}" for i in range(10)) + "\n")
    (tmp_path / "p.parquet").write_bytes(b"earlier")
    message = user_error(infer_script.main, "--ckpt-dir", small_model, "--input", tmp_path / "empty.csv",
                         "--output", tmp_path / "p.parquet")
    assert "no data rows" in message and (tmp_path / "p.parquet").read_bytes() == b"earlier"


@pytest.mark.parametrize("change,words", [
    (lambda c: c.pop("class_labels"), ["lacks 'class_labels'"]),
    (lambda c: c["model"].update(activation="swish"), ["cannot build"]),
    (lambda c: c["preprocess"]["numeric"].pop(), ["preprocessing for 9 inputs"]),
    (lambda c: c.update(class_labels=[0, 1]), ["2 classes", "3 outputs"]),
])
def test_a_config_that_does_not_fit_is_one_line(small_model, tmp_path, change, words):
    for name in ("model.safetensors", "config.json"):
        shutil.copy(small_model / name, tmp_path / name)
    config = json.loads((tmp_path / "config.json").read_text())
    change(config)
    (tmp_path / "config.json").write_text(json.dumps(config))
    message = user_error(infer_script.main, "--ckpt-dir", tmp_path)
    assert all(word in message for word in words), message


def test_weights_holding_nan_are_refused(small_model, tmp_path):
    shutil.copy(small_model / "config.json", tmp_path / "config.json")
    weights = load_file(str(small_model / "model.safetensors"))
    weights["0.weight"][0, 0] = float("nan")
    save_file(weights, str(tmp_path / "model.safetensors"))
    assert "NaN or infinite weights in ['0.weight']" in user_error(infer_script.main, "--ckpt-dir", tmp_path)


def test_predictions_never_overwrite_a_hard_linked_input(small_model, tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text(",".join(f"x{i}" for i in range(10)) + "\n" + ",".join(["1"] * 10) + "\n")
    os.link(rows, tmp_path / "out.csv")  # the output path is another name of the input
    before = rows.read_bytes()
    infer_script.main(["--ckpt-dir", str(small_model), "--input", str(rows), "--output", str(tmp_path / "out.csv")])
    assert rows.read_bytes() == before and "prediction" in (tmp_path / "out.csv").read_text()


def test_csv_predictions_carry_ids_and_original_labels(animals, tmp_path):
    tmp, X, labels = animals
    train("--data", tmp / "animals", "--ckpt-dir", tmp_path, *FAST, "--class-weight", "balanced", "--patience", "0")
    assert read_config(tmp_path)["training"]["class_weight"] == "balanced"
    # Feature columns in another order, an extra id column first, a city never seen in training.
    write_csv(tmp_path / "new.csv", ["ref", "z", "y", "x", "w", "city"],
              [[f"r{i}", *X[i][::-1].tolist(), "lima"] for i in range(40)])
    infer("--ckpt-dir", tmp_path, "--input", tmp_path / "new.csv", "--output", tmp_path / "out.csv")
    out = read_csv_rows(tmp_path / "out.csv")
    assert [r["ref"] for r in out] == [f"r{i}" for i in range(40)]
    assert set(out[0]) == {"ref", "prediction", "proba_bird", "proba_cat", "proba_dog"}  # city is an input
    # Labels in their own words and in the right order: a mixed-up mapping scores about 1/3, the
    # majority class 1/2; the classes overlap, so even the best model is wrong on ~15% of rows.
    assert np.mean([r["prediction"] == t for r, t in zip(out, labels[:40], strict=True)]) >= 0.7


def test_an_output_path_ending_in_a_slash_is_a_folder(small_model, tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text(",".join(f"x{i}" for i in range(10)) + "\n" + ",".join(["1"] * 10) + "\n")
    infer("--ckpt-dir", small_model, "--input", rows, "--output", f"{tmp_path / 'x.csv'}/")
    assert (tmp_path / "x.csv").is_dir() and (tmp_path / "x.csv" / "rows.pred.csv").is_file()
    (tmp_path / "out").mkdir()  # an existing folder, without the slash
    infer("--ckpt-dir", small_model, "--input", rows, "--output", tmp_path / "out")
    assert (tmp_path / "out" / "rows.pred.csv").is_file()


def test_a_labelled_input_is_scored_as_well_as_predicted(crossfit_run, tmp_path, capsys):
    """The rows carry the model's target: the figures of an evaluation besides the predictions;
    rows with a blank target are predicted and counted, a label never seen is a class of its own."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    table = pa_csv.read_csv(crossfit_run / "people.csv")
    labels = table.column("label").to_pylist()
    labels[:10] = [None] * 10
    labels[10:13] = ["medium"] * 3
    path = tmp_path / "labelled.csv"
    pa_csv.write_csv(table.set_column(table.column_names.index("label"), "label", pa.array(labels)), path)
    infer("--ckpt-dir", crossfit_run / "run", "--input", path, "--output", tmp_path / "p.csv",
          "--metrics-json", tmp_path / "m.json")
    said = capsys.readouterr().out
    figures = json.loads((tmp_path / "m.json").read_text())
    predicted = [r["prediction"] for r in read_csv_rows(tmp_path / "p.csv")]
    assert len(predicted) == 500 and figures["rows_scored"] == 490 and figures["rows_without_target"] == 10
    right = sum(p == t for p, t in zip(predicted[10:], labels[10:], strict=True))
    assert figures["accuracy"] == pytest.approx(right / 490, abs=1e-12)
    assert np.asarray(figures["confusion_matrix"]).shape == (3, 3)  # high, low, and the unseen medium
    assert figures["labels"] == ["high", "low", "medium"] and figures["unseen_labels"] == ["medium"]
    assert figures["support"] == np.sum(figures["confusion_matrix"], axis=1).tolist() and len(figures["recall"]) == 3
    # the same figures as the Python API's
    from common.api import Predictor

    evaluated = Predictor.load(crossfit_run / "run").evaluate(pa_csv.read_csv(path))
    assert {k: evaluated[k] for k in figures} == figures
    assert "confusion matrix" in said and "10 without a 'label' predicted only" in said and "['medium']" in said
    assert "rows it trained on" not in said  # another file than the one the data set was made from


@pytest.mark.parametrize("trained,spelled", [([0, 1], ["0.0", "1.0"]), ([0, 1], ["false", "true"]),
                                             (["False", "True"], [False, True]), ([False, True], ["no", "yes"])])
def test_a_labelled_input_spelling_the_classes_otherwise_is_scored_as_the_same_classes(tmp_path, trained, spelled):
    """pandas writes a 0/1 target with a blank as 0.0/1.0 and a true/false one as True/False, pyarrow
    and a DataFrame's bools as true/false: each read as unseen labels, scoring accuracy 0."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=300)
    positive = x + rng.normal(0, 0.3, 300) > 0
    path = write(tmp_path / "t.csv", {"x": x, "y": [trained[int(p)] for p in positive]})
    make_data("--csv", path, "--target", "y", "--out-dir", tmp_path / "data")
    train("--data", tmp_path / "data" / "t", "--ckpt-dir", tmp_path / "run", *FAST, "--folds", "2")
    figures = {}
    for name, labels in (("as_trained", trained), ("spelled", spelled)):
        rows = write(tmp_path / f"{name}.csv", {"x": x, "y": [labels[int(p)] for p in positive]})
        infer("--ckpt-dir", tmp_path / "run", "--input", rows, "--output", tmp_path / f"{name}.npz",
              "--metrics-json", tmp_path / f"{name}.json")
        figures[name] = json.loads((tmp_path / f"{name}.json").read_text())
    assert figures["spelled"]["accuracy"] > 0.8, figures
    assert figures["spelled"] == figures["as_trained"]


def test_new_rows_with_an_empty_target_column_are_predicted_and_only_figures_asked_for_are_refused(
        crossfit_run, tmp_path, capsys):
    """A template of new rows with the target's column left blank: predicted, exit 0, a note;
    asked for figures, it is refused in one line after the predictions."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    table = pa_csv.read_csv(crossfit_run / "people.csv")
    blank = table.set_column(table.column_names.index("label"), "label", pa.nulls(table.num_rows, pa.string()))
    pa_csv.write_csv(blank, tmp_path / "template.csv")
    infer("--ckpt-dir", crossfit_run / "run", "--input", tmp_path / "template.csv", "--output", tmp_path / "p.csv")
    assert "every row's 'label' is blank: the rows are predicted, none scored" in capsys.readouterr().out
    assert len(read_csv_rows(tmp_path / "p.csv")) == table.num_rows
    from common.errors import run_cli

    with pytest.raises(SystemExit) as info:  # the one line as the command prints it
        run_cli(lambda: infer_script.main([str(a) for a in (
            "--ckpt-dir", crossfit_run / "run", "--input", tmp_path / "template.csv", "--output", tmp_path / "q.csv",
            "--metrics-json", tmp_path / "m.json")]))
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and line.endswith("every row's 'label' is blank: nothing to score for --metrics-json "
                                                  f"(the predictions in {tmp_path / 'q.csv'} had been written)")
    assert not (tmp_path / "m.json").exists() and len(read_csv_rows(tmp_path / "q.csv")) == table.num_rows


def test_figures_that_cannot_be_written_say_the_predictions_were(crossfit_run, tmp_path, monkeypatch, capsys):
    """A full disk under --metrics-json, after the predictions replaced --output: said, where the
    line said only that the figures' file kept what it held."""
    import errno

    from common import files
    from common.errors import run_cli

    (tmp_path / "p.csv").write_text("earlier\n")
    write_json = files.write_json

    def full_disk(path, obj, **kwargs):
        if str(path).endswith("m.json"):
            raise files.write_error(tmp_path / "m.json", OSError(errno.ENOSPC, "No space left on device"))
        return write_json(path, obj, **kwargs)

    monkeypatch.setattr(infer_script, "write_json", full_disk)
    with pytest.raises(SystemExit):
        run_cli(lambda: infer_script.main([str(a) for a in (
            "--ckpt-dir", crossfit_run / "run", "--input", crossfit_run / "people.csv", "--output", tmp_path / "p.csv",
            "--metrics-json", tmp_path / "m.json")]))
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "No space left on device" in line and line.endswith(f"(the predictions in {tmp_path / 'p.csv'} had been "
                                                               "written)")
    assert (tmp_path / "p.csv").read_text() != "earlier\n"


@pytest.mark.parametrize("flag", ["--metrics-json", "--importance"])
def test_figures_asked_of_rows_without_a_target_column_are_refused_before_anything_is_written(
        crossfit_run, tmp_path, flag):
    import pyarrow.csv as pa_csv

    table = pa_csv.read_csv(crossfit_run / "people.csv")
    pa_csv.write_csv(table.drop_columns(["label"]), tmp_path / "new.csv")
    message = infer_error("--ckpt-dir", crossfit_run / "run", "--input", tmp_path / "new.csv", "--output",
                          tmp_path / "p.csv", *([flag, tmp_path / "m.json"] if flag == "--metrics-json" else [flag]))
    assert f"{flag} needs rows with their target: {tmp_path / 'new.csv'} has no column 'label' (leave {flag} out " \
        "to predict the rows)" in message, message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.csv"]
    # A file that cannot be read is said so, not taken for one without the target.
    message = infer_error("--ckpt-dir", crossfit_run / "run", "--input", tmp_path / "gone.csv", "--output",
                          tmp_path / "p.csv", *([flag, tmp_path / "m.json"] if flag == "--metrics-json" else [flag]))
    assert "gone.csv" in message and "not found" in message and "needs rows" not in message, message
    asked = [flag, tmp_path / "m.json"] if flag == "--metrics-json" else [flag]
    message = infer_error("--ckpt-dir", crossfit_run / "run", "--input", tmp_path / "gone.npy", *asked)
    assert "needs rows" not in message, message  # a missing array is said so by its reader
    np.save(tmp_path / "rows.npy", np.zeros((3, 3), np.float32))
    message = infer_error("--ckpt-dir", crossfit_run / "run", "--input", tmp_path / "rows.npy", *asked)
    assert "is an array of the model's inputs, without it" in message, message


def test_importance_on_a_labelled_input_and_a_one_line_refusal_without_labels(crossfit_run, tmp_path, capsys):
    infer("--ckpt-dir", crossfit_run / "run", "--input", crossfit_run / "people.csv", "--output", tmp_path / "p.csv",
          "--importance", "--metrics-json", tmp_path / "m.json")
    said = " ".join(capsys.readouterr().out.split())  # the training table itself: said to be in-sample
    assert f"Note: {crossfit_run / 'people.csv'} is the table the model's data set was made from" in said
    importance = json.loads((tmp_path / "m.json").read_text())["importance"]
    assert {c["column"] for c in importance["columns"]} == {"age", "city", "member"} and importance["rows"] == 500
    unlabelled = write(tmp_path / "new.csv", {"age": [30.0], "city": ["oslo"], "member": [True]})
    message = infer_error("--ckpt-dir", crossfit_run / "run", "--input", unlabelled, "--importance")
    assert "no column 'label'" in message and not (tmp_path / "new.pred.csv").exists()


def test_a_labelled_regression_input_gets_its_error_figures(tmp_path, capsys):
    rng = np.random.default_rng(4)
    x = rng.normal(size=300)
    path = write(tmp_path / "t.csv", {"x": x, "y": 3 * x + rng.normal(0, 0.1, 300)})
    make_data("--csv", path, "--target", "y", "--out-dir", tmp_path / "data")
    train("--data", tmp_path / "data" / "t", "--ckpt-dir", tmp_path / "run", *FAST)
    infer("--ckpt-dir", tmp_path / "run", "--input", path, "--output", tmp_path / "p.csv",
          "--metrics-json", tmp_path / "m.json")
    figures = json.loads((tmp_path / "m.json").read_text())
    predicted = np.asarray([float(r["prediction"]) for r in read_csv_rows(tmp_path / "p.csv")])
    truth = np.asarray([float(r["y"]) for r in read_csv_rows(path)])
    assert figures["mae"] == pytest.approx(np.abs(predicted - truth).mean(), rel=1e-9)
    assert figures["r2"] > 0.9 and "regression on 300 rows with a 'y'" in capsys.readouterr().out


def test_a_regressions_values_are_the_same_bits_whatever_rows_share_their_pass(tmp_path):
    """A value is written whole (17 digits), so its bits must not depend on the rows beside it:
    batches of 7 rows or one, infer.py or the Python API, one row or many."""
    from common.api import Predictor

    rng = np.random.default_rng(5)
    columns = {"x": rng.normal(size=700), "z": rng.normal(size=700), "shop": rng.choice(["a", "b", "c"], 700)}
    path = write(tmp_path / "t.csv", {**columns, "y": 3 * columns["x"] + (columns["shop"] == "a")
                                      + rng.normal(0, 0.1, 700)})
    make_data("--csv", path, "--target", "y", "--out-dir", tmp_path / "data")
    train("--data", tmp_path / "data" / "t", "--ckpt-dir", tmp_path / "run", "--epochs", "2")
    for size in ("7", "65536"):
        infer("--ckpt-dir", tmp_path / "run", "--input", path, "--output", tmp_path / f"{size}.csv",
              "--batch-size", size)
    assert (tmp_path / "7.csv").read_text() == (tmp_path / "65536.csv").read_text()
    model = Predictor.load(str(tmp_path / "run"))
    together = model.predict(columns)
    alone = [model.predict({name: values[i:i + 1] for name, values in columns.items()})[0] for i in range(40)]
    np.testing.assert_array_equal(np.asarray(alone), together[:40])
    written = [float(row["prediction"]) for row in read_csv_rows(tmp_path / "7.csv")]
    np.testing.assert_array_equal(np.asarray(written), together)


def test_a_labelled_regression_target_written_with_decimal_commas_is_read_as_its_file_writes_it(tmp_path):
    """A semicolon-separated file writes 11,436 for 11.436: its target too, not only its inputs."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=200)
    path = write(tmp_path / "t.csv", {"x": x, "y": 10 + x + rng.normal(0, 0.1, 200)})
    make_data("--csv", path, "--target", "y", "--out-dir", tmp_path / "data")
    train("--data", tmp_path / "data" / "t", "--ckpt-dir", tmp_path / "run", *FAST)
    semicolons = tmp_path / "s.csv"
    semicolons.write_text("\n".join(line.replace(",", ";").replace(".", ",") for line in path.read_text().splitlines()))
    infer("--ckpt-dir", tmp_path / "run", "--input", path, "--output", tmp_path / "a.csv", "--metrics-json",
          tmp_path / "a.json")
    infer("--ckpt-dir", tmp_path / "run", "--input", semicolons, "--output", tmp_path / "b.csv", "--metrics-json",
          tmp_path / "b.json")
    plain, commas = (json.loads((tmp_path / f"{k}.json").read_text()) for k in "ab")
    assert commas["mae"] == pytest.approx(plain["mae"], rel=1e-6) and commas["r2"] > 0.5


def test_importance_on_a_model_folder_that_predates_its_target_column_says_to_retrain(tmp_path):
    from pathlib import Path

    old = Path(__file__).parent / "fixtures" / "config_format4" / "cls"
    message = infer_error("--ckpt-dir", old, "--input", old / "rows.csv", "--output", tmp_path / "p.csv",
                          "--importance")
    assert "before model folders named their target column" in message and "retrain" in message


@pytest.mark.parametrize("order, row", [("C", 151), ("F", 129)])
def test_an_array_cut_short_while_it_is_read_is_one_line_not_a_bus_error(tmp_path, order, row):
    """Read through a memory map, a .npy cut short by another program ended the process by
    SIGBUS; read block by block, the short read is named by its row (in Fortran order the cut
    takes the last two columns whole: the second block stops at its first row)."""
    from common.errors import UserError
    from common.serve.inputs import array_blocks

    X = np.asarray(np.arange(300 * 4, dtype=np.float32).reshape(300, 4), order=order)
    np.save(tmp_path / "rows.npy", X)
    header = np.load(tmp_path / "rows.npy", mmap_mode="r")
    blocks = array_blocks(str(tmp_path / "rows.npy"), header, 128)
    start, first = next(blocks)
    assert start == 0 and np.array_equal(first, X[:128])
    size = (tmp_path / "rows.npy").stat().st_size
    os.truncate(tmp_path / "rows.npy", size - 150 * 4 * 4)  # the file's last 150 rows' worth
    with pytest.raises(UserError, match=rf"rows.npy was cut short while it was read \(at row {row} of 300\)"):
        next(blocks)


def test_an_array_predicts_the_same_in_either_memory_order(small_model, small_cls, tmp_path):
    """A C-ordered array is read a block of rows at a time, a Fortran-ordered one a column's part at a time."""
    X = np.load(small_cls / "X_test.npy")[:300]
    for order in "CF":
        np.save(tmp_path / f"{order}.npy", np.asarray(X, order=order))
        infer("--ckpt-dir", small_model, "--input", tmp_path / f"{order}.npy", "--output", tmp_path / f"{order}.npz",
              "--batch-size", "128")
    assert np.load(tmp_path / "F.npy", mmap_mode="r").flags.f_contiguous
    with np.load(tmp_path / "C.npz") as rows, np.load(tmp_path / "F.npz") as columns:
        assert np.array_equal(rows["proba"], columns["proba"]) and len(rows["proba"]) == 300


def test_values_the_model_has_no_level_for_are_counted_in_a_note(crossfit_run, tmp_path, capsys):
    """A new city, and a blank in a true/false column that had none in training: the unknown level,
    said once per column with one of the values (a blank city is a level training learned)."""
    write(tmp_path / "new.csv", {"city": ["atlantis", "oslo", "atlantis", None, "rome"],
                                 "member": [True, None, False, True, True],
                                 "age": [30.0, 40.0, 50.0, 60.0, 45.0]})
    infer("--ckpt-dir", crossfit_run / "run", "--input", tmp_path / "new.csv", "--output", tmp_path / "p.csv")
    said = " ".join(capsys.readouterr().out.split())
    assert "column 'city' had 2 cell(s) with values the model has no level for ('atlantis' among them" in said
    assert "column 'member' had 1 cell(s) with values the model has no level for (a blank among them" in said
    assert len(read_csv_rows(tmp_path / "p.csv")) == 5


def test_a_value_that_is_a_level_but_for_its_spaces_is_said_to_be_one(crossfit_run, tmp_path, capsys):
    """Training's levels read from `a, b` (with spaces) and new rows written `a,b`: the note said
    the values were new or rare, nothing about the spaces."""
    write(tmp_path / "new.csv", {"city": ["atlantis", " oslo", "oslo ", " oslo"], "member": [True, False] * 2,
                                 "age": [30.0, 40.0] * 2})
    infer("--ckpt-dir", crossfit_run / "run", "--input", tmp_path / "new.csv", "--output", tmp_path / "p.csv")
    said = " ".join(capsys.readouterr().out.split())
    assert ("column 'city' had 4 cell(s) with values the model has no level for ('atlantis' among them: new, too rare "
            "in training, or past make_data.py's --max-levels): read as its unknown level; 3 of them are levels but "
            "for the spaces around them (' oslo' is 'oslo' there)") in said


@pytest.mark.parametrize("target", ["run/config.json", "run/model.safetensors", "run/metrics.jsonl", "rows.csv",
                                    "p.csv", "data/dataset.json", "data/X_train.npy", "run/epoch_1/optimizer.bin",
                                    "run/epoch_1/trainer_state.json"])
def test_metrics_json_never_replaces_the_model_the_data_set_the_input_or_the_output(small_model, small_cls, tmp_path,
                                                                                  target):
    run, data = tmp_path / "run", tmp_path / "data"
    shutil.copytree(small_model, run)
    shutil.copytree(small_cls, data)
    (run / "epoch_1").mkdir()  # a checkpoint's files beside its state
    (run / "epoch_1" / "trainer_state.json").write_text("{}")
    (run / "epoch_1" / "optimizer.bin").write_bytes(b"state")
    X = np.load(small_cls / "X_test.npy")[:5]
    write(tmp_path / "rows.csv", {f"x{i}": X[:, i] for i in range(10)})
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "p.csv"]
    before = {p: p.read_bytes() for p in files}
    message = user_error(infer_script.main, "--ckpt-dir", run, "--input", tmp_path / "rows.csv",
                         "--output", tmp_path / "p.csv", "--metrics-json", tmp_path / target)
    assert message.startswith(f"--metrics-json {tmp_path / target} is "), message
    assert {p: p.read_bytes() for p in files} == before


@pytest.mark.parametrize("target", ["run/model.safetensors", "run/config.json", "data/X_test.npy", "data/dataset.json"])
def test_output_through_a_link_never_replaces_a_models_or_a_data_sets_file(small_model, small_cls, tmp_path, target):
    """`--output preds.csv` where preds.csv links to a model's weights: the link was followed and
    the weights replaced by predictions; --metrics-json refused the same link."""
    run, data = tmp_path / "run", tmp_path / "data"
    shutil.copytree(small_model, run)
    shutil.copytree(small_cls, data)
    np.save(tmp_path / "rows.npy", np.load(small_cls / "X_test.npy")[:5])
    (tmp_path / "preds.csv").symlink_to(tmp_path / target)
    before = (tmp_path / target).read_bytes()
    message = user_error(infer_script.main, "--ckpt-dir", run, "--input", tmp_path / "rows.npy",
                         "--output", tmp_path / "preds.csv")
    assert message.startswith(f"--output {tmp_path / 'preds.csv'} is a file of the model, checkpoint or data set"), \
        message
    assert (tmp_path / target).read_bytes() == before
    infer("--ckpt-dir", run, "--input", tmp_path / "rows.npy", "--output", run / "mine.csv")  # the user's own file
    assert len(read_csv_rows(run / "mine.csv")) == 5


def test_metrics_json_may_replace_a_json_of_the_users_in_a_model_folder_and_not_the_data_set_it_scores(
        small_model, small_cls, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(small_model, run)
    (run / "eval.json").write_text("{}")  # an earlier evaluation's figures
    infer("--ckpt-dir", run, "--data", small_cls, "--metrics-json", run / "eval.json")
    assert "accuracy" in json.loads((run / "eval.json").read_text())
    (tmp_path / "set.npz").write_bytes(b"a data set of the earlier single-file form")
    message = user_error(infer_script.main, "--ckpt-dir", run, "--data", tmp_path / "set.npz",
                         "--metrics-json", tmp_path / "set.npz")
    assert message.startswith(f"--metrics-json {tmp_path / 'set.npz'} is the data set"), message


def test_metrics_json_to_a_stream_never_asks_to_write_in_its_folder(small_model, small_cls, tmp_path, monkeypatch):
    """/dev/stdout's folder is /dev, where no user but root may make a file: the figures are
    written into the stream, so its folder is not checked."""
    import threading

    from common.errors import UserError

    def unwritable(folder):
        raise UserError(f"cannot write in {folder}")

    monkeypatch.setattr(infer_script, "check_writable", unwritable)
    pipe = tmp_path / "figures"
    os.mkfifo(pipe)
    got = []
    reader = threading.Thread(target=lambda: got.append(pipe.read_text()))
    reader.start()
    infer("--ckpt-dir", small_model, "--data", small_cls, "--metrics-json", pipe)
    reader.join(timeout=30)
    assert "accuracy" in json.loads(got[0])
    assert user_error(infer_script.main, "--ckpt-dir", small_model, "--data", small_cls, "--metrics-json",
                      tmp_path / "m.json") == f"cannot write in {tmp_path}"


def test_model_outputs_read_any_array_of_rows_as_a_copy_of_it_and_leave_it_as_it_was(small_model, tmp_path):
    """A batch's own float32 rows go to the forward pass as they are; a memory-mapped, read-only,
    column-major or float64 array of the same rows gives the same bits, and none is changed."""
    from common.model_folder import load_model_dir
    from common.serve.predict import model_outputs

    config, model = load_model_dir(str(small_model))
    X = np.random.default_rng(1).standard_normal((300, 10)).astype(np.float32)
    expected = model_outputs(model, X.copy(), 64, config)
    np.save(tmp_path / "rows.npy", X)
    read_only = X.copy()
    read_only.flags.writeable = False
    mapped = np.load(tmp_path / "rows.npy", mmap_mode="r")
    for rows in (X, mapped, read_only, np.asfortranarray(X), X.astype(np.float64)):
        before = np.array(rows)
        np.testing.assert_array_equal(model_outputs(model, rows, 64, config), expected)
        np.testing.assert_array_equal(rows, before)
