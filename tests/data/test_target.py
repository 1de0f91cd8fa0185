"""The target of a user's table: the task it makes, and how a regression's y is modelled
(common/data/target.py), and the target step that inverts it (common/steps.TargetStep)."""
import json

import numpy as np
import pytest

import make_data as make_data_script
from builders import count_table, infer, make_data, read_csv_rows, read_metrics, train, user_error, write
from common.data.dataset import load_dataset
from common.data.target import looks_like_counts, target_transform
from common.errors import UserError
from common.schema import Fields
from common.steps import TargetStep


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
    ([2364, 3935, 3545, 2274, 1153, 475, 182, 63, 13, 8], True),  # a home team's goals (skewness 0.9)
])
def test_whole_numbers_skewed_like_counts_are_a_regression(frequencies, counts):
    assert looks_like_counts(COUNTS, np.array(frequencies)) is counts


def test_few_or_negative_whole_numbers_stay_classes():
    assert not looks_like_counts(np.arange(3.0), np.array([900, 50, 50]))  # an imbalanced class code
    assert not looks_like_counts(COUNTS - 5, np.array([500, 200, 100, 60, 40, 30, 20, 10, 5, 3]))



def test_a_skewed_count_target_is_modelled_on_log_scale_and_predicted_in_range(tmp_path, capsys):
    visits = count_table(tmp_path / "counts.csv")
    assert target_transform(visits.astype(float)) == "log_link"
    assert target_transform(np.linspace(-1, 1, 50)) == "none"  # negatives: as it is
    make_data("--csv", tmp_path / "counts.csv", "--target", "visits", "--out-dir", tmp_path)
    assert "modelled through a log link" in " ".join(capsys.readouterr().out.split())  # said, as defaults are
    data = load_dataset(tmp_path / "counts")
    target = data.description.target
    assert (target.transform, target.low, target.high) == ("log_link", float(visits.min()), float(visits.max()))
    assert target.scale == pytest.approx(visits.mean())  # y / its mean: outputs start near log 1
    back = target.original(data.y_train, prediction=False)
    np.testing.assert_allclose(np.sort(back[:, 0]), np.sort(visits), rtol=1e-5)
    train("--data", tmp_path / "counts", "--ckpt-dir", tmp_path / "run", "--epochs", "6")
    write(tmp_path / "new.csv", {"x": [-30.0, 0.0, 30.0], "shop": ["b", "a", "a"]})  # far outside training
    infer("--ckpt-dir", tmp_path / "run", "--input", tmp_path / "new.csv", "--output", tmp_path / "p.csv")
    predicted = [float(r["prediction"]) for r in read_csv_rows(tmp_path / "p.csv")]
    assert all(visits.min() <= p <= visits.max() for p in predicted)  # never a negative count
    record = read_metrics(tmp_path / "run")[-1]
    assert {"val_r2", "val_mae"} <= record.keys() and "train_r2" not in record  # out of fold, on the original scale
    card = " ".join((tmp_path / "run" / "README.md").read_text().split())
    assert "(a number, modelled as the exponential of the network's output: a log link) from 2 columns of" in card


@pytest.mark.parametrize("choice", ["log1p", "none"])
def test_a_chosen_target_transform_round_trips_and_a_negative_target_refuses_a_log(tmp_path, choice):
    visits = count_table(tmp_path / "counts.csv")
    make_data("--csv", tmp_path / "counts.csv", "--target", "visits", "--target-transform", choice,
              "--out-dir", tmp_path)
    data = load_dataset(tmp_path / "counts")
    assert data.description.target.transform == choice
    back = data.description.target.original(data.y_train, prediction=False)
    np.testing.assert_allclose(np.sort(back[:, 0]), np.sort(visits), rtol=1e-4, atol=1e-3)
    write(tmp_path / "signed.csv", {"x": np.arange(50.0) % 7, "y": np.arange(50.0) - 10})
    message = user_error(make_data_script.main, "--csv", tmp_path / "signed.csv", "--target", "y",
                         "--target-transform", "log_link", "--out-dir", tmp_path)
    assert "never negative" in message and "--target-transform none" in message


def test_a_skewed_target_with_one_negative_value_anywhere_is_modelled_as_it_is(tmp_path):
    rng = np.random.default_rng(4)
    y = rng.lognormal(0.0, 1.0, 400)
    y[-1] = -0.5  # one row, in whichever split: under a log link its loss would be NaN
    write(tmp_path / "skewed.csv", {"x": rng.normal(size=400), "y": y})
    make_data("--csv", tmp_path / "skewed.csv", "--target", "y", "--test-size", "0.2", "--out-dir", tmp_path)
    assert load_dataset(tmp_path / "skewed").description.target.transform == "none"



@pytest.mark.parametrize("transform", ["none", "log1p", "log_link"])
def test_a_target_step_inverts_what_it_models_and_clips_predictions_to_its_range(transform):
    y = np.array([0.0, 1.0, 3.0, 40.0])
    step = TargetStep(transform, 0.5, 2.0, 0.0, 40.0)
    stored = step.forward(y)
    np.testing.assert_allclose(step.original(stored, prediction=False), y, atol=1e-12)
    far = np.array([1e3, -1e3])  # outputs far outside training: predictions within the range
    predicted = step.original(far)
    assert predicted.max() == 40.0 and predicted.min() >= 0.0
    if step.link:  # the model's output is log E[y / scale] - mean: exp, then the scaling
        np.testing.assert_allclose(step.original(np.log([1.0, 2.0])), [2.5, 4.5])


def test_a_target_step_reads_what_it_writes_and_refuses_half_a_range():
    step = TargetStep("log_link", 0.0, 3.5, 0.0, 12.0)
    assert TargetStep.read(Fields({"target": step.to_json()}, "t.json", "fix")) == step
    unclipped = TargetStep("none", 1.0, 2.0)
    assert TargetStep.read(Fields({"target": unclipped.to_json()}, "t.json", "fix")) == unclipped
    with pytest.raises(UserError, match="one end of the target's range"):
        TargetStep.read(Fields({"target": {**unclipped.to_json(), "low": 0.0}}, "t.json", "fix"))
    with pytest.raises(UserError, match="range from 3.0 down to 1.0"):
        TargetStep.read(Fields({"target": {**unclipped.to_json(), "low": 3.0, "high": 1.0}}, "t.json", "fix"))


@pytest.mark.parametrize("alone, refused", [(400, True), (361, True), (359, False)])
def test_an_id_given_as_the_target_is_refused_and_a_long_tail_of_classes_is_not(tmp_path, alone, refused):
    """A class for nearly every row (an id, free text: over 90% of the rows alone in theirs) is
    refused in one line, unless --task classification asks for it; 41 rows shared out among a few
    classes and the rest alone is a long tail, and stays classes."""
    rows = 400
    shared = np.arange(rows - alone) % 7 if alone < rows else np.array([], dtype=int)
    labels = [f"p{k}" for k in shared] + [f"c{i:05d}" for i in range(alone)]
    write(tmp_path / "t.csv", {"x": np.arange(rows) % 13 + 0.5, "who": labels})
    argv = ["--csv", tmp_path / "t.csv", "--target", "who", "--out-dir", tmp_path / "out"]
    if refused:
        message = user_error(make_data_script.main, *argv)
        assert f"target column 'who' has {alone + len(set(shared)):,} classes" in message and "an id" in message
        assert "--task classification" in message and not (tmp_path / "out" / "t").exists()
        make_data(*argv, "--task", "classification")  # the way out it names
    else:
        make_data(*argv)
    assert len(load_dataset(tmp_path / "out" / "t").description.class_labels) == alone + len(set(shared))


def test_a_target_of_numbers_written_two_ways_is_said_as_such_not_taken_for_an_id(tmp_path):
    """Amounts that read as text because one is written another way (`2.5` among `8.000,00` in a
    semicolon file) make an id's many classes: the refusal names the odd value and the ways out,
    --task regression or one way of writing them."""
    amounts = np.round(np.random.default_rng(0).uniform(1_000, 9_000, 300), 2)
    cells = [f"{v:,.2f}".replace(",", "_").replace(".", ",").replace("_", ".") for v in amounts]
    lines = [f"{i % 7};{cell}" for i, cell in enumerate(cells)] + ["1;2.5"]
    (tmp_path / "t.csv").write_text("\n".join(["x;amount", *lines]) + "\n")
    message = user_error(make_data_script.main, "--csv", tmp_path / "t.csv", "--target", "amount",
                         "--out-dir", tmp_path / "out")
    assert "such as '2.5'" in message and "--task regression" in message and "an id" not in message, message


def test_a_target_of_lists_or_of_dates_is_said_as_such(tmp_path):
    """A list column names nothing to predict; a date column is a regression or classes only as
    --task says: each refused in one line naming the column and the way out."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    x = np.random.default_rng(0).normal(size=300)
    days = np.datetime64("2020-01-01") + (np.arange(300) % 97).astype("timedelta64[D]")
    pq.write_table(pa.table({"x": x, "tags": pa.array([[1, 2]] * 300), "day": pa.array(days),
                             "y": np.where(x > 0, "p", "q")}), tmp_path / "t.parquet")
    argv = ["--csv", tmp_path / "t.parquet", "--out-dir", tmp_path / "out"]
    listed = user_error(make_data_script.main, *argv, "--target", "tags")
    assert "'tags' holds list" in listed and "choose another --target" in listed, listed
    dated = user_error(make_data_script.main, *argv, "--target", "day")
    assert "'day' holds dates" in dated and "--task regression" in dated, dated
    assert not (tmp_path / "out" / "t").exists()
    make_data(*argv, "--target", "day", "--task", "regression")  # a way out it names
    assert load_dataset(tmp_path / "out" / "t").description.target.instants
    # An id is carried into the predictions as text, which a list has not.
    carried = user_error(make_data_script.main, *argv, "--target", "y", "--id", "tags", "--out-dir", tmp_path / "o2")
    assert "--id tags holds list" in carried and "leave it out of --id" in carried
    assert not (tmp_path / "o2" / "t").exists()


def test_a_regression_on_a_target_of_words_names_its_words_not_a_cell(tmp_path):
    """--task regression on a column of classes said "fix that cell" of its first row, as if the
    column held amounts with one typo. A target mostly of numbers still reads its odd cell so."""
    x = np.random.default_rng(0).normal(size=300)
    write(tmp_path / "t.csv", {"x": x, "y": np.array(["low", "mid", "high"] * 100)})
    argv = ["--csv", tmp_path / "t.csv", "--target", "y", "--task", "regression", "--out-dir", tmp_path / "out"]
    message = user_error(make_data_script.main, *argv)
    assert "'y' holds words ('low', 'mid', 'high')" in message and "leave out --task" in message, message
    assert "fix that cell" not in message and not (tmp_path / "out" / "t").exists()
    write(tmp_path / "t.csv", {"x": x, "y": np.array(["1.5", "2.5"] * 149 + ["3", "n/q"])})
    assert "fix that cell" in user_error(make_data_script.main, *argv)


def test_classes_written_with_leading_zeros_keep_them(tmp_path):
    """`007` read as the number 7: the predictions said 7, and the model's own file, scored,
    held labels it never saw (accuracy 0). Codes are classes named as written; --task
    regression still reads them as amounts."""
    a = np.random.default_rng(12).normal(size=600)
    codes = np.where(a > 0.5, "007", np.where(a < -0.5, "010", "001"))
    (tmp_path / "t.csv").write_text("a,y\n" + "".join(f"{x:.4f},{c}\n" for x, c in zip(a, codes, strict=True)))
    make_data("--csv", tmp_path / "t.csv", "--target", "y", "--out-dir", tmp_path / "data")
    assert load_dataset(tmp_path / "data" / "t").description.class_labels == ["001", "007", "010"]
    import gzip

    (tmp_path / "z.csv.gz").write_bytes(gzip.compress((tmp_path / "t.csv").read_bytes()))  # read through its stream
    make_data("--csv", tmp_path / "z.csv.gz", "--target", "y", "--out-dir", tmp_path / "data")
    assert load_dataset(tmp_path / "data" / "z").description.class_labels == ["001", "007", "010"]
    train("--data", tmp_path / "data" / "t", "--ckpt-dir", tmp_path / "run", "--epochs", "4")
    infer("--ckpt-dir", tmp_path / "run", "--input", tmp_path / "t.csv", "--output", tmp_path / "p.csv",
          "--metrics-json", tmp_path / "m.json")
    assert {row["prediction"] for row in read_csv_rows(tmp_path / "p.csv")} <= {"001", "007", "010"}
    figures = json.loads((tmp_path / "m.json").read_text())
    assert figures["accuracy"] > 0.9 and figures["unseen_labels"] == []
    make_data("--csv", tmp_path / "t.csv", "--target", "y", "--task", "regression", "--out-dir", tmp_path / "amounts")
    assert load_dataset(tmp_path / "amounts" / "t").description.task == "regression"
    # as text in a Parquet file (a DataFrame's strings, as fit writes them): the same classes
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": a, "y": pa.array(codes, pa.large_string())}), tmp_path / "t.parquet")
    make_data("--csv", tmp_path / "t.parquet", "--target", "y", "--out-dir", tmp_path / "parquet")
    assert load_dataset(tmp_path / "parquet" / "t").description.class_labels == ["001", "007", "010"]
    # hundreds of values written to a fixed width are amounts: still a regression
    padded = (np.abs(a) * 100 + 20).astype(int)
    (tmp_path / "p.csv").write_text("a,y\n" + "".join(f"{x:.4f},{v:05d}\n" for x, v in zip(a, padded, strict=True)))
    make_data("--csv", tmp_path / "p.csv", "--target", "y", "--out-dir", tmp_path / "padded")
    assert load_dataset(tmp_path / "padded" / "p").description.task == "regression"


def test_target_values_far_out_are_named_and_a_skewed_target_is_not(tmp_path, capsys):
    """Five values near 1e6 among values near 10 got a log link and a model worse than a constant,
    with nothing said when the data set was made."""
    rng = np.random.default_rng(5)
    y = 10 + rng.normal(size=500)
    y[:3] = [1e6, -5e5, 2e6]
    write(tmp_path / "far.csv", {"x": rng.normal(size=500), "y": y})
    make_data("--csv", tmp_path / "far.csv", "--target", "y", "--out-dir", tmp_path)
    far = json.loads((tmp_path / "far" / "dataset.json").read_text())["source"]["target_far_values"]
    assert (far["rows"], far["farthest"]) == (3, 2e6) and 9 < far["median"] < 11
    assert "Note: 3 training target value(s) lie over a thousand times" in " ".join(capsys.readouterr().out.split())
    count_table(tmp_path / "counts.csv")  # skewed, a long tail: not far out
    make_data("--csv", tmp_path / "counts.csv", "--target", "visits", "--out-dir", tmp_path)
    assert "target_far_values" not in json.loads((tmp_path / "counts" / "dataset.json").read_text())["source"]
