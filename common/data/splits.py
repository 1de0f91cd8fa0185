"""Which rows of a table go to training, validation and test: one splitter, `split_rows`.

A table is cut by a seeded draw per class (`assign_splits`), made once the table has been
read, with the proportions exact per class (the test cut first, then validation from the
rest, as train_test_split would make them). It needs the class codes alone and a byte a row,
never a shuffle of the table; rows keep their file order within each split.

One documented case keeps scikit-learn's cut: the recipes' synthetic data and scikit-learn's
shipped data sets (made in memory, common/data/builtin.py) are cut by `train_test_split`, called
as the recipe calls it, so that they keep the recipe's rows in the recipe's order and
therefore its figures.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np

from common.errors import UserError

CHUNK_ROWS = 1 << 20  # rows per step of a pass over a row-long array: temporaries of this size, not the table's


def chunks(n: int) -> Iterator[slice]:
    """The rows 0..n in slices of CHUNK_ROWS (the passes of make_data.py and of the folds' dealing)."""
    for start in range(0, n, CHUNK_ROWS):
        yield slice(start, min(n, start + CHUNK_ROWS))


TRAIN, VAL, TEST = 0, 1, 2
SPLIT_CODES = {"train": TRAIN, "val": VAL, "test": TEST}
SPLIT_STREAM = 1  # tags this random stream apart from the others drawn from the same seed


def split_sizes(n: int, test_size: float, val_size: float) -> tuple[int, int]:
    """(test rows, validation rows) of n rows: the test cut first, as train_test_split makes it."""
    n_test = int(np.ceil(n * test_size))
    return n_test, int(np.ceil((n - n_test) * val_size / (1 - test_size))) if val_size else 0


def check_split_sizes(test_size: float, val_size: float) -> None:
    if not 0.0 <= test_size < 1.0:
        raise UserError(f"--test-size must lie in [0, 1), got {test_size}")
    if not 0.0 <= val_size < 1.0 - test_size:
        raise UserError(f"--val-size must lie in [0, 1 - --test-size), got {val_size}")


def check_splittable(counts: np.ndarray | int, labels: list[Any] | None, test_size: float, val_size: float) -> None:
    """All three splits get rows; for classification (`counts`: rows per class, else the row count)
    every class can be stratified."""
    check_split_sizes(test_size, val_size)
    n, parts = int(np.sum(counts)), 1 + bool(val_size) + bool(test_size)
    n_test, n_val = split_sizes(n, test_size, val_size)
    if n < parts or (test_size and n_test < 1) or n - n_test - n_val < 1 or (val_size and n_val < 1):
        raise UserError(f"{n} row(s) cannot be split into training, validation and test rows: add rows")
    if labels is None:
        return
    rare = [labels[k] for k in np.flatnonzero(counts < parts)]
    if rare:
        shown = ", ".join(map(repr, rare[:10])) + (f" and {len(rare) - 10} more" if len(rare) > 10 else "")
        named = f"class {shown} has" if len(rare) == 1 else f"{len(rare)} classes {shown} have"  # `2`: a label
        raise UserError(f"{named} fewer than {parts} rows; a stratified split needs {parts}: drop them, add rows, or "
                        "pass --task regression if the target is a number")
    sizes = {"training": n - n_test - n_val, **({"test": n_test} if test_size else {}),
             **({"validation": n_val} if val_size else {})}
    short = {name: rows for name, rows in sizes.items() if rows < len(labels)}
    if short:
        raise UserError(f"the {', '.join(short)} split(s) would get {min(short.values())} rows, too few to hold all "
                        f"{len(labels)} classes: change --test-size / --val-size, or add rows")


def proportional_counts(class_rows: np.ndarray, total: int) -> np.ndarray:
    """`total` rows shared among classes in proportion to their rows (largest remainders first)."""
    n = int(class_rows.sum())
    exact = class_rows * (total / n) if n else class_rows * 0.0
    counts = np.floor(exact).astype(np.int64)
    short = total - int(counts.sum())
    if short > 0:
        counts[np.argsort(-(exact - counts), kind="stable")[:short]] += 1
    return np.minimum(counts, class_rows)


def assign_splits(y: np.ndarray | None, n: int, test_size: float, val_size: float, seed: int) -> np.ndarray:
    """TRAIN, VAL or TEST for each of n rows; stratified by the class codes `y` (None: one stratum).
    Each class's codes are shuffled in place (one byte a row): no index array of the table."""
    n_test, n_val = split_sizes(n, test_size, val_size)
    class_rows = np.array([n]) if y is None else np.bincount(y)
    test = proportional_counts(class_rows, n_test)
    val = proportional_counts(class_rows - test, n_val)
    out = np.full(n, TRAIN, dtype=np.int8)
    rng = np.random.default_rng([seed, SPLIT_STREAM])
    for k, (rows, k_test, k_val) in enumerate(zip(class_rows, test, val, strict=True)):
        codes = np.full(rows, TRAIN, dtype=np.int8)
        codes[:k_test], codes[k_test:k_test + k_val] = TEST, VAL
        rng.shuffle(codes)
        if y is None:
            out = codes
        else:
            out[y == k] = codes  # the class's rows in file order take the shuffled codes
    return out


@dataclasses.dataclass
class Split:
    """Each row's split (TRAIN, VAL or TEST, a byte a row), and for train_test_split's cut the
    order it gives each split's rows."""

    codes: np.ndarray
    order: dict[str, np.ndarray] | None = None  # None: file order

    def rows(self, name: str) -> np.ndarray:
        """The row numbers of the split `name`, in the split's order."""
        if self.order is not None:
            return self.order[name]
        return np.flatnonzero(self.codes == SPLIT_CODES[name])


def split_rows(n: int, y: np.ndarray | None, labels: list[Any] | None, test_size: float, val_size: float,
               seed: int, as_train_test_split: bool = False) -> Split:
    """The split of n rows, stratified by the class codes `y` (0..K-1, `labels` their names) for
    a classification (`labels` None: a regression, `y` unused). Every split gets rows and every
    class a place in each, or a one-line UserError says why not. `as_train_test_split`: the
    recipes' case, scikit-learn's cut (see the module's docstring); else the draw per class."""
    y = None if labels is None else y
    assert labels is None or y is not None, "a classification is stratified by its class codes"
    counts = n if y is None else np.bincount(y, minlength=len(labels or ()))
    check_splittable(counts, labels, test_size, val_size)
    if as_train_test_split:
        return recipe_split(n, y, test_size, val_size, seed)
    return Split(assign_splits(y, n, test_size, val_size, seed))


def recipe_split(n: int, y: np.ndarray | None, test_size: float, val_size: float, seed: int) -> Split:
    """The recipe's cut: train_test_split for the test rows, then again for validation rows from the rest."""
    from sklearn import model_selection

    rows = np.arange(n)
    try:
        rest, test = model_selection.train_test_split(rows, test_size=test_size, random_state=seed, stratify=y) \
            if test_size else (rows, rows[:0])
        if not val_size:
            train, val = rest, rows[:0]
        else:
            train, val = model_selection.train_test_split(
                rest, test_size=val_size / (1 - test_size), random_state=seed, stratify=None if y is None else y[rest])
    except ValueError as err:  # a case the checks did not foresee: still one line
        raise UserError(f"cannot split {n} rows ({err}): change --test-size / --val-size, or add rows") from None
    codes = np.full(n, TRAIN, dtype=np.int8)
    codes[test], codes[val] = TEST, VAL
    return Split(codes, {"train": train, "val": val, "test": test})


FOLD_STREAM = 3       # the folds' random stream, apart from the split's and the median sample's
TRAIN_ONLY = -1       # a row no member is validated on (cross-fitting's folds cover every row)


def fold_ids(y: np.ndarray | None, folds: int, holdout: float, seed: int, n: int | None = None) -> np.ndarray:
    """Each training row's fold (int8), stratified by the class codes `y` (None: regression, `n` rows).

    With folds >= 2, every row gets one of 0..folds-1 in near-equal numbers per class: member i
    is validated on fold i and trained on the others. With folds == 1, a share `holdout` of
    the rows (per class) gets fold 0 (the one member's validation rows), the others TRAIN_ONLY.
    Pure function of (class codes, seed): every process and every resumed run derives the same."""
    n = len(y) if y is not None else int(n or 0)
    # The permutation Generator.permutation(n) gives, in the smallest integers that hold it:
    # shuffling draws the same whatever the type, and its int64 took 8 bytes a row.
    order = np.arange(n, dtype=np.min_scalar_type(max(n - 1, 0)))
    np.random.default_rng([seed, FOLD_STREAM]).shuffle(order)
    if y is not None:  # classes in turn, each in random order: dealing round-robin stratifies
        order = in_class_order(order, np.asarray(y))
    out = np.empty(n, dtype=np.int8)
    if folds >= 2:
        for part in chunks(n):  # no row-long temporaries
            out[order[part]] = np.arange(part.start, min(n, part.stop)) % folds
    else:
        every = max(1, round(1 / holdout)) if holdout > 0 else n + 1
        out.fill(TRAIN_ONLY)
        out[order[every // 2::every]] = 0
    return out


def in_class_order(order: np.ndarray, y: np.ndarray) -> np.ndarray:
    """`order` sorted stably by each row's class code (0, 1, ..., as the targets are coded), as
    a stable argsort of y[order] sorts it: a counting sort over chunks of CHUNK_ROWS rows, in
    about 6 bytes a row besides `order` and in time linear in the rows whatever the classes,
    where the argsort and its gathers took 24 bytes a row (1.6 GB on a 50M-row table)."""
    codes = np.empty(len(order), dtype=np.min_scalar_type(int(y.max(initial=0))))
    for part in chunks(len(order)):
        codes[part] = y[order[part]]
    classes = int(codes.max(initial=0)) + 1
    per_class = sum((np.bincount(codes[part], minlength=classes) for part in chunks(len(order))),
                    np.zeros(classes, np.int64))
    next_place = np.cumsum(per_class) - per_class  # where each class's next row goes
    out = np.empty_like(order)
    for part in chunks(len(order)):
        by_class = np.argsort(codes[part], kind="stable")  # a radix sort on small codes
        part_codes = codes[part][by_class]
        in_part = np.bincount(part_codes, minlength=classes)
        rank = np.arange(len(part_codes)) - (np.cumsum(in_part) - in_part)[part_codes]  # within its class
        out[next_place[part_codes] + rank] = order[part][by_class]
        next_place += in_part
    return out


