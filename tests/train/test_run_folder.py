"""The run folder (--ckpt-dir, common/train/run_folder.py): what a run writes there (metrics.jsonl,
TensorBoard logs through Accelerate's trackers, the progress bar on the console), and an earlier
run left as it was when a new one cannot start or cannot finish."""
import contextlib
import errno
import json
import shutil
from pathlib import Path

import pytest

import train as train_script
from builders import read_metrics, snapshot, tmpfs, train, user_error
from common.train import run_folder


def test_tensorboard_gets_every_evaluation(small_cls, tmp_path, capsys):
    pytest.importorskip("tensorboard")  # in requirements.txt; skipped only where it was left out
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train("--data", small_cls, "--ckpt-dir", tmp_path, "--epochs", "5", "--eval-every", "2",
          "--log-with", "tensorboard")
    out = capsys.readouterr().out
    events = EventAccumulator(str(tmp_path / "logs"))
    events.Reload()
    records = read_metrics(tmp_path)
    accuracy = events.Scalars("accuracy")
    assert [e.step for e in accuracy] == [r["epoch"] for r in records] == [0, 2, 4]
    assert [round(e.value, 5) for e in accuracy] == [round(r["accuracy"], 5) for r in records]
    assert "test_loss" in events.Tags()["scalars"]
    assert "epoch 5/5" in out and "loss" in out and "left" in out


@pytest.mark.parametrize("flag,value", [("--epochs", "0"), ("--batch-size", "-3"), ("--hidden", "0")])
def test_non_positive_settings_leave_an_earlier_run_alone(small_cls, tmp_path, flag, value):
    for name in ("model.safetensors", "config.json", "metrics.jsonl"):
        (tmp_path / name).write_text("an earlier run's")
    message = user_error(train_script.main, "--data", small_cls, "--ckpt-dir", tmp_path, flag, value)
    assert flag in message and "positive" in message
    for name in ("model.safetensors", "config.json", "metrics.jsonl"):
        assert (tmp_path / name).read_text() == "an earlier run's"


def test_a_failed_run_leaves_the_earlier_run_whole(small_cls, tmp_path, monkeypatch):
    """The final write fails (ENOSPC injected at the weights' write): nothing of the earlier set changes."""
    train("--data", small_cls, "--ckpt-dir", tmp_path, "--epochs", "2")
    before = snapshot(tmp_path)

    def full_disk(path, state_dict):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run_folder, "write_weights_file", full_disk)
    message = user_error(train_script.main, "--data", small_cls, "--ckpt-dir", tmp_path, "--epochs", "3",
                         "--seed", "7")
    assert "No space left on device" in message and "keeps what it held" in message
    assert snapshot(tmp_path) == before
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("name", ["metrics.jsonl", "config.json", "importance.json"])
def test_a_folder_where_a_model_file_goes_is_found_before_any_file_is_replaced(small_cls, tmp_path, name):
    """A rename onto a folder failed after the weights (and config.json) had been renamed into
    place: the new model was in use while the run said it had failed and the old was kept."""
    train("--data", small_cls, "--ckpt-dir", tmp_path, "--epochs", "1")
    (tmp_path / name).unlink()
    (tmp_path / name).mkdir()
    live = (".lock", "metrics.running.jsonl")  # the run's own, written as it trains
    files = lambda: {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file() and p.name not in live}
    before = files()
    assert "model.safetensors" in before
    message = user_error(train_script.main, "--data", small_cls, "--ckpt-dir", tmp_path, "--epochs", "1",
                         "--seed", "7")
    assert f"cannot write {tmp_path / name} (a folder stands where the file goes): move that folder away" in message
    assert files() == before and not list(tmp_path.glob(".*.tmp"))
    assert not (tmp_path / "metrics.running.jsonl").exists()  # said before it trained, not after


def test_a_full_disk_before_a_fresh_run_folder_is_made_is_one_line(small_cls, tmp_path):
    """Not a byte free when the run takes its folder's lock: writing the holder's pid was a traceback."""
    with tmpfs(tmp_path / "disk", "size=3M") as disk:
        with open(disk / "filler", "wb") as fh, contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        message = user_error(train_script.main, "--data", small_cls, "--ckpt-dir", disk / "fresh", "--epochs", "1")
        assert "No space left on device" in message and not (disk / "fresh" / "model.safetensors").exists()


def test_a_full_disk_during_training_is_one_line_and_loses_nothing(small_cls, tmp_path):
    """A real full disk: a 3 MB tmpfs, filled up while the second run trains."""
    with tmpfs(tmp_path / "disk", "size=3M") as disk:
        train("--data", small_cls, "--ckpt-dir", disk, "--epochs", "2")
        before = snapshot(disk)
        with open(disk / "filler", "wb") as fh, contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        message = user_error(train_script.main, "--data", small_cls, "--ckpt-dir", disk, "--epochs", "3",
                             "--eval-every", "1", "--seed", "7")
        assert "No space left on device" in message
        assert snapshot(disk) == before
        lines = (disk / "metrics.running.jsonl").read_text().splitlines()
        assert all(json.loads(line) for line in lines)  # no half line


@pytest.mark.parametrize("free_kb", [0, 8])
def test_tensorboards_logs_on_a_full_disk_are_one_line_and_lose_nothing(small_cls, tmp_path, free_kb, capfd):
    """TensorBoard's writer thread fails on its own schedule: its traceback is never printed."""
    pytest.importorskip("tensorboard")
    with tmpfs(tmp_path / "disk", "size=3M") as disk:
        train("--data", small_cls, "--ckpt-dir", disk, "--epochs", "2")
        before = snapshot(disk)
        with open(disk / "filler", "wb") as fh:
            fh.write(b"\0" * max(0, shutil.disk_usage(disk).free - free_kb * 1024))
        message = user_error(train_script.main, "--data", small_cls, "--ckpt-dir", disk, "--epochs", "3",
                             "--eval-every", "1", "--seed", "7", "--log-with", "tensorboard")
        assert "No space left on device" in message and "\n" not in message, message
        assert snapshot(disk) == before
        assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize("kind,said", [("file", "cannot write in {logs}: it is a file, not a folder"),
                                       ("link", "{logs} is a link to {gone}, which does not exist")])
def test_a_file_or_a_link_to_nowhere_where_tensorboards_logs_go_is_one_line(small_cls, tmp_path, kind, said):
    pytest.importorskip("tensorboard")
    (tmp_path / "run").mkdir()
    logs = tmp_path / "run" / "logs"
    if kind == "file":
        logs.write_text("a file")
    else:
        logs.symlink_to(tmp_path / "gone")
    message = user_error(train_script.main, "--data", small_cls, "--ckpt-dir", tmp_path / "run", "--epochs", "1",
                         "--log-with", "tensorboard")
    assert said.format(logs=logs, gone=tmp_path / "gone") in message and "\n" not in message, message


@pytest.mark.parametrize("make,words", [
    (lambda d: d.write_text("a file"), ["cannot write in", "it is a file, not a folder"]),
    (lambda d: (d.mkdir(), (d / "checkpoints").write_text("a file")), ["checkpoints is a file"]),
])
def test_a_folder_that_cannot_take_the_run(small_cls, tmp_path, make, words):
    make(tmp_path / "run")
    message = user_error(train_script.main, "--data", small_cls, "--ckpt-dir", tmp_path / "run", "--epochs", "1",
                         "--checkpoint-every", "1")
    assert all(word in message for word in words), message


def test_a_read_only_folder(small_cls, tmp_path):
    with tmpfs(tmp_path / "ro", "ro,size=1M") as folder:
        message = user_error(train_script.main, "--data", small_cls, "--ckpt-dir", folder, "--epochs", "1")
        assert "cannot write in" in message and "Read-only" in message


def test_a_checkpoint_that_fills_the_disk_is_one_line_in_the_users_words(small_cls, tmp_path):
    """torch's serializer reports a full disk as "[enforce fail at inline_container.cc:672] unexpected
    pos"; the user reads what happened and where the last checkpoint is."""
    with tmpfs(tmp_path / "disk", "size=3M") as disk:
        with open(disk / "filler", "wb") as fh:
            fh.write(b"\0" * (3 * 1024 * 1024 - 600_000))  # room for the weights, not for Adam's state too
        message = user_error(train_script.main, "--data", small_cls, "--ckpt-dir", disk / "run", "--epochs", "3",
                             "--checkpoint-every", "1", "--hidden", "256", "256")
    assert "cannot save checkpoint epoch_000000" in message and "No space left on device" in message
    assert "enforce fail" not in message and "unexpected pos" not in message, message


def test_a_ckpt_dir_that_is_a_link_to_nowhere_is_named_as_such(small_cls, tmp_path):
    (tmp_path / "run").symlink_to(tmp_path / "gone" / "run")
    message = user_error(train_script.main, "--data", small_cls, "--ckpt-dir", tmp_path / "run", "--epochs", "1")
    assert f"{tmp_path / 'run'} is a link to {tmp_path / 'gone' / 'run'}, which does not exist" in message
    assert "File exists" not in message


def test_a_model_of_another_data_set_is_replaced_with_a_note_and_a_rerun_without(tmp_path, small_cls, small_val,
                                                                                    capsys):
    run = tmp_path / "run"
    train("--data", small_cls, "--ckpt-dir", run, "--epochs", "1", "--importance-rows", "0")
    train("--data", small_cls, "--ckpt-dir", run, "--epochs", "2", "--importance-rows", "0")  # new settings
    assert "held a model of another data set" not in capsys.readouterr().out
    train("--data", small_val, "--ckpt-dir", run, "--epochs", "1", "--importance-rows", "0")
    out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert f"Note: {run} held a model of the data set {small_cls}, now replaced" in out
    assert json.loads((run / "config.json").read_text())["training"]["data"] == str(small_val)


def test_a_data_set_folder_is_refused_as_the_run_folder(small_cls, tmp_path):
    """The model's files would land among the arrays; make_data.py would then refuse to make it again."""
    import shutil

    shutil.copytree(small_cls, tmp_path / "cls_data")
    before = sorted(p.name for p in (tmp_path / "cls_data").iterdir())
    message = user_error(train_script.main, "--data", tmp_path / "cls_data", "--ckpt-dir", tmp_path / "cls_data")
    assert message == (f"--ckpt-dir {tmp_path / 'cls_data'} is a data set folder (make_data.py's): give the run a "
                       "folder of its own, such as runs/cls_data")
    assert sorted(p.name for p in (tmp_path / "cls_data").iterdir()) == before


@pytest.mark.parametrize("files,words", [
    ({"config.json": '{"experiment": "keep me"}', "curves.png": "x"}, ["holds a config.json that is no model config"]),
    ({"curves.png": "x", "confusion.png": "x"}, ["holds curves.png, confusion.png but no model's config.json"]),
    ({"model.safetensors": "weights of another tool"}, ["holds model.safetensors but no model's config.json"]),
    # a config of another tool's with a task and a model, and a folder an earlier run used (its lock)
    ({"config.json": '{"task": "classification", "model": "resnet18", "lr": 0.01}'}, ["no model config"]),
    ({".lock": "", "config.json": '{"lr": 0.1}', "importance.json": "mine"}, ["no model config"]),
])
def test_a_folder_of_somebody_elses_files_is_refused_before_training(small_cls, tmp_path, files, words):
    """A run's commit replaced a config.json of the user's and removed pictures it did not draw."""
    folder = tmp_path / "results"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    message = user_error(train_script.main, "--data", small_cls, "--ckpt-dir", folder, "--epochs", "1")
    assert all(word in message for word in words), message
    assert {p.name: p.read_text() for p in folder.iterdir()} == files
    assert not (folder / "metrics.running.jsonl").exists()  # refused before it trained


def test_a_folder_of_a_run_or_of_its_own_readme_takes_a_run(small_cls, tmp_path):
    """An earlier run's folder, of today's config format or format 3's, and a folder holding only
    notes of the user's, are run folders."""
    old = tmp_path / "old"
    shutil.copytree(Path(__file__).parents[1] / "serve" / "fixtures" / "config_format3" / "cls", old)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.md").write_text("my notes")
    for folder in (old, tmp_path / "notes", tmp_path / "notes"):
        train("--data", small_cls, "--ckpt-dir", folder, "--epochs", "1")
        assert (folder / "model.safetensors").is_file()
    assert (tmp_path / "notes" / "README.md").read_text() == "my notes"


def test_only_the_disks_refusals_are_said_of_the_logs_folder(tmp_path):
    """A tracker's server out of reach (requests' ConnectionError is an OSError) is no full disk."""
    from common.files import WriteFailed

    with pytest.raises(ConnectionError), run_folder.tracker_writes(tmp_path):
        raise ConnectionError("the tracker's server did not answer")
    with pytest.raises(WriteFailed, match=r"cannot write .*logs \(No space left on device\)"), \
            run_folder.tracker_writes(tmp_path):
        raise OSError(errno.ENOSPC, "No space left on device")
