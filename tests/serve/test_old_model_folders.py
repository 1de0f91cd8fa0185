"""Model folders written by an earlier format still predict, byte for byte as they did then."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from builders import infer
from common.errors import InputNote

FIXTURES = Path(__file__).parent / "fixtures"
FOLDERS = ["config_format3/cls", "config_format3/reg", "config_format3/recipe", "config_format4/cls"]
# A regression's values are written whole (17 digits). Since every forward pass is padded to
# whole blocks of 32 rows (common/model.PASS_BLOCK), the rows that ended a pass then no longer
# do, and may differ from then by a float32 rounding of the network's output (carried through
# the target's scaling): the price of a value that no longer depends on the rows beside it.
# Probabilities are written to 6 decimals, and the classes whole: the classes byte for byte, a
# probability to its last decimal, give or take one where another CPU's kernels (AVX-512 against
# AVX2) round the float32 value to the other side of a half (0.343915 against 0.343914).
FLOAT32_ROUNDING = 2.0 ** -22
LAST_DECIMAL = 1e-6 + 1e-12


def assert_same_predictions(now, then) -> None:
    """The same columns and classes; each probability within one unit of its sixth decimal."""
    assert now.column_names == then.column_names and now.num_rows == then.num_rows
    for name in now.column_names:
        if name.startswith("proba_"):
            np.testing.assert_allclose(now.column(name).to_numpy(), then.column(name).to_numpy(), rtol=0,
                                       atol=LAST_DECIMAL)
        else:
            assert now.column(name).to_pylist() == then.column(name).to_pylist(), name


@pytest.mark.parametrize("name", FOLDERS)
def test_an_older_model_folder_predicts_what_it_did(name, tmp_path):
    import pyarrow.csv as pa_csv

    folder = FIXTURES / name
    out = tmp_path / "predictions.csv"
    infer("--ckpt-dir", folder, "--input", folder / "rows.csv", "--output", out)
    now, then = pa_csv.read_csv(out), pa_csv.read_csv(folder / "predictions.csv")
    if not name.endswith("reg"):
        assert_same_predictions(now, then)
        return
    assert now.column_names == then.column_names == ["prediction"] and now.num_rows == then.num_rows
    np.testing.assert_allclose(now.column("prediction").to_numpy(), then.column("prediction").to_numpy(),
                               rtol=FLOAT32_ROUNDING, atol=0)


@pytest.mark.parametrize("name", FOLDERS)
def test_the_python_api_predicts_an_older_model_folder_as_infer_did(name):
    import pyarrow.csv as pa_csv

    from common.api import Predictor

    folder = FIXTURES / name
    model = Predictor.load(folder)
    rows = pa_csv.read_csv(folder / "rows.csv")
    then = pa_csv.read_csv(folder / "predictions.csv")
    with warnings.catch_warnings(record=True) as caught:  # the rows hold levels the model never saw
        warnings.simplefilter("always")
        predicted = model.predict_proba(rows) if model.task == "classification" else model.predict(rows)
    assert all(w.category is InputNote for w in caught), [str(w.message) for w in caught]  # nothing of its age
    if model.task == "classification":
        for k, label in enumerate(model.classes or []):
            np.testing.assert_allclose(np.round(predicted[:, k], 6), then.column(f"proba_{label}").to_numpy(),
                                       rtol=0, atol=LAST_DECIMAL)
    else:
        np.testing.assert_allclose(predicted.astype(np.float64), then.column("prediction").to_numpy(),
                                   rtol=FLOAT32_ROUNDING, atol=0)
