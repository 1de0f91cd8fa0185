"""Model folders written by an earlier format still predict, byte for byte as they did then."""
from __future__ import annotations

from pathlib import Path

import pytest

from builders import infer

FIXTURES = Path(__file__).parent / "fixtures" / "config_format3"


@pytest.mark.parametrize("name", ["cls", "reg", "recipe"])
def test_a_format_3_model_folder_predicts_what_it_did(name, tmp_path):
    folder = FIXTURES / name
    out = tmp_path / "predictions.csv"
    infer("--ckpt-dir", folder, "--input", folder / "rows.csv", "--output", out)
    assert out.read_bytes() == (folder / "predictions.csv").read_bytes()
