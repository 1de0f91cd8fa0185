"""The role of each column of a user's table (common/data/roles.py): id, numeric, categorical or
dropped, guessed from the values and the name, and overridden by the user."""
import numpy as np
import pyarrow as pa
import pytest

from builders import make_data, people, write
from common.data.dataset import load_dataset
from common.data.roles import RoleOverrides, infer_roles
from common.data.tables import read_table


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


def test_a_row_number_in_a_file_sorted_by_class_is_not_a_feature(tmp_path):
    columns = people(sort_by_class=True)
    columns["row"] = columns.pop("person_id") + 1  # not named like an id: found by being 1..n
    write(tmp_path / "sorted.csv", columns)
    make_data("--csv", tmp_path / "sorted.csv", "--target", "label", "--out-dir", tmp_path)
    data = load_dataset(tmp_path / "sorted")
    assert "row" not in data.description.feature_names and data.description.source["ids"] == ["row"]
    assert {r.name: r.why for r in data.description.roles}["row"] == "sequential, unique per row"


@pytest.mark.parametrize("name", ["CustomerID", "userId", "order_id", "ID"])
def test_a_name_like_an_id_makes_an_id_only_when_its_values_are_unique(name):
    unique = pa.table({name: [17 * i % 101 for i in range(50)], "y": [0, 1] * 25})
    assert infer_roles(unique, "y", RoleOverrides())[0].role == "id"
    repeating = pa.table({name: [3, 1, 4, 1, 5] * 10, "y": [0, 1] * 25})  # a code, not an id
    (found,) = infer_roles(repeating, "y", RoleOverrides())
    assert found.role == "categorical" and "repeat" in found.why
