"""The Python API (common/api.py): Predictor on rows in every form a program holds them, the same
predictions as infer.py to the last bit, fit() on the scripts' own path, and the scikit-learn
estimators."""
from __future__ import annotations

import contextlib
import json
import math
import threading
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest

from builders import infer, make_data, people, train, write
from common.api import Predictor, fit
from common.decision import decided_classes
from common.errors import UserError
from common.serve.inputs import InputNotes, arrow_rows, python_inputs, table_inputs


@pytest.fixture(scope="module")
def model(crossfit_run):
    return Predictor.load(crossfit_run / "run")


@pytest.fixture(scope="module")
def rows(crossfit_run):
    """The people table's rows as infer.py reads them, and infer.py's probabilities of them (.npz: every bit)."""
    table = pa_csv.read_csv(crossfit_run / "people.csv")
    infer("--ckpt-dir", crossfit_run / "run", "--input", crossfit_run / "people.csv",
          "--output", crossfit_run / "api.npz")
    return table, np.load(crossfit_run / "api.npz")["proba"]


def form_of(table: pa.Table, form: str):
    """`table`'s rows as a user may hold them. pandas is not the suite's: without it (a machine set
    up with requirements.txt alone) the DataFrame's form is skipped, the others run."""
    columns = table.to_pydict()
    if form == "pandas":
        return pytest.importorskip("pandas", reason="pip install -r requirements-dev.txt").DataFrame(columns)
    return {
        "arrow table": table, "record batch": table.combine_chunks().to_batches()[0],
        "dict of columns": columns, "list of row dicts": table.to_pylist(),
        "NaN for blanks": {name: [math.nan if v in (None, "") else v for v in values]
                           for name, values in columns.items()},
        "columns shuffled, one extra": table.select(table.column_names[::-1]).append_column(
            "unused", pa.array(["z"] * table.num_rows)),
    }[form]


def test_what_a_loaded_model_says_of_itself(model):
    assert model.task == "classification" and model.classes == ["high", "low"] and model.target == "label"
    assert sorted(model.feature_names) == ["age", "city", "member"]


@pytest.mark.parametrize("form", ["arrow table", "record batch", "pandas", "dict of columns", "list of row dicts",
                                  "NaN for blanks", "columns shuffled, one extra"])  # NaN: pandas' to_dict()
def test_every_form_of_rows_gives_infer_pys_probabilities_to_the_last_bit(model, rows, form):
    table, theirs = rows
    ours = model.predict_proba(form_of(table, form))
    assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)
    decided = decided_classes(theirs, model.record.threshold)  # the model's own decision, a threshold or not
    assert list(model.predict(form_of(table, form))) == [model.classes[k] for k in decided]


def test_a_files_path_is_read_as_infer_py_reads_it(model, rows, crossfit_run, tmp_path):
    """fit takes a file's path: so do predict, predict_proba and evaluate, with infer.py's bits."""
    import pyarrow.parquet as pq

    table, theirs = rows
    csv = crossfit_run / "people.csv"
    pq.write_table(table, tmp_path / "people.parquet")
    for path in (csv, str(csv), tmp_path / "people.parquet"):
        assert np.array_equal(model.predict_proba(path), theirs)
    assert list(model.predict(csv)) == list(model.predict(table))
    assert model.evaluate(csv) == model.evaluate(table)
    with pytest.raises(UserError, match="rows .*absent.csv not found: check the path"):
        model.predict(tmp_path / "absent.csv")


def test_what_infer_py_notes_of_the_rows_the_api_warns(model, rows, crossfit_run, tmp_path, capsys):
    """A city the model has no level for: infer.py says so; the API said nothing."""
    import warnings

    from common.errors import InputNote

    table, _ = rows
    odd = table.slice(0, 3).set_column(table.column_names.index("city"), "city", pa.array(["atlantis"] * 3))
    pa_csv.write_csv(odd, tmp_path / "odd.csv")
    infer("--ckpt-dir", crossfit_run / "run", "--input", tmp_path / "odd.csv", "--output", tmp_path / "odd.npz")
    printed = " ".join(capsys.readouterr().out.split())
    for form in (odd, odd.to_pylist()[0]):  # the Arrow path, and a row of Python values
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.predict(form)
        said = [str(w.message) for w in caught if w.category is InputNote]
        assert len(said) == 1 and "column 'city' had" in said[0] and "'atlantis' among them" in said[0], said
        assert caught[0].filename == __file__  # the caller's line
        assert f"Note: {said[0].replace('1 cell(s)', '3 cell(s)')}" in printed  # the words infer.py printed


def test_a_row_alone_is_predicted_as_among_many(model, rows):
    """One row's pass takes another kernel in torch: it must not change the row's prediction."""
    table, theirs = rows
    for i in (0, 7, 311):
        row = table.slice(i, 1).to_pylist()[0]
        assert np.array_equal(model.predict_proba(row)[0], theirs[i])


def test_a_few_python_rows_read_as_the_arrow_path_reads_them(model):
    """python_inputs skips Arrow for a request's few rows: every value kind it takes must give the
    inputs the Arrow path gives (numbers, blanks as None, NaN or a missing spelling, booleans,
    integers and floats in a text column, levels never seen)."""
    pre = model.record.preprocess
    rng = np.random.default_rng(0)
    cities = ["oslo", "paris", "rome", "lima", None, "", "NA", "?"]
    for _ in range(40):
        n = int(rng.integers(1, 6))
        rows = [{"age": [None, float("nan"), 3, 41.5, np.float32(2.5), np.int64(7)][int(rng.integers(6))],
                 "city": cities[int(rng.integers(len(cities)))],
                 "member": [True, False, None][int(rng.integers(3))], "other": "x"} for _ in range(n)]
        fast = python_inputs(rows, pre, InputNotes(pre))
        slow = table_inputs(arrow_rows(rows, pre), pre, "rows", 0, InputNotes(pre))[0]
        assert fast is not None and np.array_equal(fast, slow, equal_nan=True), rows
    mixed = [{"age": "41", "city": "oslo", "member": True}]  # text in a numeric column: the Arrow path reads it
    assert python_inputs(mixed, pre, InputNotes(pre)) is None and model.predict(mixed).shape == (1,)


def test_row_dicts_lacking_a_key_read_alike_a_few_or_many(model, rows):
    """A key a row lacks is a blank in that row, whichever row lacks it (the first too), in a
    short list (read directly) and a long one (read through Arrow)."""
    from common.serve.inputs import FAST_ROWS

    table, _ = rows
    records = table.slice(0, FAST_ROWS + 10).to_pylist()
    for row in (0, 5):
        gapped = [dict(r) for r in records]
        del gapped[row]["age"]
        blank = [dict(r) for r in records]
        blank[row]["age"] = None
        expected = model.predict_proba(blank)
        assert np.array_equal(model.predict_proba(gapped), expected)
        assert np.array_equal(model.predict_proba(gapped[:8]), expected[:8])


def test_predict_proba_gives_rows_of_probabilities_in_row_major_order(model, rows):
    """Whatever the rows' count (a whole block of 32 or not), predict_proba's array is its own and
    row-major, as NumPy users and C extensions take it; its values are infer.py's."""
    table, theirs = rows
    for count in (1, 32, 33, 100):
        proba = model.predict_proba(table.slice(0, count))
        assert proba.flags.c_contiguous and proba.flags.owndata and proba.shape == (count, 2)
        assert np.array_equal(proba, theirs[:count])


def test_columns_the_model_never_reads_are_no_reason_to_refuse_rows(model, rows):
    """A list in an unused column of one row's dict (which read it as columns), and a map
    column pandas cannot hand to Arrow: the rows are predicted as without them, as infer.py does."""
    table, theirs = rows
    row = {**table.slice(3, 1).to_pylist()[0], "tags": [1, 2], "notes": {"a": 1}}
    assert np.array_equal(model.predict_proba(row), theirs[3:4])
    pd = pytest.importorskip("pandas", reason="pip install -r requirements-dev.txt")
    kv = pa.array([[("k", 1)]] * table.num_rows, type=pa.map_(pa.string(), pa.int64()))
    frame = table.append_column("kv", kv).to_pandas()
    assert isinstance(frame, pd.DataFrame) and np.array_equal(model.predict_proba(frame), theirs)
    assert np.array_equal(model.predict_proba(frame.iloc[5]), theirs[5:6])


def test_whole_numbers_past_64_bits_read_in_python_values_as_in_arrow(model):
    """A uint64 column's values of 2**63 and more in a dict of columns read as the same floats
    an Arrow column of them gives; a column pyarrow cannot read is named."""
    huge = [2**63 + 5, 40]
    given = {"age": huge, "city": ["oslo", "rome"], "member": [True, False]}
    typed = pa.table({**given, "age": pa.array(huge, pa.uint64())})
    assert np.array_equal(model.predict_proba(given), model.predict_proba(typed))
    with pytest.raises(UserError, match="column 'age'"):
        model.predict_proba({**given, "age": [2**64, "x"]})


def test_a_one_row_dict_may_hold_any_kind_of_value(tmp_path):
    """A date or a Decimal is one row's value, not a column."""
    import datetime as dt
    from decimal import Decimal

    columns = {"when": pa.array([dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(60)]),
               "amount": pa.array([Decimal(i) for i in range(60)], pa.decimal128(6, 0)),
               "y": ["a" if i % 2 else "b" for i in range(60)]}
    model = fit(pa.table(columns), "y", out_dir=str(tmp_path), ckpt_dir=str(tmp_path / "run"), quiet=True,
                epochs=2, folds=2, pictures=False)
    row = {"when": dt.date(2020, 1, 5), "amount": Decimal(4)}
    assert np.array_equal(model.predict_proba(row), model.predict_proba([row]))
    assert np.array_equal(model.predict_proba(row), model.predict_proba(pa.table(columns).slice(4, 1)))


@pytest.mark.parametrize("rows,words", [
    ([], ["no rows given"]),
    ({"age": [], "city": [], "member": []}, ["no rows given"]),
    ({"age": [40.0], "city": ["oslo"]}, ["the table given lacks column(s) ['member']: "]),
    ({"age": [40.0], "city": ["oslo"], "Member ": [True]},
     ["lacks column(s) ['member'] (it has ['Member ']: names differ in spaces or case)"]),
    ({"age": [40.0, 41.0], "city": ["oslo"], "member": [True]}, ["different numbers of values"]),
    ({"age": 40.0, "city": "oslo", "member": [True]}, ["mix single values (column 'age')", "(column 'member')"]),
    (np.zeros((2, 3)), ["NumPy array cannot hold", "city"]),
    (42, ["rows of type int"]),
])
def test_rows_that_cannot_be_predicted_are_one_line(model, rows, words):
    with pytest.raises(UserError) as info:
        model.predict(rows)
    assert all(w in str(info.value) for w in words) and "\n" not in str(info.value)


def test_an_all_numeric_model_takes_an_array(small_model, small_cls, tmp_path):
    from common.data.dataset import load_dataset

    model = Predictor.load(small_model)
    X = np.random.default_rng(0).normal(size=(5, 10))
    by_name = {f"x{i}": X[:, i] for i in range(10)}
    assert np.array_equal(model.predict_proba(X), model.predict_proba(by_name))
    np.save(tmp_path / "five.npy", X)  # an array file, as infer.py reads one
    assert np.array_equal(model.predict_proba(tmp_path / "five.npy"), model.predict_proba(X))
    (tmp_path / "empty.npy").write_bytes(b"")  # and refused as infer.py refuses it, where it was a traceback
    np.save(tmp_path / "objects.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    for name, said in (("empty.npy", "cannot read"), ("objects.npy", "cannot read")):
        with pytest.raises(UserError, match=said):
            model.predict(tmp_path / name)
    assert model.predict(X[0]).shape == (1,) and load_dataset(small_cls).task == model.task
    figures = model.evaluate(X, target=np.array([0, 1, 2, 0, 1]))
    assert figures["labels"] == model.classes == [0, 1, 2]  # as the predictions give them, not as text


def test_several_threads_at_once_get_what_one_gets(model, rows):
    table, theirs = rows
    slices = [table.slice(i * 60, 60) for i in range(8)]
    got: dict[int, np.ndarray] = {}

    def work(i):
        for _ in range(5):
            got[i] = model.predict_proba(slices[i] if i % 2 else slices[i].to_pylist()[:40])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(8):
        expected = theirs[i * 60:(i + 1) * 60] if i % 2 else theirs[i * 60:i * 60 + 40]
        assert np.array_equal(got[i], expected)


def test_figures_and_importance_on_labelled_rows(model, rows):
    table, theirs = rows
    figures = model.evaluate(table)
    predicted = np.asarray(model.classes)[decided_classes(theirs, model.record.threshold)]
    truth = np.asarray(table.column("label").to_pylist())
    assert figures["accuracy"] == pytest.approx((predicted == truth).mean(), abs=1e-12)
    assert figures["rows_scored"] == 500 and figures["rows_without_target"] == 0
    importance = model.feature_importance(table, repeats=2)
    assert {c.column for c in importance.columns} == {"age", "city", "member"} and importance.rows == 500
    blanked = table.set_column(table.column_names.index("label"), "label",
                               pa.array([None if i % 5 == 0 else v for i, v in enumerate(truth)]))
    assert model.evaluate(blanked)["rows_without_target"] == 100
    assert model.evaluate(table.drop(["label"]), target=truth)["accuracy"] == figures["accuracy"]
    # a blank among the labels given as values, as pandas holds one (NaN), was an Arrow traceback
    gapped = np.array([math.nan if i % 5 == 0 else v for i, v in enumerate(truth)], dtype=object)
    assert model.evaluate(table.drop(["label"]), target=gapped)["rows_without_target"] == 100
    assert model.feature_importance(table.drop(["label"]), target=gapped, repeats=1).rows == 400


def test_importance_is_scikit_learns_on_the_same_model_and_rows():
    from sklearn.inspection import permutation_importance

    from common.api import TabularClassifier

    data = people(rows=300, seed=5)
    X = {name: np.asarray(pa.array(data[name]).to_pylist(), dtype=float if name == "age" else object)
         for name in ("city", "member", "age")}
    pd = pytest.importorskip("pandas", reason="pip install -r requirements-dev.txt")  # scikit-learn's own frame
    frame = pd.DataFrame(X).astype({"member": bool})
    y = np.asarray(data["label"])
    estimator = TabularClassifier(epochs=3, folds=2).fit(frame, y)
    theirs = permutation_importance(estimator, frame, y, scoring="f1_macro", n_repeats=3, random_state=4)
    ours = estimator.model_.feature_importance(frame, y, repeats=3, seed=4)
    by_name = {c.column: c for c in ours.columns}
    for i, name in enumerate(frame.columns):
        np.testing.assert_allclose(by_name[name].drops, theirs.importances[i], rtol=0, atol=1e-12)


def test_fit_is_make_data_and_train_on_the_same_rows(tmp_path):
    """fit() from a table in memory and the two scripts on that table as a file: the same model, bit for bit."""
    import pyarrow.parquet as pq

    table = pa.table(people(rows=200, seed=2))
    pq.write_table(table, tmp_path / "people.parquet")
    make_data("--csv", tmp_path / "people.parquet", "--target", "label", "--out-dir", tmp_path / "scripts")
    train("--data", tmp_path / "scripts" / "people", "--ckpt-dir", tmp_path / "scripts_run", "--epochs", "3")
    model = fit(table, "label", name="people", out_dir=str(tmp_path / "api"), ckpt_dir=str(tmp_path / "api_run"),
                epochs=3, pictures=False)
    assert (tmp_path / "api_run" / "model.safetensors").read_bytes() == \
        (tmp_path / "scripts_run" / "model.safetensors").read_bytes()
    assert model.folder == tmp_path / "api_run" and (tmp_path / "api_run" / "README.md").is_file()
    source = (tmp_path / "api" / "people" / "dataset.json").read_text()
    assert "a pyarrow Table (200 rows)" in source


def test_a_true_false_targets_labels_come_back_as_booleans(tmp_path, model):
    """A target of True/False gives True/False back, as scikit-learn gives y's values: its labels
    as text compared unequal to the user's own column in every row."""
    table = pa.table(people(rows=200, seed=3))
    member = np.asarray(table.column("member").to_pylist())  # a boolean column, the target here
    members = fit(table, "member", out_dir=str(tmp_path / "data"), ckpt_dir=str(tmp_path / "run"), epochs=2,
                  pictures=False, quiet=True)
    assert members.classes == [False, True] and members.record.class_labels == ["false", "true"]
    predicted = members.predict(table)
    decided = decided_classes(members.predict_proba(table), members.record.threshold)
    assert predicted.dtype == bool and predicted.tolist() == [members.classes[k] for k in decided]
    figures = members.evaluate(table)
    assert figures["labels"] == [False, True] and figures["accuracy"] == pytest.approx((predicted == member).mean())
    assert json.loads((tmp_path / "run" / "config.json").read_text())["target_boolean"] is True
    # read from the column's type, not guessed from words: a text target's labels stay its text
    assert not model.record.target_boolean and model.classes == ["high", "low"]


def test_a_true_false_target_written_in_capitals_keeps_each_labels_truth(tmp_path):
    """`TRUE` sorts before `false`: the labels' order is not their truth's, and every prediction
    came back inverted. Three spellings (`True`, `true`, `false`) stay text classes, as written."""
    from common.steps import label_truths

    assert label_truths(["TRUE", "false"]) == [True, False] and label_truths(["false", "true"]) == [False, True]
    assert label_truths(["True", "false", "true"]) is None and label_truths(["no", "yes"]) == [False, True]
    assert label_truths(["true", "yes"]) is None and label_truths(["high", "low"]) is None
    rows = people(rows=200, seed=4)
    member = np.asarray(rows["member"])
    write(tmp_path / "t.csv", {**rows, "member": np.where(member, "TRUE", "false")})
    model = fit(tmp_path / "t.csv", "member", out_dir=str(tmp_path / "data"), ckpt_dir=str(tmp_path / "run"),
                epochs=2, pictures=False, quiet=True)
    assert model.record.class_labels == ["TRUE", "false"] and model.classes == [True, False]
    decided = decided_classes(model.predict_proba(tmp_path / "t.csv"), model.record.threshold)
    assert model.predict(tmp_path / "t.csv").tolist() == [model.classes[k] for k in decided]
    write(tmp_path / "three.csv", {**rows, "member": np.where(member, np.where(np.arange(200) % 2, "True", "true"),
                                                                 "false")})
    make_data("--csv", tmp_path / "three.csv", "--target", "member", "--out-dir", tmp_path / "three")
    source = json.loads((tmp_path / "three" / "three" / "dataset.json").read_text())["source"]
    assert "target_boolean" not in source  # three classes, as written: a model any tool still loads


@pytest.mark.parametrize("settings,words", [
    ({"epochz": 3}, ["no setting ['epochz']"]),
    ({"optimizer": "adamx"}, ["--optimizer", "adamx"]),
    ({"hidden": [0]}, ["--hidden widths must be positive, got [0]"]),
    ({"dropout": 1.5}, ["--dropout must lie in [0, 1), got 1.5"]),
    ({"lr": -1.0}, ["--lr must be a positive number, got -1.0"]),
    ({"log_with": ["nosuchtracker"]}, ["--log-with nosuchtracker"]),
    ({"patience": 4, "min_patience": 6}, ["--min-patience 6 is not below --patience 4"]),
    ({"folds": 1000}, ["--folds 1000 needs as many training rows"]),  # judged against the finished data set
    ({"decision": "threshold", "task": "regression"}, ["--decision threshold decides between two classes"]),
    ({"resume": True}, ["resume=True: no checkpoint"]),  # the latest checkpoint: there is none, said in fit()'s words
    ({"hidden": [100_000_000]}, ["the model would need about"]),  # beyond this machine's memory
])
def test_fit_refuses_a_bad_setting_in_one_line_before_it_replaces_a_data_set(tmp_path, settings, words):
    """A data set of another table under the same name is still there, byte for byte."""
    earlier = tmp_path / "data" / "t" / "dataset.json"
    earlier.parent.mkdir(parents=True)
    earlier.write_text('{"of": "an earlier table"}')
    with pytest.raises(UserError) as info:
        fit({"a": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "y": [0.5, 1.5, 0.7, 1.1, 0.2, 0.9] if "task" in settings else
             ["p", "q", "p", "q", "p", "q"]}, "y", name="t", out_dir=str(tmp_path / "data"),
            ckpt_dir=str(tmp_path / "run"), quiet=True, **settings)
    assert all(w in str(info.value) for w in words), str(info.value)
    assert [p.name for p in earlier.parent.iterdir()] == ["dataset.json"]
    assert earlier.read_text() == '{"of": "an earlier table"}' and not (tmp_path / "run").exists()


def test_fit_refuses_a_run_folder_before_it_replaces_a_data_set(tmp_path):
    """A folder of somebody else's files, or one a run is training in: refused after the data set
    of another table under the same name had been replaced."""
    from common.files import exclusive_lock

    earlier = tmp_path / "data" / "t" / "dataset.json"
    earlier.parent.mkdir(parents=True)
    earlier.write_text('{"of": "an earlier table"}')
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "config.json").write_text('{"lr": 1}')
    table = {"a": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "y": ["p", "q", "p", "q", "p", "q"]}
    with pytest.raises(UserError, match="holds a config.json that is no model config"):
        fit(table, "y", name="t", out_dir=str(tmp_path / "data"), ckpt_dir=str(tmp_path / "theirs"), quiet=True)
    (tmp_path / "busy").mkdir()
    held, done = threading.Event(), threading.Event()

    def another_run() -> None:  # another thread's lock, as another fit's from its first check to its end
        with exclusive_lock(tmp_path / "busy" / ".lock"):
            held.set()
            done.wait(30)

    holder = threading.Thread(target=another_run)
    holder.start()
    try:
        held.wait(30)
        with pytest.raises(UserError, match="another run is using"):
            fit(table, "y", name="t", out_dir=str(tmp_path / "data"), ckpt_dir=str(tmp_path / "busy"), quiet=True)
    finally:
        done.set()
        holder.join()
    assert earlier.read_text() == '{"of": "an earlier table"}'
    # a table refused leaves no run folder made for it
    with pytest.raises(UserError, match="has no target column"):
        fit(table, "nope", name="t", out_dir=str(tmp_path / "data"), ckpt_dir=str(tmp_path / "new"), quiet=True)
    assert not (tmp_path / "new").exists() and earlier.read_text() == '{"of": "an earlier table"}'
    (tmp_path / "locked").mkdir()  # a run's lock and nothing else: a run refused or killed before it wrote
    (tmp_path / "locked" / ".lock").write_text("")
    with pytest.raises(UserError, match="holds no model: no run has saved one there$"):
        Predictor.load(tmp_path / "locked")


def test_a_second_fit_into_a_run_folder_is_refused_between_the_firsts_data_set_and_its_run(tmp_path, monkeypatch):
    """The run folder is held from before fit's data set replaces an earlier one, not from when
    its run begins: a second call in between replaced the first one's data set, then was refused."""
    import common.train.session as session

    inside, go = threading.Event(), threading.Event()
    run_training = session.run_training

    def slow_start(*args, **kwargs):
        if threading.current_thread() is not threading.main_thread():  # the first call: its data set made
            inside.set()
            go.wait(30)
        return run_training(*args, **kwargs)

    monkeypatch.setattr(session, "run_training", slow_start)
    first = {"a": [float(i) for i in range(40)], "y": ["p", "q"] * 20}
    errors: list[BaseException] = []

    def first_fit() -> None:
        try:
            fit(first, "y", name="t", out_dir=str(tmp_path / "data"), ckpt_dir=str(tmp_path / "run"), epochs=1,
                folds=2, pictures=False, quiet=True)
        except BaseException as err:  # said below, in the test's thread
            errors.append(err)

    thread = threading.Thread(target=first_fit)
    thread.start()
    try:
        inside.wait(30)
        second = {"a": [float(i) for i in range(40)], "y": ["q", "p"] * 20}
        made = (tmp_path / "data" / "t" / "dataset.json").read_bytes()  # the first call's
        with pytest.raises(UserError, match="another run is using"):
            fit(second, "y", name="t", out_dir=str(tmp_path / "data"), ckpt_dir=str(tmp_path / "run"), quiet=True)
        assert (tmp_path / "data" / "t" / "dataset.json").read_bytes() == made  # not replaced by the second
    finally:
        go.set()
        thread.join()
    assert not errors
    from common.data.dataset import load_dataset

    assert Predictor.load(tmp_path / "run").record.training["data_identity"] == \
        load_dataset(tmp_path / "data" / "t").identity  # the first call's model, on its own data set


def test_a_run_stopped_by_a_signal_reaches_the_caller_as_python_delivers_the_signal(tmp_path, monkeypatch, capsys):
    """Ctrl-C as KeyboardInterrupt, SIGTERM as SystemExit(143): as a UserError, scikit-learn's
    cross_val_score scored the fold NaN and went on."""
    from sklearn.model_selection import cross_val_score

    import common.train.session as session
    from common import errors
    from common.api import TabularClassifier
    from common.errors import Interrupted, Stopped

    def stopped_by(error):
        def run_training(cfg):
            raise error
        return run_training

    table = {"a": [float(i) for i in range(40)], "y": ["p", "q"] * 20}
    monkeypatch.setattr(session, "run_training", stopped_by(Interrupted("interrupted in epoch 3: go on with --resume")))
    with pytest.raises(KeyboardInterrupt, match=r"interrupted in epoch 3: go on with resume=True$"):  # fit()'s words
        fit(table, "y", out_dir=str(tmp_path / "data"), ckpt_dir=str(tmp_path / "run"), quiet=True)
    monkeypatch.setattr(session, "run_training", stopped_by(KeyboardInterrupt()))  # outside the loop: Python's own
    with pytest.raises(KeyboardInterrupt, match="^fit\\(\\) interrupted: files written before were left as they"):
        fit(table, "y", out_dir=str(tmp_path / "data"), ckpt_dir=str(tmp_path / "run"), quiet=True)

    def committed_then_stopped(cfg):  # a Ctrl-C once the model was swapped in: said as written
        errors.written(f"the model in {tmp_path / 'run'}")
        raise KeyboardInterrupt

    monkeypatch.setattr(session, "run_training", committed_then_stopped)
    with pytest.raises(KeyboardInterrupt, match=f"^fit\\(\\) interrupted: the model in {tmp_path / 'run'} had been "):
        fit(table, "y", out_dir=str(tmp_path / "data"), ckpt_dir=str(tmp_path / "run"), quiet=True)
    X, y = np.arange(80.0).reshape(40, 2), np.asarray([0, 1] * 20)
    with pytest.raises(KeyboardInterrupt):
        cross_val_score(TabularClassifier(epochs=1), X, y, cv=2)
    monkeypatch.setattr(session, "run_training", stopped_by(Stopped("SIGTERM in epoch 2: go on with --resume", 143)))
    with pytest.raises(SystemExit) as info:
        fit(table, "y", out_dir=str(tmp_path / "data"), ckpt_dir=str(tmp_path / "run"), quiet=True)
    assert info.value.code == 143 and "SIGTERM in epoch 2: go on with resume=True" in capsys.readouterr().err


def test_a_table_in_memory_is_named_as_the_caller_gave_it_not_by_its_temporary_file(tmp_path):
    with pytest.raises(UserError) as info:
        fit({"a": [1.0, 2.0, 3.0, 4.0], "y": ["p", "q", "p", "q"]}, "nope", out_dir=str(tmp_path), quiet=True)
    assert str(info.value).startswith("a dict of columns (4 rows) has no target column 'nope'"), str(info.value)
    assert "tabular-fit-" not in str(info.value)


@pytest.mark.parametrize("quiet", [False, True])
def test_a_second_table_in_memory_under_the_same_name_replaces_the_first_with_notes(tmp_path, capsys, quiet):
    """Tables in memory are known by their kind and size alone: replacing one is always said, and
    the run folder says its model was of an earlier version of the same data set folder; printed,
    or as warnings where `quiet` prints nothing."""
    rng = np.random.default_rng(0)
    for second in (False, True):
        table = {"a": rng.normal(size=60), "y": rng.choice(["p", "q"], 60)}
        with pytest.warns(UserWarning, match="now replaced") if quiet and second else contextlib.nullcontext() \
                as warned:
            fit(table, "y", name="t", out_dir=str(tmp_path / "data"), ckpt_dir=str(tmp_path / "run"), epochs=1,
                importance_rows=0, quiet=quiet)
    said = " ".join(capsys.readouterr().out.split())
    if quiet:
        assert said == ""
        said = " ".join(str(w.message) for w in warned)
    assert f"{tmp_path / 'data' / 't'} held the data set of a dict of columns (60 rows), now replaced" in said
    assert f"{tmp_path / 'run'} held a model of an earlier version of the data set" in said


def test_the_estimators_plug_into_scikit_learn(tmp_path):
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from common.api import TabularClassifier, TabularRegressor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(160, 3))
    y = np.where(X[:, 0] + X[:, 1] > 0, 7, 3)  # labels that are not 0..k-1
    quick = TabularClassifier(epochs=4, folds=2)
    assert clone(quick).get_params() == quick.get_params() and quick.set_params(lr=0.01).lr == 0.01
    scores = cross_val_score(make_pipeline(StandardScaler(), quick), X, y, cv=2)
    assert scores.shape == (2,) and scores.mean() > 0.8
    fitted = quick.fit(X, y)
    assert list(fitted.classes_) == [3, 7] and fitted.n_features_in_ == 3
    assert set(fitted.predict(X)) <= {3, 7} and fitted.predict_proba(X).shape == (160, 2)
    search = GridSearchCV(TabularRegressor(epochs=3, folds=2), {"lr": [0.002, 0.01]}, cv=2)
    search.fit(X, X[:, 0] * 2 + 1)
    assert search.best_estimator_.predict(X).shape == (160,) and search.best_score_ > 0.5


def test_a_class_spelled_as_a_tables_blank_keeps_its_rows():
    """y's labels are values, not a table's text: `NA` (North America), `None`, `?` and "" lost
    every row of their class to make_data's reading of missing cells, without a word."""
    from common.api import TabularClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(240, 2))
    band = np.digitize(X[:, 0], [-0.8, 0.0, 0.8])
    for labels in (["NA", "EU", "AS", "OC"], ["None", "?", "", "nan"]):
        y = np.asarray(labels, dtype=object)[band]
        fitted = TabularClassifier(epochs=4, folds=2).fit(X, y)
        assert list(fitted.classes_) == sorted(labels)
        assert set(fitted.predict(X)) == set(labels) and fitted.score(X, y) > 0.8, labels


def test_a_quiet_fit_warns_of_the_rows_it_left_out_for_want_of_a_target(tmp_path):
    """A table's `NA` is a blank, in the target too: the rows go, and a quiet fit said nothing."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=300)
    continent = np.where(x > 0.5, "NA", np.where(x < -0.5, "EU", "AS")).astype(object)
    continent[:4] = None
    with pytest.warns(UserWarning, match="without a target value") as said:
        model = fit({"x": x, "continent": continent}, "continent", name="c", out_dir=str(tmp_path / "data"),
                    ckpt_dir=str(tmp_path / "run"), quiet=True, pictures=False, epochs=2)
    dropped = 4 + int(np.sum(continent[4:] == "NA"))
    assert [str(w.message).split(":")[0] for w in said] == [f"Dropped {dropped} row(s) without a target value"]
    assert "`NA`" in str(said[0].message) and model.classes == ["AS", "EU"]


def test_an_estimator_fitted_on_a_dataframe_takes_an_array_by_position_as_scikit_learn_does():
    """An array for a model fitted on a DataFrame was refused for lacking the columns by name;
    scikit-learn warns and takes the columns by position. Names that are not all text are no
    feature names to scikit-learn."""
    pd = pytest.importorskip("pandas", reason="pip install -r requirements-dev.txt")
    from common.api import TabularClassifier

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"b": rng.normal(size=200), "a": rng.normal(size=200), "c": rng.choice(["u", "v"], 200)})
    y = (frame.b + (frame.c == "u") > 0.5).astype(int)
    fitted = TabularClassifier(epochs=2, folds=2).fit(frame, y)
    assert list(fitted.feature_names_in_) == ["b", "a", "c"]
    with pytest.warns(UserWarning, match="X does not have valid feature names, but TabularClassifier was fitted with"):
        by_position = fitted.predict_proba(frame.to_numpy())
    np.testing.assert_array_equal(by_position, fitted.predict_proba(frame))
    frame.columns = [0, 1, 2]  # no feature names to scikit-learn: any rows are taken by position, without a word
    unnamed = TabularClassifier(epochs=1, folds=2).fit(frame, y)
    assert not hasattr(unnamed, "feature_names_in_")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(unnamed.predict_proba(frame.to_numpy()), unnamed.predict_proba(frame))
    with pytest.warns(UserWarning, match="X has feature names, but TabularClassifier was fitted without") as said:
        unnamed.predict(frame.set_axis(["b", "a", "c"], axis=1))
    assert said[0].filename == __file__  # said at the caller's line


def test_the_estimators_check_their_input_as_scikit_learn_does():
    """What check_estimator asks of input handling (the whole of it: bench/estimator_checks.py)."""
    from scipy import sparse
    from sklearn.exceptions import NotFittedError

    from common.api import TabularClassifier, TabularRegressor

    X = np.zeros((4, 2))
    with pytest.raises(NotFittedError):
        TabularClassifier().predict(X)
    for estimator, y, words in [(TabularClassifier(), None, "requires y to be passed"),
                                (TabularClassifier(), np.linspace(0, 1, 4), "Unknown label type"),
                                (TabularRegressor(), np.array([1.0, np.inf, 2.0, 3.0]), "infinity"),
                                (TabularRegressor(), np.arange(3.0), "inconsistent numbers of samples")]:
        with pytest.raises(ValueError, match=words):
            estimator.fit(X, y)
    with pytest.raises(TypeError, match="[Ss]parse"):
        TabularRegressor().fit(sparse.csr_matrix(X), np.arange(4.0))


def test_fit_names_its_data_set_as_asked_and_gives_back_the_threads(tmp_path):
    import torch

    path = tmp_path / "people.csv"
    pa_csv.write_csv(pa.table(people(rows=120, seed=1)), path)
    before = torch.get_num_threads()
    fit(path, "label", name="mine", out_dir=str(tmp_path / "data"), ckpt_dir=str(tmp_path / "run"), quiet=True,
        epochs=1, folds=2, pictures=False, threads=1)
    assert (tmp_path / "data" / "mine" / "dataset.json").is_file() and not (tmp_path / "data" / "people").exists()
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("name", ["a/b", "../../elsewhere", "", ".."])
def test_a_name_with_a_path_in_it_is_refused_before_anything_is_written(tmp_path, monkeypatch, name):
    """`name` names <out_dir>/<name> and runs/<name>: "../.." would put both somewhere else."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "work").mkdir()
    with pytest.raises(UserError, match=r"^fit\(name=.*\): a name is one folder's name, without a path"):
        fit({"a": [1.0, 2.0, 3.0], "y": [0, 1, 0]}, "y", name=name, out_dir=str(tmp_path / "work" / "data"),
            quiet=True)
    assert list(tmp_path.iterdir()) == [tmp_path / "work"] and not list((tmp_path / "work").iterdir())


@pytest.mark.parametrize("table, said", [
    ({"a": [1.0, 2.0], "b": ["x"]}, "the columns hold different numbers of values ({'a': 2, 'b': 1})"),
    ({"a": [1.0, 2.0], "b": "x"}, "the columns hold different numbers of values ({'a': 2, 'b': 1})"),
    ({"a": [1.0, 2.0], "b": ["x", 3]}, "cannot read column 'b' of the rows"),
])
def test_a_table_fit_cannot_read_is_one_line(tmp_path, table, said):
    with pytest.raises(UserError) as info:
        fit(table, "a", out_dir=str(tmp_path), quiet=True)
    assert said in str(info.value) and "\n" not in str(info.value)


def test_infer_py_shares_all_but_a_core_among_its_predictors_then_gives_torchs_threads_back(
        crossfit_run, tmp_path, monkeypatch):
    """Only the script sets torch's process-wide count: predict_to_file, which a Python caller
    may run beside threads of its own, leaves it alone."""

    import torch

    import common.serve.predict as serving
    from common.model_folder import load_model_dir

    seen, predict = [], serving.predict
    monkeypatch.setattr(serving, "predict", lambda *args: seen.append(torch.get_num_threads()) or predict(*args))
    before = torch.get_num_threads()
    monkeypatch.setattr(serving, "usable_cores", lambda: 8)  # where the share differs from all but a core
    cores = 8
    torch.set_num_threads(cores)
    try:
        infer("--ckpt-dir", crossfit_run / "run", "--input", crossfit_run / "people.csv",
              "--output", tmp_path / "p.csv")
        assert torch.get_num_threads() == cores
        assert seen and set(seen) == {(cores - 1) // serving.PREDICTORS}
        seen.clear()
        config, model = load_model_dir(crossfit_run / "run")
        serving.predict_to_file(str(crossfit_run / "people.csv"), str(tmp_path / "q.csv"), config, model, None, 1024)
        assert seen and set(seen) == {cores}
    finally:
        torch.set_num_threads(before)


def test_a_dataframes_row_is_one_row(model, rows):
    """`df.iloc[0]`, a pandas Series, was refused: the row a notebook reaches for first."""
    import pandas as pd

    frame = pd.DataFrame({"age": [41.0, 30.0], "city": ["oslo", "rome"], "member": [True, False]})
    assert np.array_equal(model.predict_proba(frame.iloc[1]), model.predict_proba(frame.iloc[[1]]))
    assert model.predict(frame.iloc[0]).tolist() == model.predict(frame).tolist()[:1]
    assert np.array_equal(model.predict_proba([row for _, row in frame.iterrows()]), model.predict_proba(frame))


def test_a_dataframes_index_is_read_as_pandas_writes_it_to_parquet(tmp_path):
    """Filtered rows saved to Parquet keep their labels as __index_level_0__: it became a numeric
    feature, and new rows saved without it were refused. A named index (set_index) was dropped
    by fit without a word."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=400), "b": rng.integers(0, 5, 400), "c": rng.normal(size=400)})
    frame["y"] = np.where(frame["a"] + frame["b"] / 4 + rng.normal(0, 0.3, 400) > 0.5, "p", "q")
    frame[frame["b"] != 3].to_parquet(tmp_path / "kept.parquet")
    model = fit(str(tmp_path / "kept.parquet"), "y", out_dir=str(tmp_path / "data"), ckpt_dir=str(tmp_path / "r1"),
                quiet=True, epochs=2)
    roles = {r["name"]: r["role"] for r in json.loads((tmp_path / "data" / "kept" / "dataset.json").read_text())
             ["roles"]}
    assert roles["__index_level_0__"] == "id" and "__index_level_0__" not in model.feature_names
    assert model.predict(frame.head(5)).shape == (5,)  # rows of a 0..n-1 index: no such column
    indexed = fit(frame.set_index("b"), "y", name="indexed", out_dir=str(tmp_path / "data"),
                  ckpt_dir=str(tmp_path / "r2"), quiet=True, epochs=2)
    assert "b" in indexed.feature_names
    assert np.array_equal(indexed.predict_proba(frame.set_index("b")), indexed.predict_proba(frame))
    # An unnamed index of labels of any kind is left out; a named one pandas keeps as a range is a column too.
    mixed = frame.set_axis(["x", *range(1, 400)], axis=0)
    assert np.array_equal(indexed.predict_proba(mixed), indexed.predict_proba(frame))
    years = frame.assign(year=range(2000, 2400)).set_index("year")
    fit(years, "y", name="years", out_dir=str(tmp_path / "data"), ckpt_dir=str(tmp_path / "r3"), quiet=True, epochs=1)
    roles = json.loads((tmp_path / "data" / "years" / "dataset.json").read_text())["roles"]
    assert [r["role"] for r in roles if r["name"] == "year"] == ["id"]  # sequential: an id, but read
    # A time series' unnamed index is its dates, in a frame and in the Parquet file it writes.
    hourly = frame.set_axis(pd.date_range("2020-01-01", periods=400, freq="h"), axis=0)
    timed = fit(hourly, "y", name="hourly", out_dir=str(tmp_path / "data"), ckpt_dir=str(tmp_path / "r4"),
                quiet=True, epochs=1)
    roles = json.loads((tmp_path / "data" / "hourly" / "dataset.json").read_text())["roles"]
    assert [r["role"] for r in roles if r["name"] == "__index_level_0__"] == ["date"]
    hourly.to_parquet(tmp_path / "hourly.parquet")
    assert np.array_equal(timed.predict_proba(hourly), timed.predict_proba(tmp_path / "hourly.parquet"))


def test_what_the_api_is_given_wrongly_is_one_user_error(model, rows, tmp_path):
    """The one exception type, with what to do: never a TypeError from inside, nor NaN figures."""
    pd = pytest.importorskip("pandas")
    for bad in (None, 3, ""):
        with pytest.raises(UserError, match="Predictor.load takes a model folder's path"):
            Predictor.load(bad)
    with pytest.raises(UserError, match="model.safetensors is a file, not a model folder"):
        Predictor.load(model.folder / "model.safetensors")
    with pytest.raises(UserError, match=r"fit\(target=3\): name the column to predict"):
        fit({"a": [1.0, 2.0], "y": [0, 1]}, 3, out_dir=str(tmp_path), quiet=True)
    for repeats in (0, -1, 1.5, True):
        with pytest.raises(UserError, match=r"feature_importance\(repeats=.*\): give a whole number of at least 1"):
            model.feature_importance(rows, repeats=repeats)
    for seed in (-1, 1.5):
        with pytest.raises(UserError, match=r"feature_importance\(seed=.*\): give a whole number of at least 0"):
            model.feature_importance(rows, seed=seed)
    table, _ = rows
    assert model.feature_importance(table, repeats=np.int64(1), max_rows=np.int64(50)).repeats == 1  # NumPy's too
    # pandas' intervals (pd.cut), dictionary encoded: Arrow has no cast for them, which was a traceback
    frame = pd.DataFrame({"age": [30.0, 40.0, 50.0], "city": ["oslo", "rome", "oslo"], "member": [True, False, True]})
    binned = frame.assign(age=pd.cut(frame["age"], 2))
    with pytest.raises(UserError, match=r"column 'age' holds extension<pandas.interval.* cannot be a feature"):
        model.predict(binned)
    with pytest.raises(UserError, match=r"column 'age' holds dictionary<values=extension<pandas.interval.* convert"):
        fit(binned.assign(y=["p", "q", "p"]), "y", out_dir=str(tmp_path), quiet=True)
    twice = pd.DataFrame([[1.0, 2.0, "p"], [3.0, 4.0, "q"]], columns=["a", "a", "y"])
    with pytest.raises(UserError, match=r"more than one column named \['a'\]: rename them"):
        fit(twice, "y", out_dir=str(tmp_path), quiet=True)
    assert not list(tmp_path.iterdir())
