"""The role of each column of a user's table, decided from its head (common/data/tables.py reads it):

- numeric: numbers (integers, floats, or text that is mostly numbers, thousands separators
  allowed); blanks are filled and flagged later (common/data/preprocess.py);
- categorical: text or booleans, or any column named with --categorical; learned embeddings;
- date: Arrow dates and timestamps, or text of dates year first (common/data/dates.py): its instant
  and its cycles (day of year, month and week, time of day);
- id: named like an id (`id`, `*_id`, `CustomerID`, `index`, `Unnamed: 0`, an empty header)
  and (nearly) unique per row, or unique per row whatever its name (sequential integers, or
  text); never a feature, copied into the predictions. A column named like an id whose values
  repeat (a 5-valued `RegionID`) is a code: categorical;
- dropped: empty, constant, of a type we cannot use, or named with --drop. A column constant
  among the rows that have a target is dropped once the file has been read
  (common/data/ingest.py).
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

from common.data.columns import column_looks_numeric, feature_type_advice, is_number_type, is_temporal
from common.data.dates import date_hint, has_clock, is_date_type, looks_like_dates
from common.data.tables import decimal_of
from common.errors import UserError

_ID_NAME = re.compile(r"^(id|index|unnamed: ?\d+|.*[_ .-]id)$", re.IGNORECASE)
_CAMEL_ID = re.compile(r"^.*[a-z0-9](ID|Id)$")  # CustomerID, userId
NEARLY_UNIQUE = 0.95  # a column named like an id is one when at least this share of its values are distinct


@dataclasses.dataclass
class ColumnRole:
    name: str
    role: str
    kind: str      # the type pyarrow read
    missing: int   # null cells
    why: str       # the reason for the role, shown to the user


@dataclasses.dataclass
class RoleOverrides:
    categorical: Sequence[str] = ()
    numeric: Sequence[str] = ()
    drop: Sequence[str] = ()
    id: Sequence[str] = ()
    date: Sequence[str] = ()

    def named(self) -> dict[str, str]:
        roles: dict[str, str] = {}
        for role, names in (("categorical", self.categorical), ("numeric", self.numeric),
                            ("dropped", self.drop), ("id", self.id), ("date", self.date)):
            for name in names:
                if name in roles:
                    raise UserError(f"column '{name}' is given two roles ({roles[name]}, {role}): give it one")
                roles[name] = role
        return roles


def infer_roles(table: Any, target: str, overrides: RoleOverrides) -> list[ColumnRole]:
    """The role of every column but the target, the user's choices first."""
    named = overrides.named()
    unknown = [n for n in named if n not in table.column_names]
    if unknown:
        raise UserError(f"no column named {unknown}: choose from {table.column_names}")
    if target in named:
        raise UserError(f"'{target}' is the target: it cannot also be given a role")
    decimal = decimal_of(table)
    return [guess_role(name, table.column(name), named.get(name), decimal)
            for name in table.column_names if name != target]


PANDAS_INDEX = re.compile(r"__index_level_\d+__$")  # the name pandas gives an unnamed index it writes to Parquet


def looks_like_an_id(name: str) -> bool:
    return bool(_ID_NAME.match(name) or _CAMEL_ID.match(name)) or name.strip() == ""


def is_constant(column: Any) -> bool:
    """One value in every row: no blank, no NaN, min equal to max."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if column.null_count or not (pa.types.is_integer(kind) or pa.types.is_floating(kind)
                                 or pa.types.is_boolean(kind)):
        return False
    if pa.types.is_floating(kind) and pc.any(pc.is_nan(column)).as_py():
        return False
    low, high = pc.min_max(column).values()
    return bool(low.as_py() == high.as_py())


def is_sequential(column: Any) -> bool:
    """Integers 0..n-1 or any other run of consecutive ones, each once: a row number."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pa.types.is_integer(column.type) or column.null_count:
        return False
    low, high = pc.min_max(column).values()
    return bool(high.as_py() - low.as_py() == len(column) - 1 and pc.count_distinct(column).as_py() == len(column))


def spells_true_false(column: Any) -> bool:
    """True when every value is a spelling of true or false, so that text read from a CSV
    gets the same role as the boolean column the same values make in Parquet."""
    import pyarrow.compute as pc

    levels = pc.unique(pc.utf8_lower(column.drop_null())).to_pylist()
    return bool(levels) and set(levels) <= {"true", "false"}


def guess_role(name: str, column: Any, chosen: str | None, decimal: str = ".") -> ColumnRole:
    import pyarrow as pa
    import pyarrow.compute as pc

    kind, n = column.type, len(column)
    missing = column.null_count

    def role(r: str, why: str) -> ColumnRole:
        return ColumnRole(name, r, str(kind), missing, why)

    if chosen in ("numeric", "categorical", "date") and feature_type_advice(kind):
        raise UserError(f"column '{name}' holds {kind} values, which cannot be a feature: "
                        f"{feature_type_advice(kind)}")
    if chosen == "date" and not (is_date_type(kind) or looks_like_dates(column)):
        raise UserError(f"--date {name}: its cells are not dates this suite reads (year first: 2012-01-31, "
                        "2012/01/31, with a time and zone or without): leave it to make_data.py or name its role")
    if chosen:
        return role(chosen, "as given")
    if PANDAS_INDEX.match(name) and not is_date_type(kind):  # a time series' index is its dates: read so
        return role("id", "the row labels of a DataFrame saved with them (pandas' unnamed index)")
    if missing == n:
        return role("dropped", "empty")
    if is_constant(column):
        return role("dropped", "constant")
    if looks_like_an_id(name):
        distinct = pc.count_distinct(column, mode="only_valid").as_py()
        if distinct >= NEARLY_UNIQUE * (n - missing):
            return role("id", "named like an id, unique per row")
        return role("categorical", f"named like an id but {distinct} values repeat: a code")
    if is_sequential(column):
        return role("id", "sequential, unique per row")
    if pa.types.is_boolean(kind):
        return role("categorical", "true/false")
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        distinct = pc.count_distinct(column, mode="only_valid").as_py()
        if distinct == 1 and missing == 0:
            return role("dropped", "constant")
        if column_looks_numeric(column, decimal):
            return role("numeric", "numbers written as text")
        if looks_like_dates(column):
            return role("date", "dates written as text" + (", with times" if has_clock(column) else ""))
        hint = date_hint(column)
        hint = f" ({hint})" if hint else ""
        if distinct == n and n > 20:
            return role("id", "text unique per row" + hint)
        if spells_true_false(column):
            return role("categorical", "true/false")
        return role("categorical", f"text, {distinct} values" + hint)
    if is_number_type(kind):
        return role("numeric", "numbers")
    if is_date_type(kind):
        return role("date", "dates" if pa.types.is_date(kind) else "dates and times")
    if is_temporal(kind):
        return role("numeric", "a time or duration, as seconds")
    return role("dropped", f"{kind} cannot be a feature: {feature_type_advice(kind)}")
