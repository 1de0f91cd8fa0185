"""Model folders written by an earlier format still predict, byte for byte as they did then."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from builders import infer

FIXTURES = Path(__file__).parent / "fixtures"
FOLDERS = ["config_format3/cls", "config_format3/reg", "config_format3/recipe", "config_format4/cls"]


@pytest.mark.parametrize("name", FOLDERS)
def test_an_older_model_folder_predicts_what_it_did(name, tmp_path):
    folder = FIXTURES / name
    out = tmp_path / "predictions.csv"
    infer("--ckpt-dir", folder, "--input", folder / "rows.csv", "--output", out)
    assert out.read_bytes() == (folder / "predictions.csv").read_bytes()


@pytest.mark.parametrize("name", FOLDERS)
def test_the_python_api_predicts_an_older_model_folder_as_infer_did(name):
    import pyarrow.csv as pa_csv

    from common.api import Predictor

    folder = FIXTURES / name
    model = Predictor.load(folder)
    rows = pa_csv.read_csv(folder / "rows.csv")
    then = pa_csv.read_csv(folder / "predictions.csv")
    if model.task == "classification":
        for k, label in enumerate(model.classes or []):
            np.testing.assert_array_equal(np.round(model.predict_proba(rows)[:, k], 6),
                                          then.column(f"proba_{label}").to_numpy())
    else:
        np.testing.assert_array_equal(model.predict(rows).astype(np.float64), then.column("prediction").to_numpy())
