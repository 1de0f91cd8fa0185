"""The fitting functions that both paths share: an array in memory is one chunk of the streamed path."""
import statistics

import numpy as np
import pytest
from sklearn.preprocessing import QuantileTransformer, StandardScaler

from builders import make_data, write
from common.config import MakeDataConfig
from common.data.dataset import load_dataset
from common.data.preprocess import fit_categorical, fit_numeric
from common.data.target import fit_target_scaling
from common.errors import UserError
from common.steps import QUANTILE_BOUND, CategoricalStep, Categories, Interpolation


def pieces(values, cuts):
    """`values` as chunks cut at `cuts` (an empty chunk among them, as a split can leave one)."""
    return np.split(values, [0, *cuts])


@pytest.fixture
def column():
    rng = np.random.default_rng(5)
    values = rng.normal(40.0, 7.0, 5000)
    values[rng.random(5000) < 0.1] = np.nan
    return values


def test_a_numeric_step_fitted_in_one_chunk_is_numpys_median_mean_and_std(column):
    step = fit_numeric("x", column, [column])
    present = column[~np.isnan(column)]
    filled = np.where(np.isnan(column), np.median(present), column)
    assert (step.median, step.mean, step.scale, step.indicator) == (np.median(present), filled.mean(), filled.std(),
                                                                  True)


def test_a_numeric_step_fitted_in_many_chunks_equals_one_chunk(column):
    whole = fit_numeric("x", column, [column])
    chunked = fit_numeric("x", column, pieces(column, [1, 700, 701, 3000]))
    assert (chunked.median, chunked.indicator) == (whole.median, whole.indicator)
    assert chunked.mean == pytest.approx(whole.mean, rel=1e-14)
    assert chunked.scale == pytest.approx(whole.scale, rel=1e-14)


def test_moments_are_standard_scalers_to_the_bit(column):
    """One chunk: StandardScaler.fit's figures; chunks: those of partial_fit on the same chunks."""
    values = column[~np.isnan(column)]
    fitted = StandardScaler().fit(values.reshape(-1, 1))
    assert fit_target_scaling([values]) == (fitted.mean_[0], fitted.scale_[0])
    partial = StandardScaler()
    for chunk in pieces(values, [10, 2000, 4000]):
        if len(chunk):
            partial.partial_fit(chunk.reshape(-1, 1))
    assert fit_target_scaling(pieces(values, [10, 2000, 4000])) == (partial.mean_[0], partial.scale_[0])


@pytest.mark.parametrize("cuts", [[], [3, 50]])
def test_a_constant_column_keeps_its_value_exactly_and_scales_by_one(cuts):
    values = np.full(101, 0.1)
    step = fit_numeric("x", values, pieces(values, cuts))
    assert (step.median, step.mean, step.scale, step.indicator) == (0.1, 0.1, 1.0, False)
    assert fit_target_scaling(pieces(values, cuts)) == (0.1, 1.0)


def test_an_empty_or_blank_column_fills_with_zero():
    blank = np.full(4, np.nan)
    step = fit_numeric("x", blank, [blank])
    assert (step.median, step.mean, step.scale, step.indicator) == (0.0, 0.0, 1.0, True)


def test_categorical_levels_are_the_same_from_one_chunk_or_many():
    rng = np.random.default_rng(2)
    letters = ["abcdefg"[int(r * 7)] for r in rng.random(3000) ** 2]  # "a" most frequent, "g" least
    column = Categories.from_list([None if i % 20 == 0 else v for i, v in enumerate(letters)])
    whole = fit_categorical("c", column.values, [column.index], min_rows=20, max_levels=5)
    chunked = fit_categorical("c", column.values, pieces(column.index, [1, 999, 2000]), min_rows=20, max_levels=5)
    assert chunked == whole and len(whole.levels) == 5
    assert whole.levels == ["a", "b", "c", "d", "e"]  # the most frequent, most first


def test_quantile_scaling_maps_a_skewed_column_as_quantile_transformer_does():
    values = np.random.default_rng(3).lognormal(0.0, 1.5, 30_000)
    step = fit_numeric("x", values, [values], quantile=True)
    assert len(step.quantiles) == 1000  # one per 30 rows, at most 1,000
    ours = step.scaled(values)
    theirs = QuantileTransformer(n_quantiles=1000, output_distribution="normal", subsample=None) \
        .fit_transform(values.reshape(-1, 1))[:, 0]
    inner = np.abs(theirs) < 3  # both clip the ends; between quantiles, ours is linear on the normal's scale
    assert np.abs(ours - theirs)[inner].max() < 0.02
    assert abs(ours.mean()) < 0.01 and abs(ours.std() - 1) < 0.02  # a normal, however skewed the input
    assert np.all(np.diff(step.scaled(np.sort(values))) >= 0)      # order kept


def test_quantile_scaling_gives_a_column_of_few_values_the_middle_of_its_levels():
    flags = np.repeat([0.0, 1.0], [500, 500])
    step = fit_numeric("x", flags, [flags], quantile=True)
    low, high = step.scaled(np.array([0.0, 1.0]))
    assert low == -high and 0.6 < high < 0.8  # about the normal's quartiles, as for levels 1/4 and 3/4
    far = step.scaled(np.array([-1e9, 1e9]))
    assert -5.3 < far[0] < -5.1 and 5.1 < far[1] < 5.3  # beyond the training range: the ends, finite


def test_a_fifty_thousand_level_column_is_capped(tmp_path):
    rng = np.random.default_rng(3)
    rows = 60_000
    code = rng.integers(0, 50_000, rows)
    write(tmp_path / "wide.parquet", {"code": [f"c{c}" for c in code], "x": rng.normal(size=rows),
                                      "y": (code % 2).astype(np.int64)})
    make_data("--csv", tmp_path / "wide.parquet", "--target", "y", "--out-dir", tmp_path)
    (step,) = load_dataset(tmp_path / "wide").preprocessor.categorical
    assert len(step.levels) == MakeDataConfig().max_levels  # the most frequent, each with >= 2 training rows
    make_data("--csv", tmp_path / "wide.parquet", "--target", "y", "--out-dir", tmp_path, "--max-levels", "100000")
    (step,) = load_dataset(tmp_path / "wide").preprocessor.categorical
    assert MakeDataConfig().max_levels < len(step.levels) < 50_000  # levels seen once in training share code 0
    assert CategoricalStep("c", ["a", None]).codes(Categories.from_list(["a", None, "zz"])).tolist() == [1.0, 2.0, 0.0]
    assert CategoricalStep("c", ["a"]).codes(Categories.from_list(["a", None, "zz"])).tolist() == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("levels", [["false", "true", None], ["No", "Yes"], ["0", "1"]])
def test_a_column_of_truths_reads_every_spelling_of_them_and_others_as_unseen(levels):
    """A true/false column given 1/0 (a DataFrame of ints) or yes/no at prediction: the same truths."""
    step = CategoricalStep("flag", levels)
    given = ["true", "True", "TRUE", "1", "yes", "Y", "t", "false", "0", "no", "N", "F", "maybe", "2"]
    codes = step.codes(Categories.from_list(given)).tolist()
    true, false = (step.lookup[next(lv for lv in levels if lv and lv.lower() in words)] for words in
                   (("true", "yes", "1"), ("false", "no", "0")))
    assert codes == [true] * 7 + [false] * 5 + [0.0, 0.0]
    assert step.codes(Categories.from_list(["1.0", "0.0"])).tolist() == [true, false]  # pandas' 0/1 with a blank
    # Other text keeps its own spellings only.
    assert CategoricalStep("c", ["yes", "maybe"]).codes(Categories.from_list(["yes", "1", "Yes"])).tolist() == \
        [1.0, 0.0, 0.0]


def test_a_whole_number_level_matches_its_spelling_with_a_trailing_zero_either_way():
    """pandas writes an integer column with a blank as 121.0: a code learned as 121 (or as 121.0)
    is the same code written the other way. A leading zero is part of a code (01 is not 1)."""
    learned_whole = CategoricalStep("user", ["121", "-7", "01", None])
    assert learned_whole.codes(Categories.from_list(["121.0", "121", "-7.0", "01", "1", "1.0", "121.5", None])
                               ).tolist() == [1.0, 1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 4.0]
    learned_float = CategoricalStep("user", ["120.0", "65.0"])
    assert learned_float.codes(Categories.from_list(["120", "65", "65.0", "66"])).tolist() == [1.0, 2.0, 2.0, 0.0]


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64).view(np.uint64)


@pytest.mark.parametrize("draw", ["normal", "lognormal", "few_values", "integers", "outliers"])
def test_the_bucketed_interpolation_is_numpys_interp_to_the_last_bit(draw):
    """Quantiles of every shape a column gives (ties, skew, a range stretched by one value), and
    values at, between, beyond and among the knots, blanks and infinities included."""
    rng = np.random.default_rng(7)
    column = {"normal": rng.standard_normal(30_000), "lognormal": rng.lognormal(0, 2, 30_000),
              "few_values": rng.integers(0, 3, 30_000).astype(float), "integers": rng.poisson(4, 30_000) * 1.0,
              "outliers": np.append(rng.standard_normal(29_990), rng.standard_normal(10) * 1e6)}[draw]
    step = fit_numeric("x", column, [column], quantile=True)
    knots = np.asarray(step.quantiles)
    values = np.concatenate([rng.choice(column, 50_000), knots, np.nextafter(knots, np.inf),
                             np.nextafter(knots, -np.inf), [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e300, -1e300],
                             rng.uniform(knots[0] - 1, knots[-1] + 1, 20_000)])
    levels = np.linspace(0.0, 1.0, len(knots))
    signed_zeros = np.where(np.arange(len(knots)) % 2, -0.0, 0.0)  # np.interp returns a knot's -0.0 as it is
    for xp, fp in [(knots, levels), (-knots[::-1], -levels[::-1]), (levels, np.sin(levels) - 0.5),
                   (knots, signed_zeros)]:
        ours = Interpolation(xp, fp)
        np.testing.assert_array_equal(bits(ours(values)), bits(np.interp(values, xp, fp)))
    assert np.array_equal(bits(step.scaled(values)), bits(reference_normal_scores(knots, values)))


def reference_normal_scores(q: np.ndarray, values: np.ndarray) -> np.ndarray:
    """What the scaling computed with np.interp alone."""
    levels = np.linspace(0.0, 1.0, len(q))
    scores = np.asarray([statistics.NormalDist().inv_cdf(p)
                         for p in np.clip(levels, QUANTILE_BOUND, 1 - QUANTILE_BOUND)])
    if np.all(np.diff(q) > 0):
        return np.interp(values, q, scores)
    level = 0.5 * (np.interp(values, q, levels) - np.interp(-values, -q[::-1], -levels[::-1]))
    return np.interp(level, levels, scores)


def test_the_bucketed_interpolation_takes_the_fast_path_where_knots_spread_and_not_where_they_crowd():
    spread = Interpolation(np.linspace(-3, 3, 1000), np.linspace(0, 1, 1000))
    crowded = Interpolation(np.append(np.linspace(-3, 3, 999), 1e9), np.linspace(0, 1, 1000))
    skewed = Interpolation(np.quantile(np.random.default_rng(0).lognormal(size=100_000), np.linspace(0, 1, 1000)),
                           np.linspace(0, 1, 1000))
    assert spread.steps <= 3 and skewed.steps <= 4 and crowded.steps > Interpolation.MOST_STEPS


def test_a_repeating_whole_number_column_gets_a_view_as_codes_and_other_columns_do_not():
    from common.data.preprocess import fit_code_view

    rng = np.random.default_rng(3)
    occupation = rng.choice([4700, 5120, 8710, 10, 2300, 9620, 430, 3600, 6230, 7700, 1, 12], 2_000).astype(float)
    occupation[::50] = np.nan
    view = fit_code_view("occ", [occupation[:700], occupation[700:]], 2, 5000)
    assert view is not None and view.of_number and view.input_name == "occ_code"
    counts = {v: int(np.sum(occupation == v)) for v in np.unique(occupation[~np.isnan(occupation)])}
    assert view.levels == [f"{int(v)}" for v, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]
    assert view.number_codes(np.array([8710.0, 8710.5, 99.0, np.nan]))[1:].tolist() == [0, 0, 0]
    assert view.number_codes(np.array([8710.0]))[0] == view.levels.index("8710") + 1
    assert fit_code_view("few", [rng.integers(0, 9, 2000).astype(float)], 2, 5000) is None  # 9 values
    assert fit_code_view("amount", [rng.integers(0, 10**6, 2000).astype(float)], 2, 5000) is None  # rarely repeats
    assert fit_code_view("capped", [occupation], 2, 3).levels == view.levels[:3]
    assert CategoricalStep("occ", [], of_number=True).number_codes(np.array([1.0, np.nan])).tolist() == [0, 0]


def test_fractions_that_repeat_get_a_view_matched_at_single_precision():
    """A household's income repeated over its members' years: a view of fractions, with fewer
    rows a value than whole numbers need; its values match whether read as doubles or floats."""
    from common.data.preprocess import MIN_ROWS_PER_CODE, MIN_ROWS_PER_FRACTION_CODE, fit_code_view
    from common.schema import Fields

    rng = np.random.default_rng(4)
    incomes = np.log(rng.uniform(1000, 90_000, 300))  # 300 households ...
    column = incomes[rng.integers(0, 300, 300 * 10)]  # ... of ~10 rows each: too few for whole numbers
    assert MIN_ROWS_PER_FRACTION_CODE <= 10 < MIN_ROWS_PER_CODE
    view = fit_code_view("linc", [column[:1000], column[1000:]], 2, 5000)
    single = column.astype(np.float32).astype(np.float64)
    assert view is not None and view.fractional and len(view.levels) == len(np.unique(single))
    assert all(float(level) in set(single.tolist()) for level in view.levels)  # counted as they are matched
    codes = view.number_codes(column)
    assert (codes > 0).all()
    assert (view.number_codes(column.astype(np.float32)) == codes).all()  # the same value as a float
    assert view.number_codes(np.array([incomes[0] + 1e-3, np.nan])).tolist() == [0, 0]
    again = CategoricalStep.read(Fields(view.to_json(), "dataset.json", "regenerate it"))
    assert again == view and (again.number_codes(column) == codes).all()
    with pytest.raises(UserError, match="finite numbers written as text"):
        CategoricalStep.read(Fields({**view.to_json(), "levels": ["1.5", "inf"]}, "dataset.json", "regenerate it"))
    assert fit_code_view("measured", [rng.normal(size=3000)], 2, 5000) is None  # fractions that never repeat
    pairs = np.repeat(np.arange(20) * 1000 + 1_234_567.89, 20)
    pairs[::2] += 0.02  # two doubles a value, one float: one level each, none left unused
    assert len(fit_code_view("pairs", [pairs], 2, 5000).levels) == 20
    assert fit_code_view("scale", [np.repeat(np.arange(34) / 7, 100)], 2, 5000) is None  # a scale of few steps
    whole = fit_code_view("id", [np.repeat(np.arange(2.0**24, 2.0**24 + 40), 60)], 2, 5000)
    assert whole is not None and not whole.fractional  # whole numbers keep their exact match
    assert whole.number_codes(np.array([2.0**24 + 1]))[0] != whole.number_codes(np.array([2.0**24]))[0]


def test_a_view_as_codes_is_written_and_read_and_shuffled_with_its_column():
    from common.schema import Fields
    from common.steps import NumericStep, Preprocessor

    pre = Preprocessor([NumericStep("age", 40.0, 40.0, 10.0, True), NumericStep("x", 0.0, 0.0, 1.0, False)],
                       [CategoricalStep("city", ["a", "b"]),
                        CategoricalStep("age", ["30", "41", "-2"], of_number=True)])
    assert pre.input_names == ["age", "x", "age_missing", "city", "age_code"]
    assert pre.column_names == ["age", "x", "city"]  # the column is read once, as a number
    assert pre.column_inputs() == {"age": [0, 2, 4], "x": [1], "city": [3]}
    ages = np.array([41.0, np.nan, -2.0, 35.0])
    X = pre.transform({"age": ages, "x": np.zeros(4)}.__getitem__,
                      lambda name: Categories.from_list(["b", "a", None, "a"]), 4)
    assert X[:, 4].tolist() == [2, 0, 3, 0] and X[:, 3].tolist() == [2, 1, 0, 1]
    again = Preprocessor.read(Fields({"preprocess": pre.to_json()}, "dataset.json", "regenerate it"))
    assert again == pre and again.categorical[1].of_number
    broken = pre.to_json()
    broken["numeric"] = broken["numeric"][1:]
    with pytest.raises(UserError, match="no numeric step"):
        Preprocessor.read(Fields({"preprocess": broken}, "dataset.json", "regenerate it"))


def test_roughness_tells_a_code_from_a_quantity():
    """A code's neighbouring values have unrelated target means (about 2); an age's or a length's
    move smoothly (about 0); a column that does not move the target at all has no view."""
    from common.data.preprocess import MIN_CODE_ROUGHNESS, fit_code_view, roughness

    rng = np.random.default_rng(5)
    values = rng.integers(0, 40, 20_000).astype(float)
    effect = rng.normal(size=40)

    def measured(mean_of):
        y = mean_of[values.astype(int)] + rng.normal(size=len(values))
        ranks = (np.argsort(np.argsort(y)) / len(y))[:, None]
        view = fit_code_view("x", [values], 2, 5000)
        return roughness(view, [(values[:7000], ranks[:7000]), (values[7000:], ranks[7000:])])

    assert measured(effect) > 1.2 > MIN_CODE_ROUGHNESS  # a code
    assert measured(np.linspace(-1, 1, 40) ** 2) < 0.2 < MIN_CODE_ROUGHNESS  # a smooth curve
    assert measured(np.zeros(40)) < MIN_CODE_ROUGHNESS  # nothing to learn from it
