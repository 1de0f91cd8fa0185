"""Users' tables: reading, column roles, blanks, categories, a validation split and defaults sized
from the data, from file to predictions. Every table is made here; nothing is downloaded."""
import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from builders import (
    FORBID_PICKLE,
    ROOT,
    infer,
    make_data,
    people,
    read_config,
    read_csv_rows,
    read_metrics,
    script_env,
    train,
    user_error,
    write,
)

import make_data as make_data_script
from common.data.dataset import load_dataset
from common.data.preprocess import CategoricalStep, Categories, embedding_size
from common.data.roles import RoleOverrides, infer_roles
from common.data.tables import read_table
from common.model import TabularNet, build_model


@pytest.fixture(scope="module")
def people_set(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("people")
    path = write(tmp / "people.csv", people())
    make_data("--csv", path, "--target", "label", "--out-dir", tmp)
    return tmp, path


def test_every_column_gets_a_role(people_set):
    _, path = people_set
    roles = {r.name: (r.role, r.why) for r in infer_roles(read_table(path), "label", RoleOverrides())}
    assert roles["person_id"][0] == "id"
    assert roles["city"] == ("categorical", "text, 3 values")
    assert roles["member"] == ("categorical", "true/false")
    assert roles["age"] == ("numeric", "numbers")
    assert roles["country"] == ("dropped", "constant") and roles["notes"] == ("dropped", "empty")


@pytest.mark.parametrize("name,column,role", [
    ("", list(range(50)), "id"), ("Unnamed: 0", list(range(50)), "id"), ("row", list(range(7, 57)), "id"),
    ("ID", [3, 1] * 25, "categorical"), ("order.id", list(range(100, 150)), "id"),
    ("name", [f"n{i}" for i in range(50)], "id"),
    ("price", ["3,750", "1,200", "950", None, "12,000.5"] * 10, "numeric"), ("grade", [1, 2, 3, 1, 2] * 10, "numeric"),
    ("paid", [3, 1] * 25, "numeric"),
])
def test_role_guesses(name, column, role):
    table = pa.table({name: column, "y": [0, 1] * 25})
    (found,) = infer_roles(table, "y", RoleOverrides())
    assert found.role == role, found


def test_the_user_overrides_the_guess(tmp_path):
    path = write(tmp_path / "t.csv", {"grade": [1, 2, 3, 1, 2] * 20, "ref": [5, 3] * 50, "x": np.arange(100) % 7,
                                      "city": ["a", "b"] * 50, "y": [0.5, 1.5] * 50})
    roles = {r.name: r.role for r in infer_roles(read_table(path), "y", RoleOverrides(
        categorical=["grade"], id=["ref"], drop=["x"], numeric=[]))}
    assert roles == {"grade": "categorical", "ref": "id", "x": "dropped", "city": "categorical"}


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


def test_the_model_embeds_categories_and_stays_a_plain_mlp_without_them():
    spec = {"in_features": 2, "hidden": [8], "out_features": 2, "activation": "relu",
            "categorical": [{"cardinality": 5, "dim": 3}, {"cardinality": 3, "dim": 2}]}
    model = build_model(spec)
    assert isinstance(model, TabularNet)
    assert tuple(model.mlp[0].weight.shape) == (8, 2 + 3 + 2)
    x = torch.tensor([[0.5, -1.0, 4.0, 0.0], [0.1, 0.2, 1.0, 2.0]])
    assert model(x).shape == (2, 2)
    plain = build_model({k: v for k, v in spec.items() if k != "categorical"})
    assert isinstance(plain, torch.nn.Sequential) and list(plain.state_dict()) == ["0.weight", "0.bias",
                                                                                  "2.weight", "2.bias"]
    assert embedding_size(3) == 3 and embedding_size(10_001) == 278


def test_a_table_with_text_blanks_and_ids_trains_and_predicts_every_row(people_set, tmp_path, capsys):
    tmp, _ = people_set
    train("--data", tmp / "people", "--ckpt-dir", tmp_path)
    out = capsys.readouterr().out
    assert "table settings: 5-fold cross-fitting" in out and "val_f1_macro" in out  # the resolved values are shown
    config = read_config(tmp_path)
    training = config["training"]
    assert training["defaults"] == "table" and training["monitor"] == "val_f1_macro" and training["folds"] == 5
    assert training["class_weight"] == "none" and config["model"]["members"] == 5 and config["weights"] == "best"
    assert config["model"]["categorical"] == [{"cardinality": 5, "dim": embedding_size(5)},
                                              {"cardinality": 3, "dim": embedding_size(3)}]
    assert config["final_metrics"]["val_f1_macro"] >= 0.8  # out of fold: every row scored by a member that never saw it
    assert {"val_loss", "val_f1_macro"} <= read_metrics(tmp_path)[-1].keys()
    # New rows: blanks everywhere, a city never seen, a column order of its own, no label.
    new = tmp_path / "new.csv"
    write(new, {"member": [True, None, False, True], "city": ["rome", "lima", None, "oslo"],
                "age": pa.array([50.0, None, 20.0, None]), "person_id": [9001, 9002, 9003, 9004]})
    infer("--ckpt-dir", tmp_path, "--input", new, "--output", tmp_path / "pred.csv")
    rows = read_csv_rows(tmp_path / "pred.csv")
    assert [r["person_id"] for r in rows] == ["9001", "9002", "9003", "9004"]
    assert all(r["prediction"] in ("high", "low") for r in rows)
    assert rows[0]["prediction"] == "high" and rows[2]["prediction"] == "low"


def test_a_number_that_is_not_one_still_names_column_and_row(people_set, tmp_path):
    tmp, _ = people_set
    train("--data", tmp / "people", "--ckpt-dir", tmp_path, "--epochs", "1")
    write(tmp_path / "bad.csv", {"member": [True, False], "city": ["rome", "oslo"], "age": ["41", "forty"]})
    message = user_error(__import__("infer").main, "--ckpt-dir", tmp_path, "--input", tmp_path / "bad.csv")
    assert "column 'age'" in message and "'forty'" in message and "row 2" in message


def test_a_row_number_in_a_file_sorted_by_class_is_not_a_feature(tmp_path):
    columns = people(sort_by_class=True)
    columns["row"] = columns.pop("person_id") + 1  # not named like an id: found by being 1..n
    write(tmp_path / "sorted.csv", columns)
    make_data("--csv", tmp_path / "sorted.csv", "--target", "label", "--out-dir", tmp_path)
    data = load_dataset(tmp_path / "sorted")
    assert "row" not in data.description.feature_names and data.description.source["ids"] == ["row"]
    assert {r["name"]: r["why"] for r in data.description.roles}["row"] == "sequential, unique per row"


def test_a_fifty_thousand_level_column_is_capped(tmp_path):
    rng = np.random.default_rng(3)
    rows = 60_000
    code = rng.integers(0, 50_000, rows)
    write(tmp_path / "wide.parquet", {"code": [f"c{c}" for c in code], "x": rng.normal(size=rows),
                                      "y": (code % 2).astype(np.int64)})
    make_data("--csv", tmp_path / "wide.parquet", "--target", "y", "--out-dir", tmp_path)
    (step,) = load_dataset(tmp_path / "wide").preprocessor.categorical
    assert len(step.levels) == 1000  # --max-levels: the most frequent, each with >= 2 training rows
    make_data("--csv", tmp_path / "wide.parquet", "--target", "y", "--out-dir", tmp_path, "--max-levels", "100000")
    (step,) = load_dataset(tmp_path / "wide").preprocessor.categorical
    assert 1000 < len(step.levels) < 50_000  # levels seen once in training share code 0
    assert CategoricalStep("c", ["a", None]).codes(Categories.from_list(["a", None, "zz"])).tolist() == [1.0, 2.0, 0.0]
    assert CategoricalStep("c", ["a"]).codes(Categories.from_list(["a", None, "zz"])).tolist() == [1.0, 0.0, 0.0]


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


def test_rows_without_a_target_are_dropped_and_counted(tmp_path, capsys):
    path = write(tmp_path / "t.csv", {"a": np.arange(50) % 7 * 1.0, "y": pa.array([1.5, None, 2.5, 3.5, 0.5] * 10)})
    make_data("--csv", path, "--target", "y", "--out-dir", tmp_path)
    assert "Dropped 10 row(s) without a target value" in capsys.readouterr().out
    meta = load_dataset(tmp_path / "t").description
    assert meta.n_train + meta.n_val + meta.n_test == 40 and meta.source["rows_without_target"] == 10


def test_parquet_in_and_out_of_prediction(tmp_path):
    columns = people(rows=300, seed=5)
    write(tmp_path / "p.parquet", columns)
    make_data("--csv", tmp_path / "p.parquet", "--target", "label", "--out-dir", tmp_path)
    train("--data", tmp_path / "p", "--ckpt-dir", tmp_path / "run", "--epochs", "3")
    infer("--ckpt-dir", tmp_path / "run", "--input", tmp_path / "p.parquet", "--output", tmp_path / "pred.npz")
    with np.load(tmp_path / "pred.npz", allow_pickle=False) as preds:
        assert len(preds["prediction"]) == 300 and preds["proba"].shape == (300, 2)
        assert preds["person_id"].tolist() == [str(i) for i in range(300)]


def test_recipes_keep_their_split_and_settings(small_cls, tmp_path):
    from common.config import RECIPES, TrainConfig
    from common.train.run_plan import DATA_SIZED, resolved_settings

    data = load_dataset(small_cls)
    assert data.is_recipe and data.n_val == 0
    assert resolved_settings(TrainConfig(), data) == {k: RECIPES["classification"][k] for k in DATA_SIZED}
    make_data("--n-samples", "3000", "--val-size", "0.1", "--out-dir", tmp_path)
    meta = json.loads((tmp_path / "cls_data" / "dataset.json").read_text())
    assert (meta["n_train"], meta["n_val"], meta["n_test"]) == (2100, 300, 600)


def test_validation_needs_rows_for_every_class(tmp_path):
    path = write(tmp_path / "t.csv", {"a": [1.0, 7.0, 3.0, 9.0, 2.0, 8.0], "y": ["x", "x", "y", "y", "z", "z"]})
    message = user_error(make_data_script.main, "--csv", path, "--target", "y", "--out-dir", tmp_path,
                         "--test-size", "0.2", "--val-size", "0.1")
    assert "fewer than 3 rows" in message


@pytest.mark.e2e
def test_a_model_with_categories_predicts_with_pickle_forbidden(people_set, tmp_path):
    """Vocabularies and fill values travel as JSON: nothing is unpickled at prediction time."""
    tmp, path = people_set
    train("--data", tmp / "people", "--ckpt-dir", tmp_path, "--epochs", "2")
    proc = subprocess.run([sys.executable, "-c", FORBID_PICKLE, "--ckpt-dir", str(tmp_path), "--input", str(path),
                           "--output", str(tmp_path / "p.csv")], cwd=ROOT, capture_output=True, text=True,
                          env=script_env())
    assert proc.returncode == 0, proc.stderr
    assert len(read_csv_rows(tmp_path / "p.csv")) == 600


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


def test_semicolons_come_with_decimal_commas(tmp_path):
    rows = "".join(f"{i % 7},5;{1000 + i},25;{'ab'[i % 2]}\n" for i in range(60))
    (tmp_path / "eu.csv").write_text("temp;weight;y\n" + rows)
    make_data("--csv", tmp_path / "eu.csv", "--target", "y", "--out-dir", tmp_path)
    temp, weight = load_dataset(tmp_path / "eu").preprocessor.numeric
    assert 0.5 <= temp.median <= 6.5 and 1000 < weight.median < 1060  # 3,5 is 3.5, not 35 or a text level


@pytest.mark.parametrize("column,role", [
    (pa.array(["a", "b", "a", None] * 10).dictionary_encode(), "categorical"),  # a pandas category in Parquet
    (pa.array([1.5, 2.25, None, 4.0] * 10, pa.timestamp("ms")), "numeric"),
    (pa.array([10, 20, None, 40] * 10, pa.time32("s")), "numeric"),
    (pa.array([10, 20, None, 40] * 10, pa.duration("us")), "numeric"),
    (pa.array([2**62 + i for i in range(39)] + [5]), "numeric"),
    (pa.array([float("nan"), 1.0] * 20), "numeric"),  # one value and blanks is not constant
])
def test_columns_of_every_arrow_type_get_a_role_and_numbers(tmp_path, column, role):
    write(tmp_path / "t.parquet", {"c": column, "x": np.arange(40) % 3 * 1.0, "y": [0, 1] * 20})
    make_data("--csv", tmp_path / "t.parquet", "--target", "y", "--out-dir", tmp_path)
    data = load_dataset(tmp_path / "t")
    assert {r["name"]: r["role"] for r in data.description.roles}["c"] == role
    assert np.isfinite(data.X_train).all()


@pytest.mark.parametrize("name", ["CustomerID", "userId", "order_id", "ID"])
def test_a_name_like_an_id_makes_an_id_only_when_its_values_are_unique(name):
    unique = pa.table({name: [17 * i % 101 for i in range(50)], "y": [0, 1] * 25})
    assert infer_roles(unique, "y", RoleOverrides())[0].role == "id"
    repeating = pa.table({name: [3, 1, 4, 1, 5] * 10, "y": [0, 1] * 25})  # a code, not an id
    (found,) = infer_roles(repeating, "y", RoleOverrides())
    assert found.role == "categorical" and "repeat" in found.why


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


def test_an_input_column_named_like_an_output_is_kept_apart(people_set, tmp_path):
    tmp, _ = people_set
    train("--data", tmp / "people", "--ckpt-dir", tmp_path, "--epochs", "1")
    write(tmp_path / "new.csv", {"member": [True], "city": ["rome"], "age": [30.0], "prediction": ["mine"]})
    infer("--ckpt-dir", tmp_path, "--input", tmp_path / "new.csv", "--output", tmp_path / "p.csv")
    (row,) = read_csv_rows(tmp_path / "p.csv")
    assert row["prediction_input"] == "mine" and row["prediction"] in ("high", "low")


def test_parquet_and_csv_read_blanks_alike(tmp_path):
    columns = {"color": ["red", "", "NA", None, "blue"] * 8, "x": [1.0, 2.0, 3.0, 4.0, 5.5] * 8}
    write(tmp_path / "t.parquet", columns)
    write(tmp_path / "t.csv", columns)
    parquet, csv_table = read_table(tmp_path / "t.parquet"), read_table(tmp_path / "t.csv")
    assert parquet.column("color").null_count == csv_table.column("color").null_count == 24


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
    assert written.column("person_id").to_pylist() == [r["person_id"] for r in rows]
    assert written.column("prediction").to_pylist() == [r["prediction"] for r in rows]
    np.testing.assert_allclose(written.column("proba_high").to_numpy(),
                               [float(r["proba_high"]) for r in rows], rtol=1e-5)


def test_a_bad_cell_deep_in_a_streamed_file_names_its_row(people_set, tmp_path):
    tmp, _ = people_set
    train("--data", tmp / "people", "--ckpt-dir", tmp_path, "--epochs", "1")
    ages = [str(30 + i % 20) for i in range(300)]
    ages[256] = "old"
    write(tmp_path / "new.csv", {"member": [True] * 300, "city": ["rome"] * 300, "age": ages})
    message = user_error(__import__("infer").main, "--ckpt-dir", tmp_path, "--input", tmp_path / "new.csv",
                         "--batch-size", "10")
    assert "'old'" in message and "row 257" in message
    assert not (tmp_path / "new.pred.csv").exists()
