"""The fitted steps between a table and the model, as they are stored and replayed: their one schema.

fastai's procs, split in two: the *fitting* lives with the data (common/data/preprocess.py and
common/data/target.py, on the training split only), and what was fitted lives here, read from
and written to the JSON of both files that carry it (dataset.json and config.json), so a
prediction replays exactly what training saw with no data code, no torch and no pickle.

- FillMissing + Normalize (`NumericStep`): blanks take the training median; where the training
  split had any blank, a 0/1 `<name>_missing` input says which rows were filled; then the
  column is either standardised with the training mean and scale or (`quantiles`, users'
  tables) mapped through its training quantiles onto a standard normal, as scikit-learn's
  QuantileTransformer with output_distribution="normal" does.
- Categorify (`CategoricalStep`): the kept levels get codes 1..K; code 0 (UNKNOWN_CODE) is
  every other value: unseen, rare, or blank where blanks were too rare to be a level.
- The target (`TargetStep`, regression): the transform y is modelled by, its scaling, and the
  training range predictions are clipped to.

The model's input row is [scaled numeric columns, missing indicators, category codes]: codes
travel as float32 columns (exact below 2^24), so batching, sharding and evaluation handle one
tensor and the model alone tells the parts apart (common/model.py).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import math
import re
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from common.overlap import usable_cores
from common.schema import Fields

MISSING_SUFFIX = "_missing"
CODE_SUFFIX = "_code"  # the input of a whole-number column's view as categories
# A categorical column's code for a level unseen in training (or too rare to learn): its
# embedding row starts at zero, so such a level adds nothing the model did not learn.
UNKNOWN_CODE = 0
TARGET_TRANSFORMS = ("none", "log1p", "log_link")  # how a regression's y is modelled (config.py's choices)


@dataclasses.dataclass
class Categories:
    """A categorical column, dictionary-encoded: each row's index into `values`, -1 for a blank.
    Fitting and coding then work on arrays, not on a Python string per row."""

    index: np.ndarray    # int64, one per row
    values: list[str]    # the distinct values

    @classmethod
    def from_list(cls, items: Sequence[str | None]) -> Categories:
        values: dict[str, int] = {}
        index = np.fromiter((-1 if v is None else values.setdefault(v, len(values)) for v in items),
                            dtype=np.int64, count=len(items))
        return cls(index, list(values))

    def take(self, rows: np.ndarray | slice) -> Categories:
        return Categories(self.index[rows], self.values)

    def __len__(self) -> int:
        return len(self.index)


@dataclasses.dataclass
class NumericStep:
    name: str
    median: float
    mean: float
    scale: float
    indicator: bool  # the training split had blanks: add a 0/1 input
    quantiles: list[float] | None = None  # training quantiles at evenly spaced levels: map onto a normal
    date_parts: tuple[str, ...] = ()  # a date column: its value is the instant (seconds), these its cycles
    blank_words: tuple[str, ...] = ()  # words the training file held besides numbers, read as blanks
    time_of_day: bool = False  # a time of day (seconds since midnight): text at prediction is read as `14:05:09`
    thousands: str = ""  # "." where a decimal-comma file's points group thousands (1.186,70): read so again
    instants: bool = False  # dates or timestamps read as seconds (--numeric on such a column): taken so again
    durations: bool = False  # durations (Arrow's, a DataFrame's timedeltas) read as seconds: taken so again

    def scaled(self, filled: np.ndarray) -> np.ndarray:
        if self.quantiles is None:
            return (filled - self.mean) / self.scale
        return self.normal_scores(filled)

    @functools.cached_property
    def normal_scores(self) -> NormalScores:
        """Built once per step, not once per chunk of rows."""
        return NormalScores(np.asarray(self.quantiles, dtype=np.float64))

    @property
    def is_date(self) -> bool:
        return bool(self.date_parts)

    @property
    def median_text(self) -> str:
        """The median as a person reads it: a date's as its instant in UTC, not its seconds."""
        if not self.is_date:
            return f"{self.median:g}"
        import datetime

        return datetime.datetime.fromtimestamp(self.median, datetime.timezone.utc).isoformat(sep=" ")

    @property
    def part_names(self) -> list[str]:
        """The date's periodic inputs: a sine and a cosine of each cycle."""
        return [f"{self.name}_{part}_{wave}" for part in self.date_parts for wave in ("sin", "cos")]

    def to_json(self) -> dict[str, Any]:
        step = {"name": self.name, "median": self.median, "mean": self.mean, "scale": self.scale,
                "indicator": self.indicator}
        if self.quantiles is not None:
            step["quantiles"] = self.quantiles
        if self.blank_words:
            step["blank_words"] = list(self.blank_words)
        if self.time_of_day:
            step["time_of_day"] = True
        if self.thousands:
            step["thousands"] = self.thousands
        if self.instants:
            step["instants"] = True
        if self.durations:
            step["durations"] = True
        return {**step, "date_parts": list(self.date_parts)} if self.date_parts else step

    @classmethod
    def read(cls, s: Fields) -> NumericStep:
        """Checked: a scale of 0 or a non-finite statistic would turn every prediction into NaN."""
        indicator = s.value("indicator")
        if not isinstance(indicator, bool):
            raise s.wrong("indicator", indicator, "true or false")
        parts = s.checked("date_parts", lambda v: isinstance(v, list) and set(v) <= set(DATE_CYCLES),
                          f"a list of {', '.join(DATE_CYCLES)}", [])
        return cls(s.text("name"), s.number("median"), s.number("mean"), s.number("scale", nonzero=True), indicator,
                   s.ascending("quantiles", None), tuple(parts), tuple(s.texts("blank_words", [])),
                   read_flag(s, "time_of_day"), read_thousands(s), read_flag(s, "instants"), read_flag(s, "durations"))


def read_thousands(f: Fields) -> str:
    """A numeric step's or the target's `thousands`: "." or, where absent (older files), ""."""
    return f.checked("thousands", lambda v: v in ("", "."), '"." or ""', "")


def read_flag(f: Fields, name: str) -> bool:
    """A step's true/false field, written only where true: false where absent (older files too)."""
    return bool(f.checked(name, lambda v: isinstance(v, bool), "true or false", False))


DAY_SECONDS = 86_400.0
# A date's cycles: each becomes a sine and a cosine of where in its cycle the date falls, so the
# last day of a year sits beside the first and a Sunday beside a Monday.
DATE_CYCLES = ("year_day", "month_day", "week_day", "day_time")


def date_cycle_inputs(wall: np.ndarray, parts: Sequence[str]) -> np.ndarray:
    """[rows, 2 x parts]: sine and cosine of each cycle's phase, from wall-clock seconds since
    1970 (the date and time as written, whatever its zone); 0 and 0 for a blank, which no date
    takes (every date lies on the unit circle)."""
    blank = np.isnan(wall)
    seconds = np.where(blank, 0.0, wall)
    days = np.floor(seconds / DAY_SECONDS)
    day = days.astype(np.int64).astype("datetime64[D]")
    phase = {
        "year_day": (day - day.astype("datetime64[Y]")).astype(np.int64) / 365.25,
        "month_day": (day - day.astype("datetime64[M]")).astype(np.int64) / 31.0,
        "week_day": ((days + 3) % 7) / 7.0,  # 1970-01-01 was a Thursday: Monday is 0
        "day_time": (seconds - days * DAY_SECONDS) / DAY_SECONDS,
    }
    out = np.empty((len(wall), 2 * len(parts)))
    for i, part in enumerate(parts):
        angle = 2 * np.pi * phase[part]
        out[:, 2 * i], out[:, 2 * i + 1] = np.sin(angle), np.cos(angle)
    out[blank] = 0.0
    return out


QUANTILE_BOUND = 1e-7  # QuantileTransformer's: levels 0 and 1 map to about -5.2 and +5.2, not infinity


class Interpolation:
    """`np.interp(x, xp, fp)` to the last bit, for many x against one short non-decreasing xp,
    without a binary search per value (~85 ns a value on 2 cores, most of a quantile-scaled
    table's ingest). A uniform grid of buckets over [xp[0], xp[-1]] gives each x a start at or
    below its interval; a few vectorised steps forward, one per distinct knot value the fullest
    bucket holds, land on np.interp's interval j, the largest with xp[j] <= x (a step jumps over
    a run of equal knots whole, so a column of few values takes few steps); then np.interp's own
    arithmetic. Knots crowded into a few buckets (a skewed column, or a range a few outliers
    stretch) would need many steps: there np.interp itself is faster, and is used."""

    # 1,000 knots: 32,000 buckets (256 KB of starts, in the cache). A lognormal column's fullest
    # bucket held 8 knots at 8 per knot (9 steps, 49 ms a million values) and 2 at 32 (3 steps,
    # 23 ms); a normal one takes 2 steps either way.
    BUCKETS_PER_KNOT = 32
    MOST_STEPS = 12  # past this many passes over the rows, one binary search per value is cheaper
    BLOCK = 32_768

    def __init__(self, xp: np.ndarray, fp: np.ndarray):
        self.xp, self.fp = np.asarray(xp, dtype=np.float64), np.asarray(fp, dtype=np.float64)
        self.signed_zero = bool(np.any((self.fp == 0) & np.signbit(self.fp)))
        knots = len(self.xp)
        self.buckets = self.BUCKETS_PER_KNOT * knots
        span = self.xp[-1] - self.xp[0]
        self.per_unit = self.buckets / span if knots > 2 and span > 0 and np.isfinite(span) else 0.0
        if not self.per_unit or not np.isfinite(self.per_unit):
            self.steps = self.MOST_STEPS + 1
            return
        knot_bucket = self.bucket_of(self.xp)
        # Knots in an earlier bucket all lie below any x of this one (the bucket is monotone in
        # x): the last of them is a safe start; the knots of x's own bucket are the steps.
        self.start = np.maximum(np.searchsorted(knot_bucket, np.arange(self.buckets), side="left") - 1, 0)
        self.start = np.minimum(self.start, knots - 2).astype(np.intp)
        distinct = np.append(True, np.diff(self.xp) > 0)
        self.steps = int(np.bincount(knot_bucket[distinct], minlength=self.buckets).max()) + 1
        self.next_knot = np.append(self.xp[1:], np.inf)
        # From j, a step lands on the last knot equal to xp[j + 1]: all of them lie at or below x.
        self.run_end = np.append(np.searchsorted(self.xp, self.xp[1:], side="right") - 1, knots - 1)
        with np.errstate(divide="ignore", invalid="ignore"):  # equal knots: never an interval j lands on
            self.slopes = np.append((self.fp[1:] - self.fp[:-1]) / (self.xp[1:] - self.xp[:-1]), 0.0)

    def bucket_of(self, x: np.ndarray) -> np.ndarray:
        scaled = x - self.xp[0]
        scaled *= self.per_unit
        np.fmax(scaled, 0, out=scaled)  # fmax and fmin, not clip: a blank (NaN) lands in bucket 0, fixed later
        np.fmin(scaled, self.buckets - 1, out=scaled)
        return scaled.astype(np.intp)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.steps > self.MOST_STEPS or x.size < self.buckets:
            return np.interp(x, self.xp, self.fp)
        out = np.empty_like(x)
        for start in range(0, x.size, self.BLOCK):  # its dozen temporaries stay in the cache
            out[start:start + self.BLOCK] = self.interpolate(x[start:start + self.BLOCK])
        return out

    def interpolate(self, x: np.ndarray) -> np.ndarray:
        j = self.start[self.bucket_of(x)]
        for _ in range(self.steps):
            j = np.where(self.next_knot[j] <= x, self.run_end[j], j)
        np.minimum(j, len(self.xp) - 2, out=j)  # x at or past the last knot (set below) stepped beyond it
        at = self.xp[j]
        with np.errstate(invalid="ignore", over="ignore"):  # x beyond the ends or blank: set below
            out = x - at
            out *= self.slopes[j]
            out += self.fp[j]
        if self.signed_zero:  # where x is a knot np.interp returns its value, -0.0 too, not 0 * slope + -0.0
            exact = x == at
            out[exact] = self.fp[j[exact]]
        out[x < self.xp[0]] = self.fp[0]
        out[x >= self.xp[-1]] = self.fp[-1]
        out[np.isnan(x)] = np.nan
        return out


class NormalScores:
    """Each value's level among the training quantiles, as a standard normal score. Where
    quantiles repeat (a column of few values), a value takes the middle of its levels, as
    QuantileTransformer averages the forward and backward interpolation: a 0/1 column with half
    its rows at 0 maps to about -0.67 and +0.67, not to the ends of the scale."""

    def __init__(self, quantiles: np.ndarray):
        levels = np.linspace(0.0, 1.0, len(quantiles))
        scores = np.asarray([statistics.NormalDist().inv_cdf(p)
                             for p in np.clip(levels, QUANTILE_BOUND, 1 - QUANTILE_BOUND)])
        self.ties = not np.all(np.diff(quantiles) > 0)
        if not self.ties:  # both directions agree, and one pass does it all
            self.to_score = Interpolation(quantiles, scores)
            return
        self.forward = Interpolation(quantiles, levels)
        self.backward = Interpolation(-quantiles[::-1], -levels[::-1])
        self.level_score = Interpolation(levels, scores)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        if not self.ties:
            return self.to_score(values)
        level = 0.5 * (self.forward(values) - self.backward(-values))
        return self.level_score(level)


TRUTH_SPELLINGS = (("true", "t", "yes", "y", "1", "1.0"), ("false", "f", "no", "n", "0", "0.0"))
WHOLE_NUMBER = re.compile(r"(-?(?:0|[1-9][0-9]*))(?:\.0+)?")  # 121, 121.0: no leading zero (a code's 01 is not 1)


def truth_spellings(level: str) -> tuple[str, ...]:
    """Every spelling of the truth `level` spells (`Yes` -> true, yes, 1, ...); () for other text."""
    return next((words for words in TRUTH_SPELLINGS if level.lower() in words), ())


def label_truths(labels: Sequence[Any]) -> list[bool] | None:
    """Each label's truth where the labels are two words, one spelling true and one false, as a
    true/false column's classes are (`false`/`true`, or `TRUE` before `false` as text sorts);
    else None."""
    if len(labels) != 2 or not all(isinstance(label, str) and truth_spellings(label) for label in labels):
        return None
    truths = [truth_spellings(label) == TRUTH_SPELLINGS[0] for label in labels]
    return truths if truths[0] != truths[1] else None


def whole_number_spellings(level: str) -> tuple[str, ...]:
    """`121` and `121.0` for either: how a file writes a whole number depends on its writer (pandas
    writes an integer column with a blank as floats); () for other text, `0121` included."""
    found = WHOLE_NUMBER.fullmatch(level)
    return (found.group(1), found.group(1) + ".0") if found else ()


def spelling_codes(levels: Sequence[str | None], first: int = 0) -> dict[str | None, int]:
    """Each level's code (`first` for the first level), and the same code for every other
    spelling of it: of its truth where every level spells a truth (`True`, `true`, `yes`, `1`),
    and of a whole number (`121.0` for `121`)."""
    codes: dict[str | None, int] = {level: first + i for i, level in enumerate(levels)}
    present = [level for level in levels if level is not None]
    if present and all(truth_spellings(level) for level in present):
        for level in present:
            for word in truth_spellings(level):
                for spelling in (word, word.capitalize(), word.upper()):
                    codes.setdefault(spelling, codes[level])
    for level in present:
        for spelling in whole_number_spellings(level):
            codes.setdefault(spelling, codes[level])
    return codes


@dataclasses.dataclass
class CategoricalStep:
    name: str
    levels: list[str | None]  # code i + 1 for levels[i]; None is the blank level
    # A whole-number column's second view (its numeric step is the first): levels are the numbers
    # kept, written as whole numbers ("8710"), and a row's code comes from its number.
    of_number: bool = False

    @property
    def cardinality(self) -> int:
        return len(self.levels) + 1  # with the reserved code 0

    @property
    def input_name(self) -> str:
        return self.name + CODE_SUFFIX if self.of_number else self.name

    def number_codes(self, values: np.ndarray) -> np.ndarray:
        """Codes of raw numbers (NaN for a blank, which takes UNKNOWN_CODE with any number not kept)."""
        numbers, codes = self.number_lookup
        if not len(numbers):  # no number kept: every row is unknown
            return np.full(len(values), UNKNOWN_CODE, dtype=np.float32)
        if self.fractional:
            values = as_single(values)
        at = np.minimum(np.searchsorted(numbers, values), len(numbers) - 1)
        return np.where(numbers[at] == values, codes[at], UNKNOWN_CODE).astype(np.float32)

    @functools.cached_property
    def fractional(self) -> bool:
        """A view of fractions: matched at single precision, so that the value a CSV gives as a
        double and an array or a Parquet file as a float is the same value."""
        return self.of_number and any(level is not None and not float(level).is_integer() for level in self.levels)

    @functools.cached_property
    def number_lookup(self) -> tuple[np.ndarray, np.ndarray]:
        """The kept numbers in ascending order, and each one's code."""
        numbers = np.asarray([float(level) for level in self.levels if level is not None])
        numbers = as_single(numbers) if self.fractional else numbers
        codes = np.asarray([i + 1 for i, level in enumerate(self.levels) if level is not None])
        order = np.argsort(numbers, kind="stable")
        return numbers[order], codes[order]

    def codes(self, column: Categories) -> np.ndarray:
        lookup = self.lookup
        by_value = np.asarray([lookup.get(v, UNKNOWN_CODE) for v in column.values] + [lookup.get(None, UNKNOWN_CODE)],
                              dtype=np.float32)
        return by_value[column.index]  # index -1 (a blank) picks the last entry: the blank level's code

    @functools.cached_property
    def lookup(self) -> dict[str | None, int]:
        """Each level's code. Levels that all spell true or false match every spelling of the same
        truth: pandas writes `True` to CSV, pyarrow `true`, a boolean column from Parquet or a
        DataFrame reads as `true`, a 0/1 column as `1`, and a form as `yes`, so the same column
        must not turn unseen between those forms."""
        return spelling_codes(self.levels, first=1)

    def to_json(self) -> dict[str, Any]:
        step = {"name": self.name, "levels": self.levels}
        return {**step, "of_number": True} if self.of_number else step

    @classmethod
    def read(cls, s: Fields) -> CategoricalStep:
        levels = s.value("levels")
        if not isinstance(levels, list) or not all(v is None or isinstance(v, str) for v in levels):
            raise s.wrong("levels", levels, "a list of text (null: the blank level)")
        of_number = s.checked("of_number", lambda v: isinstance(v, bool), "true or false", False)
        if of_number and not all(isinstance(v, str) and _is_finite_number(v) for v in levels):
            raise s.wrong("levels", levels, "finite numbers written as text, for a column's view as codes")
        return cls(s.text("name"), levels, of_number)


def as_single(values: np.ndarray) -> np.ndarray:
    """Numbers rounded to single precision (as doubles, NaN kept)."""
    return np.asarray(values, dtype=np.float32).astype(np.float64)


def _is_finite_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


PARALLEL_ROWS = 262_144  # measured: below this, threads cost what they save


def each_column(scale: Callable[[int, NumericStep], np.ndarray], steps: Sequence[NumericStep],
                rows: int) -> list[np.ndarray]:
    """`scale(i, step)` for every column; on a thread per core where quantile lookups are long
    (numpy's interpolation, arithmetic and file reads release the GIL, so columns scale side by
    side). Standardising is a few passes a column: threads never paid for it."""
    threads = min(len(steps), usable_cores(), 8)
    if rows < PARALLEL_ROWS or threads < 2 or all(step.quantiles is None for step in steps):
        return [scale(i, step) for i, step in enumerate(steps)]
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return list(pool.map(scale, range(len(steps)), steps))


@dataclasses.dataclass
class Preprocessor:
    numeric: list[NumericStep]
    categorical: list[CategoricalStep]

    @property
    def input_names(self) -> list[str]:
        """The model's inputs in order: numeric (a date's instant), indicators, dates' cycles,
        categorical codes (a whole-number column's view as codes last among them)."""
        return ([s.name for s in self.numeric] + [s.name + MISSING_SUFFIX for s in self.numeric if s.indicator]
                + [name for s in self.numeric for name in s.part_names] + [s.input_name for s in self.categorical])

    @property
    def numeric_inputs(self) -> int:
        return len(self.numeric) + sum(s.indicator for s in self.numeric) + sum(len(s.part_names) for s in self.numeric)

    @property
    def dates(self) -> list[NumericStep]:
        return [s for s in self.numeric if s.is_date]

    @property
    def column_names(self) -> list[str]:
        """The table columns it reads (a column with a view as codes once, as a number)."""
        return [s.name for s in self.numeric] + [s.name for s in self.text_categorical]

    @property
    def plainly_standardised(self) -> bool:
        """Whether the model's inputs are its numeric columns standardised and nothing more (no
        quantiles, blanks' indicators, dates or categories), as the recipes' models take them."""
        return not self.categorical and all(s.quantiles is None and not s.indicator and not s.is_date
                                            for s in self.numeric)

    def standardised_block(self, X: np.ndarray) -> np.ndarray | None:
        """transform's inputs for rows of the numeric columns in order, plainly standardised, in
        one pass over the block instead of one per column (NumericStep.scaled's arithmetic, so
        the same bits); None where a row has a blank, which transform fills column by column.
        X (float64, the caller's own) is scaled in place: no copy of the block."""
        assert self.plainly_standardised and X.dtype == np.float64
        if np.isnan(X).any():
            return None
        X -= np.array([s.mean for s in self.numeric])
        X /= np.array([s.scale for s in self.numeric])
        return X.astype(np.float32)

    @property
    def code_view_places(self) -> dict[str, tuple[int, CategoricalStep]]:
        """Each whole-number column's view as codes, by its column: its place among the model's
        inputs (after every numeric input, in the categorical steps' order) and its step."""
        return {c.name: (self.numeric_inputs + j, c) for j, c in enumerate(self.categorical) if c.of_number}

    def code_view(self, name: str) -> CategoricalStep | None:
        """The view as codes of numeric column `name`, where it has one."""
        return next((c for c in self.categorical if c.of_number and c.name == name), None)

    @property
    def text_categorical(self) -> list[CategoricalStep]:
        """The categorical steps that read a column as text: all but the views of numbers as codes."""
        return [s for s in self.categorical if not s.of_number]

    def column_inputs(self) -> dict[str, list[int]]:
        """Each table column's places among the model's inputs: a numeric column's value and its
        `_missing` indicator, a categorical column's codes (what permutation importance shuffles
        together)."""
        places = iter(range(len(self.numeric), self.numeric_inputs))  # the indicators, then the cycles
        groups = {s.name: [i] + ([next(places)] if s.indicator else []) for i, s in enumerate(self.numeric)}
        for step in self.numeric:
            groups[step.name] += [next(places) for _ in step.part_names]
        for j, cat in enumerate(self.categorical):  # a view as codes joins its column's numeric inputs
            groups[cat.name] = groups.get(cat.name, []) + [self.numeric_inputs + j]
        return groups

    def transform(self, numeric: Callable[[str], np.ndarray], text: Callable[[str], Categories],
                  rows: int, wall: Callable[[str], np.ndarray] | None = None) -> np.ndarray:
        """The model's inputs (float32) from column getters: raw numbers (NaN for blanks; a date's
        instant in seconds), categories, and (`wall`) a date's wall-clock seconds."""
        out = np.empty((rows, len(self.input_names)), dtype=np.float32)
        as_codes = self.code_view_places

        def scale_into(col: int, step: NumericStep) -> np.ndarray:
            values = numeric(step.name)
            if step.name in as_codes:  # a view as codes takes the raw number, before blanks are filled
                place, view = as_codes[step.name]
                out[:, place] = view.number_codes(values)
            missing = np.isnan(values)
            out[:, col] = step.scaled(np.where(missing, step.median, values) if missing.any() else values)
            return missing

        blanks = [missing for step, missing in zip(self.numeric, each_column(scale_into, self.numeric, rows),
                                                   strict=True) if step.indicator]
        col = len(self.numeric)
        for missing in blanks:
            out[:, col] = missing
            col += 1
        for step in self.dates:
            if wall is None:
                raise ValueError("a date column needs its wall-clock seconds")  # a caller's bug, not the user's
            clock = wall(step.name)  # a blank takes the median's cycles, as its instant takes the median
            out[:, col:col + len(step.part_names)] = date_cycle_inputs(np.where(np.isnan(clock), step.median, clock),
                                                                       step.date_parts)
            col += len(step.part_names)
        for cat in self.categorical:
            if not cat.of_number:  # a view as codes was written with its column's number
                out[:, col] = cat.codes(text(cat.name))
            col += 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {"numeric": [s.to_json() for s in self.numeric], "categorical": [s.to_json() for s in self.categorical]}

    @classmethod
    def read(cls, f: Fields, key: str = "preprocess") -> Preprocessor:
        """The steps under `key` of either file, each checked."""
        steps = f.nested(key, f.value(key))
        pre = cls([NumericStep.read(steps.nested(f"numeric[{i}]", obj))
                   for i, obj in enumerate(steps.list_of_objects("numeric"))],
                  [CategoricalStep.read(steps.nested(f"categorical[{i}]", obj))
                   for i, obj in enumerate(steps.list_of_objects("categorical"))])
        alone = [c.name for c in pre.categorical if c.of_number and c.name not in {s.name for s in pre.numeric}]
        if alone:
            raise f.error(f"views as codes of {alone} have no numeric step of their column")
        return pre

    @classmethod
    def all_numeric(cls, names: Sequence[str], mean: Sequence[float], scale: Sequence[float]) -> Preprocessor:
        """Scaling only: numeric columns without blanks, standardised."""
        return cls([NumericStep(n, 0.0, float(m), float(s), False) for n, m, s in zip(names, mean, scale, strict=True)],
                   [])


EXP_LIMIT = 700.0  # exp overflows float64 past ~709


@dataclasses.dataclass(frozen=True)
class TargetStep:
    """A regression target's modelling. Training sees (f(y) - mean) / scale, with f the
    transform: y itself (`none`, and `log_link`, whose model predicts log E[y / scale]) or
    log1p(y). Predictions come back through the inverse, within the training range [low, high]
    where one was recorded (users' tables; the recipes and shipped sets record none)."""

    transform: str
    mean: float
    scale: float
    low: float | None = None
    high: float | None = None
    thousands: str = ""  # as a numeric step's (NumericStep)
    instants: bool = False  # as a numeric step's: dates or timestamps read as seconds (--task regression)

    @property
    def link(self) -> bool:
        """Whether the model's output is log E[y] (trained on the Poisson deviance), not y itself."""
        return self.transform == "log_link"

    @property
    def clipped(self) -> bool:
        return self.low is not None and self.high is not None

    def modelled(self, y: np.ndarray) -> np.ndarray:
        """y before its scaling: log1p(y) for `log1p`, else y itself."""
        return np.log1p(y) if self.transform == "log1p" else y

    def forward(self, y: np.ndarray) -> np.ndarray:
        """Training targets, as the model learns them."""
        return (self.modelled(y) - self.mean) / self.scale

    def inverse(self, values: Any, prediction: bool) -> Any:
        """A float64 tensor of model outputs (`prediction`) or of stored targets -> the original y
        scale: the inverse of the link (outputs only), of the scaling and of the transform;
        predictions within the training range. The one place that inverts how y is modelled."""
        import torch

        if prediction and self.link:
            values = torch.exp(values.clamp(max=EXP_LIMIT))
        values = values * self.scale + self.mean
        if self.transform == "log1p":
            values = torch.expm1(values.clamp(max=EXP_LIMIT))
        return values.clamp(self.low, self.high) if prediction and self.clipped else values

    def original(self, scaled: np.ndarray, prediction: bool = True) -> np.ndarray:
        """inverse() on an array: model outputs or stored targets on the original y scale."""
        import torch

        return self.inverse(torch.from_numpy(np.array(scaled, dtype=np.float64)), prediction).numpy()

    def for_figures(self, pred: Any, y: Any) -> tuple[Any, Any, float]:
        """(predictions, targets, scale) for common/metrics.regression_stats from scaled tensors:
        as they are with the target's scale where y is modelled as it is, else both brought back
        to the original scale (centred on the training mean's image, to keep the sums accurate)."""
        if self.transform == "none" and not self.clipped:
            return pred, y, self.scale
        import torch

        centre = self.inverse(torch.zeros((), dtype=torch.float64, device=y.device), False)
        return self.inverse(pred.double(), True) - centre, self.inverse(y.double(), False) - centre, 1.0

    def to_json(self) -> dict[str, Any]:
        step = dataclasses.asdict(self)
        for name in ("thousands", "instants"):  # as a numeric step writes them: only where set
            if not step[name]:
                del step[name]
        return step

    @classmethod
    def read(cls, f: Fields, key: str = "target") -> TargetStep:
        t = f.nested(key, f.obj_of(key))
        step = cls.checked(t, t.text("transform", TARGET_TRANSFORMS), t.number("mean"), t.number("scale", nonzero=True),
                           t.number("low", default=None), t.number("high", default=None))
        return dataclasses.replace(step, thousands=read_thousands(t), instants=read_flag(t, "instants"))

    @classmethod
    def read_split(cls, f: Fields) -> TargetStep:
        """The previous formats' form: `y_mean` and `y_scale` at the top level, and an optional
        `target` object with the transform and the range."""
        mean, scale = f.number("y_mean"), f.number("y_scale", nonzero=True)
        if not f.has("target"):
            return cls("none", mean, scale)
        t = f.nested("target", f.obj_of("target"))
        return cls.checked(t, t.text("transform", TARGET_TRANSFORMS), mean, scale, t.number("low"), t.number("high"))

    @classmethod
    def checked(cls, t: Fields, transform: str, mean: float, scale: float, low: float | None,
                high: float | None) -> TargetStep:
        if (low is None) != (high is None):
            raise t.error("has one end of the target's range without the other")
        if low is not None and high is not None and low > high:
            raise t.error(f"has a range from {low} down to {high}")
        return cls(transform, mean, scale, low, high)


def read_target(f: Fields, task: str, split_form: bool) -> TargetStep | None:
    """A regression's target step from either file; `split_form`: the previous formats' layout."""
    if task == "classification":
        return None
    return TargetStep.read_split(f) if split_form else TargetStep.read(f)


def has_link(target: TargetStep | None) -> bool:
    """Whether a model's outputs are log E[y] (a regression through a log link)."""
    return target is not None and target.link
