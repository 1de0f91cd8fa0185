"""This process in its group (common/train/process_group.py): who prints an error."""
from common.errors import ProcessError, UserError
from common.train import process_group as launch_module


def test_who_prints_an_error(monkeypatch):
    class State:
        is_local_main_process = False

    monkeypatch.setattr(launch_module, "_state", State())
    assert not launch_module.reports(UserError("the same on every process"))
    assert launch_module.reports(ProcessError("this process's own checkpoint file"))
    State.is_local_main_process = True
    assert launch_module.reports(UserError("the same on every process"))
