"""The console (common/console.py): its width off a terminal, from $COLUMNS whatever it holds."""
import io
import runpy
import sys

import pytest

from builders import ROOT
from common.console import _width_off_terminal


@pytest.mark.parametrize("value,width", [("", 120), ("abc", 120), ("0", 120), ("-3", 120), ("97", 97)])
def test_odd_columns_variable_does_not_break_the_console(monkeypatch, value, width):
    monkeypatch.setenv("COLUMNS", value)
    assert _width_off_terminal() == width


def test_importing_the_console_with_an_empty_columns_variable(monkeypatch):
    """The module's own top level, run as an import runs it, off a terminal with an empty $COLUMNS."""
    monkeypatch.setenv("COLUMNS", "")
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # not a terminal: a log file, a job scheduler
    module = runpy.run_path(str(ROOT / "common" / "console.py"))
    assert module["console"].width == 120
