"""SIGTERM and Ctrl-C stop a run at a step boundary (common/train/stop_signal.py), save a checkpoint
there when asked, and say how to resume."""
import os
import signal

import pytest

from builders import read_metrics, train
from common.errors import Stopped, run_cli
from common.model_folder import load_model_dir
from common.train.trainer import Trainer

ARGS = ["--epochs", "3", "--batch-size", "64", "--eval-every", "1", "--grad-accum", "2", "--lr-schedule", "cosine"]


def signal_after_batches(monkeypatch, batches: int, signum: int) -> None:
    """This process receives `signum` once `batches` batches have run: the moment is exact."""
    calls = []
    run_batch = Trainer._run_batch

    def counting(self, *args):
        run_batch(self, *args)
        calls.append(1)
        if len(calls) == batches:
            os.kill(os.getpid(), signum)

    monkeypatch.setattr(Trainer, "_run_batch", counting)


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_epoch_saves_that_step_and_resumes_bit_identically(small_val, tmp_path, monkeypatch,
                                                                         signum, code):
    data = ["--data", small_val, *ARGS]
    train(*data, "--ckpt-dir", tmp_path / "whole")
    signal_after_batches(monkeypatch, 66 + 23, signum)  # 66 steps an epoch: in epoch 1, inside a group of 2
    with pytest.raises(Stopped) as info:
        train(*data, "--ckpt-dir", tmp_path / "cut", "--save-on-signal")
    saved = tmp_path / "cut" / "checkpoints" / "epoch_000001_step_000024"
    assert info.value.exit_code == code and f"--resume (from {saved})" in str(info.value)
    assert "no model was saved" in str(info.value)
    monkeypatch.undo()
    train(*data, "--ckpt-dir", tmp_path / "cut", "--resume")
    whole = (tmp_path / "whole" / "model.safetensors").read_bytes()
    assert (tmp_path / "cut" / "model.safetensors").read_bytes() == whole
    assert read_metrics(tmp_path / "cut") == read_metrics(tmp_path / "whole")  # the cut epoch's loss too


def test_without_saving_a_signal_says_nothing_was_saved(small_val, tmp_path, monkeypatch):
    signal_after_batches(monkeypatch, 10, signal.SIGTERM)
    with pytest.raises(Stopped) as info:
        train("--data", small_val, *ARGS, "--ckpt-dir", tmp_path)
    assert "no checkpoint was written (--checkpoint-every N or --save-on-signal" in str(info.value)
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "model.safetensors").exists()


@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_while_a_stop_unwinds_still_names_the_checkpoint(second, capsys):
    """The second Ctrl-C of a quick double press lands while the first one's Stopped is on its way
    out (a `finally` closing files); the line the user reads is still the one naming the checkpoint."""

    def stopped_then_signalled():
        try:
            raise Stopped("Ctrl-C received; go on with --resume (from run/checkpoints/epoch_000003)", 130)
        finally:
            os.kill(os.getpid(), second)

    with pytest.raises(SystemExit) as info:
        run_cli(stopped_then_signalled)
    assert info.value.code == 130
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == "stopped: Ctrl-C received; go on with --resume (from run/checkpoints/epoch_000003)"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_signal_as_the_last_epoch_ends_stops_there_and_a_resume_only_saves(small_val, tmp_path, monkeypatch):
    """Noted while the last epoch is evaluated, the signal stops the run at that epoch's end as at any
    other's, the earlier model untouched; --resume takes nothing more than the save."""
    data = ["--data", small_val, *ARGS]
    train(*data, "--ckpt-dir", tmp_path / "whole")
    train(*data, "--ckpt-dir", tmp_path / "cut", "--seed", "7")  # an earlier run in the folder
    earlier = (tmp_path / "cut" / "model.safetensors").read_bytes()
    evaluate = Trainer.evaluate

    def signalled_at_the_last(self, epoch, *args):
        record = evaluate(self, epoch, *args)
        if epoch == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return record

    monkeypatch.setattr(Trainer, "evaluate", signalled_at_the_last)
    with pytest.raises(Stopped) as info:
        train(*data, "--ckpt-dir", tmp_path / "cut", "--save-on-signal")
    assert info.value.exit_code == 130 and "Ctrl-C after epoch 2" in str(info.value)
    assert f"--resume (from {tmp_path / 'cut' / 'checkpoints' / 'epoch_000002'})" in str(info.value)
    assert (tmp_path / "cut" / "model.safetensors").read_bytes() == earlier
    monkeypatch.undo()
    train(*data, "--ckpt-dir", tmp_path / "cut", "--resume")
    whole = (tmp_path / "whole" / "model.safetensors").read_bytes()
    assert (tmp_path / "cut" / "model.safetensors").read_bytes() == whole


@pytest.mark.parametrize("signum, by, code", [(signal.SIGINT, "Ctrl-C", 130), (signal.SIGTERM, "SIGTERM", 143)])
def test_a_signal_after_training_stops_before_the_model_is_swapped_in(small_val, tmp_path, monkeypatch, capsys,
                                                                     signum, by, code):
    """While the report is made (the columns' importance, the card): no step to wait for, so the run
    stops at once, in one line, and the earlier run's model stays."""
    import common.train.session as session

    data = ["--data", small_val, *ARGS]
    train(*data, "--ckpt-dir", tmp_path, "--seed", "7")
    earlier = {name: (tmp_path / name).read_bytes() for name in ("model.safetensors", "config.json")}
    made = session.RunReport.made

    def signalled(*args):
        os.kill(os.getpid(), signum)
        return made(*args)

    monkeypatch.setattr(session.RunReport, "made", signalled)
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        run_cli(lambda: train(*data, "--ckpt-dir", tmp_path))
    assert info.value.code == code
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (f"stopped: {by} after training, before the model was saved: no checkpoint was written "
                    f"(--checkpoint-every N or --save-on-signal keep one); {tmp_path} keeps the earlier run's model "
                    "files")
    assert {name: (tmp_path / name).read_bytes() for name in earlier} == earlier


def test_a_signal_while_the_model_files_are_swapped_in_waits_for_the_swap(small_val, tmp_path, monkeypatch,
                                                                          capsys):
    """Stopped midway, the folder would hold one run's weights beside another's config: the stop
    waits for the last rename, then says the model was written."""
    import common.train.run_folder as run_folder

    data = ["--data", small_val, *ARGS]
    train(*data, "--ckpt-dir", tmp_path, "--seed", "7")
    earlier = (tmp_path / "model.safetensors").read_bytes()
    together = run_folder.write_together

    def signalled_midway(files):
        os.kill(os.getpid(), signal.SIGINT)
        together(files)

    monkeypatch.setattr(run_folder, "write_together", signalled_midway)
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        run_cli(lambda: train(*data, "--ckpt-dir", tmp_path))
    assert info.value.code == 130
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (f"stopped: interrupted by Ctrl-C; the model in {tmp_path} had been written before it; other "
                    "files were left as they were")
    assert (tmp_path / "model.safetensors").read_bytes() != earlier
    load_model_dir(tmp_path)  # the weights and the config.json written with them


def test_a_process_gone_after_the_commit_is_one_line_saying_the_model_was_written(small_val, tmp_path, monkeypatch,
                                                                                   capsys):
    """A signal to one worker alone, once the model is in place: the last barrier loses its peer."""
    from accelerate import Accelerator

    import common.train.session as session

    gone: list[bool] = []
    stopped, barrier = session.stop_heartbeat, Accelerator.wait_for_everyone

    def lost_after_the_commit(self):
        if gone:  # the barrier after the heartbeat stopped: the run's last
            raise RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer")
        return barrier(self)

    monkeypatch.setattr(session, "stop_heartbeat", lambda: (stopped(), gone.append(True)))
    monkeypatch.setattr(Accelerator, "wait_for_everyone", lost_after_the_commit)
    with pytest.raises(SystemExit):  # the line as the command prints it: saying the model was written once
        run_cli(lambda: train("--data", small_val, *ARGS, "--ckpt-dir", tmp_path))
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: another process of the run ended before this one (")
    assert line.endswith(f"the model in {tmp_path} had been written, whole, before it")
    load_model_dir(tmp_path)


def test_a_signal_the_process_was_started_ignoring_stays_ignored():
    """`train.py &` in a script starts with SIGINT ignored: a Ctrl-C at the terminal is not for
    it. The training loop's handler took SIGINT back, so timing decided whether it stopped."""
    from common.train.stop_signal import StopSignal

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with StopSignal(accelerator=None):
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
