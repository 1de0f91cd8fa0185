"""Reading the fields of a JSON file we wrote (dataset.json, config.json), each with the type its
schema needs: whatever is wrong is one line that names the file, the field and the fix, raised
before any field is used. The schemas themselves live beside their files' other code
(common/data/description.py, common/model_folder.py)."""
from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.errors import UserError

MISSING = object()
JSON_TYPES = {dict: "an object", list: "a list", str: "text", bool: "true or false", int: "an integer",
              float: "a number", type(None): "null"}


def json_type(value: Any) -> str:
    return JSON_TYPES.get(type(value), type(value).__name__)


class Fields:
    """The top-level object of one file: `fix` ends every message (e.g. "regenerate it with make_data.py")."""

    def __init__(self, obj: Any, path: str | Path, fix: str):
        self.path, self.fix = str(path), fix
        if not isinstance(obj, dict):
            raise self.error(f"holds {json_type(obj)}, not a JSON object")
        self.obj: dict[str, Any] = obj

    def error(self, problem: str) -> UserError:
        return UserError(f"{self.path} {problem}: {self.fix}")

    def has(self, key: str) -> bool:
        return key in self.obj

    def value(self, key: str, default: Any = MISSING) -> Any:
        if key in self.obj:
            return self.obj[key]
        if default is MISSING:
            raise self.error(f"lacks '{key}'")
        return default

    def wrong(self, key: str, value: Any, wanted: str) -> UserError:
        shown = repr(value) if len(repr(value)) <= 40 else json_type(value)
        return self.error(f"has '{key}' = {shown}, expected {wanted}")

    def checked(self, key: str, fits: Callable[[Any], bool], wanted: str, default: Any = MISSING) -> Any:
        """The field's value where `fits(value)`; `default` where it may be absent and is."""
        value = self.value(key, default)
        if value is default and default is not MISSING:
            return value
        if not fits(value):
            raise self.wrong(key, value, wanted)
        return value

    def text(self, key: str, choices: tuple[str, ...] = (), default: Any = MISSING) -> Any:
        return self.checked(key, lambda v: isinstance(v, str) and (not choices or v in choices),
                            " or ".join(repr(c) for c in choices) if choices else "text", default)

    def integer(self, key: str, minimum: int = 0, default: Any = MISSING) -> Any:
        return self.checked(key, lambda v: is_int(v) and v >= minimum, f"an integer of at least {minimum}", default)

    def number(self, key: str, nonzero: bool = False, default: Any = MISSING) -> Any:
        """A finite number (`nonzero`: and not 0, as a scale must be); `default` where it may be absent."""
        value = self.checked(key, lambda v: is_finite(v) and not (nonzero and v == 0),
                             "a finite, non-zero number" if nonzero else "a finite number", default)
        return value if value is default and default is not MISSING else float(value)

    def texts(self, key: str, default: Any = MISSING) -> Any:
        return self.checked(key, lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
                            "a list of text", default)

    def ascending(self, key: str, default: Any = MISSING) -> Any:
        """At least two finite numbers, none smaller than the one before (quantiles, knots)."""
        return self.checked(key, lambda v: isinstance(v, list) and len(v) >= 2 and all(map(is_finite, v))
                            and all(a <= b for a, b in zip(v[:-1], v[1:], strict=True)),
                            "a list of at least two finite numbers in ascending order", default)

    def labels(self, key: str) -> list[Any]:
        """Class labels: a non-empty list of distinct numbers or texts."""
        value = self.value(key)
        if not isinstance(value, list) or not value or not all(isinstance(v, (str, int, float)) for v in value) \
                or len({repr(v) for v in value}) != len(value):
            raise self.wrong(key, value, "a list of distinct class labels")
        return value

    def obj_of(self, key: str, default: Any = MISSING) -> Any:
        return self.checked(key, lambda v: isinstance(v, dict), "a JSON object", default)

    def list_of_objects(self, key: str, default: Any = MISSING) -> Any:
        return self.checked(key, lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v),
                            "a list of JSON objects", default)

    def nested(self, key: str, value: Any) -> Fields:
        """The fields of an object inside this one, its messages naming the path to it."""
        inner = Fields.__new__(Fields)
        inner.path, inner.fix = f"{self.path}: '{key}'", self.fix
        if not isinstance(value, dict):
            raise self.wrong(key, value, "a JSON object")
        inner.obj = value
        return inner


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
