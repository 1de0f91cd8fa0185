"""The console (common/console.py): its width off a terminal."""
import subprocess
import sys

import pytest
from builders import ROOT, script_env

from common.console import _width_off_terminal


@pytest.mark.parametrize("value,width", [("", 120), ("abc", 120), ("0", 120), ("-3", 120), ("97", 97)])
def test_odd_columns_variable_does_not_break_the_console(monkeypatch, value, width):
    monkeypatch.setenv("COLUMNS", value)
    assert _width_off_terminal() == width


@pytest.mark.e2e
def test_importing_the_console_with_an_empty_columns_variable():
    proc = subprocess.run([sys.executable, "-c", "import common.console"], cwd=ROOT, capture_output=True, text=True,
                          env={**script_env(), "COLUMNS": ""})
    assert proc.returncode == 0, proc.stderr
