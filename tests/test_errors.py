"""run_cli (common/errors.py): what reaches the user as one line, and what keeps its traceback."""
import numpy as np
import pytest
import torch

from common.errors import run_cli


@pytest.mark.parametrize("error, line", [
    (lambda: np.empty((10**13, 10)), "out of memory (Unable to allocate 728. TiB for an array with shape"),
    # Past any address space (128 TiB): refused whatever the machine's overcommit policy.
    (lambda: torch.empty(10**14, dtype=torch.float64), "out of memory (800,000.0 GB asked for): ask for less"),
])
def test_an_allocation_the_machine_refuses_is_one_line(error, line, capsys):
    """numpy's MemoryError, torch's CPU allocator's RuntimeError (a setting such as --hidden 100000000)."""
    with pytest.raises(SystemExit) as info:
        run_cli(error)
    assert info.value.code == 1
    (said,) = capsys.readouterr().err.strip().splitlines()
    assert said.startswith(f"error: {line}"), said


def test_another_runtime_error_keeps_its_traceback():
    with pytest.raises(RuntimeError, match="a bug"):
        run_cli(lambda: (_ for _ in ()).throw(RuntimeError("a bug")))
