"""Training checkpoints (common/train/checkpoints.py): committed whole or not at all, verified before a
resume, refused when damaged or of another run or other data, followed when the data moves."""
import errno
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import train as train_script
from builders import FILES, read_config, train, train_args, user_error
from common.train.checkpoints import STATE_FORMAT, CheckpointState, save_checkpoint


@pytest.fixture
def checkpointed(small_cls, tmp_path):
    args = ["--data", small_cls, "--ckpt-dir", tmp_path, "--epochs", "2", "--checkpoint-every", "1"]
    train(*args)
    return tmp_path, args


def test_a_damaged_checkpoint_state_or_weights(checkpointed):
    folder, args = checkpointed
    state = folder / "checkpoints" / "epoch_000001" / "trainer_state.json"
    state.write_text(json.dumps({"epoch": "one", "plan": []}))
    assert "not a checkpoint state" in user_error(train_script.main, *args, "--resume")
    weights = folder / "checkpoints" / "epoch_000000" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    message = user_error(train_script.main, *args, "--resume", folder / "checkpoints" / "epoch_000000")
    assert message.startswith(f"checkpoint damaged: {weights} is changed")
    assert f"resume from the newest one kept beside it (--resume {folder / 'checkpoints' / 'epoch_000001'})" in message
    # A checkpoint that is gone (a typo, or removed by --keep-checkpoints) is said to be gone, not damaged.
    message = user_error(train_script.main, *args, "--resume", folder / "checkpoints" / "epoch_000007")
    assert "no such checkpoint folder" in message and "--resume alone" in message


@pytest.mark.parametrize("damage,words", [
    # One flipped byte, the size unchanged: what a bad disk or a bad copy does.
    (lambda c: (c / "model.safetensors").write_bytes(flip((c / "model.safetensors").read_bytes())),
     ["checkpoint damaged", "model.safetensors is changed"]),
    (lambda c: (c / "optimizer.bin").unlink(), ["checkpoint damaged", "optimizer.bin is missing"]),
    # The epoch edited by hand: it would log epochs twice.
    (lambda c: edit_state(c, epoch=0), ["checkpoint damaged", "says epoch 0"]),
    (lambda c: edit_state(c, manifest=[1]), ["checkpoint damaged", "no valid manifest"]),
    # Without its manifest, nothing of the checkpoint could be checked.
    (lambda c: drop_from_state(c, "manifest"), ["checkpoint damaged", "no valid manifest"]),
    (lambda c: (c / "trainer_state.json").write_text("[1, 2]"), ["not a checkpoint state"]),
    # cut short (a disk that failed it): said "not valid JSON ...: regenerate it", which no user can
    (lambda c: (c / "trainer_state.json").write_text((c / "trainer_state.json").read_text()[:50]),
     ["checkpoint damaged", "trainer_state.json is not valid JSON"]),
])
def test_a_damaged_checkpoint_is_named_as_damaged_with_the_one_to_resume_from(checkpointed, damage, words):
    folder, args = checkpointed
    damage(folder / "checkpoints" / "epoch_000001")
    message = user_error(train_script.main, *args, "--resume")
    assert all(word in message for word in words), message
    assert message.endswith(f"(--resume {folder / 'checkpoints' / 'epoch_000000'}), or start afresh in another "
                            "--ckpt-dir"), message


def flip(blob: bytes) -> bytes:
    return blob[:-1] + bytes([blob[-1] ^ 1])


def edit_state(checkpoint, **changes):
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    (checkpoint / "trainer_state.json").write_text(json.dumps({**state, **changes}))


def drop_from_state(checkpoint, key):
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    (checkpoint / "trainer_state.json").write_text(json.dumps({k: v for k, v in state.items() if k != key}))


def test_a_checkpoint_state_of_the_previous_format_still_resumes(checkpointed, capsys):
    """Format 1 held the same fields without saying its format."""
    folder, args = checkpointed
    state = json.loads((folder / "checkpoints" / "epoch_000001" / "trainer_state.json").read_text())
    assert state["format"] == STATE_FORMAT
    drop_from_state(folder / "checkpoints" / "epoch_000000", "format")
    train(*args, "--resume", folder / "checkpoints" / "epoch_000000")
    assert "continuing at epoch 1" in capsys.readouterr().out


class LostPeerAtTheBarrier:
    """An accelerator whose save works and whose barrier fails, as gloo does when a peer dies."""
    is_main_process = is_local_main_process = True
    project_configuration = type("Config", (), {"save_on_each_node": False})()

    def save_state(self, path):
        Path(path).mkdir(parents=True)

    def wait_for_everyone(self):
        raise RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer")


def test_a_peer_lost_during_the_checkpoint_barrier_is_not_reported_as_a_full_disk(tmp_path):
    state = CheckpointState(0, None, {}, [], None)
    with pytest.raises(RuntimeError, match="Connection closed by peer"):  # train.py names the lost peer
        save_checkpoint(LostPeerAtTheBarrier(), tmp_path, "epoch_000000", state, keep=2)


def test_a_fresh_run_never_mixes_with_an_earlier_runs_checkpoints(checkpointed):
    folder, args = checkpointed
    message = user_error(train_script.main, "--data", args[1], "--ckpt-dir", folder, "--epochs", "1")
    assert "earlier run's checkpoints" in message and f"delete {folder / 'checkpoints'} to start afresh" in message


def test_resume_refuses_a_data_file_replaced_by_another_of_the_same_shape(small_cls, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(small_cls, data)  # the copy is replaced: small_cls serves the whole session
    args = ["--data", data, "--ckpt-dir", tmp_path / "run", "--epochs", "2", "--checkpoint-every", "1"]
    train(*args)
    X_train = data / "X_train.npy"
    np.save(X_train, np.load(X_train)[::-1].copy())  # the same shape, other rows
    message = user_error(train_script.main, *args, "--resume")
    assert "on other data" in message and "--data" in message


def test_a_run_resumed_after_its_early_stop_finishes_as_it_was(small_val, tmp_path):
    args = ["--data", small_val, "--epochs", "60", "--eval-every", "1", "--patience", "2", "--lr", "0.3",
            "--batch-size", "64", "--checkpoint-every", "1", "--keep-checkpoints", "1"]
    train(*args, "--ckpt-dir", tmp_path / "whole")
    shutil.copytree(tmp_path / "whole", tmp_path / "cut")
    for name in FILES:  # as if killed after the last checkpoint, before the final save
        (tmp_path / "cut" / name).unlink()
    train(*args, "--ckpt-dir", tmp_path / "cut", "--resume")
    whole, cut = read_config(tmp_path / "whole"), read_config(tmp_path / "cut")
    assert whole["outcome"]["epochs_run"] < 60
    assert cut["outcome"] == {**whole["outcome"], "startup_seconds": cut["outcome"]["startup_seconds"],
                              "train_seconds": cut["outcome"]["train_seconds"]}
    weights = [(tmp_path / run / "model.safetensors").read_bytes() for run in ("cut", "whole")]
    assert weights[0] == weights[1]


@pytest.mark.parametrize("move", [
    lambda data, elsewhere: shutil.copytree(data, elsewhere),  # a per-job scratch copy
    lambda data, elsewhere: (shutil.move(data, elsewhere), data.symlink_to(elsewhere)),  # moved, a link left
])
def test_resume_follows_the_data_by_content_not_by_path(small_cls, tmp_path, move):
    data = tmp_path / "data"
    shutil.copytree(small_cls, data)
    args = ["--ckpt-dir", tmp_path / "run", "--epochs", "3", "--checkpoint-every", "1", "--keep-checkpoints", "3"]
    train("--data", data, *args)
    whole = (tmp_path / "run" / "model.safetensors").read_bytes()
    elsewhere = tmp_path / "scratch" / "data"
    move(data, elsewhere)
    (elsewhere / "NOTES.txt").write_text("a stray file")  # neither counts as other data
    description = json.loads((elsewhere / "dataset.json").read_text())
    (elsewhere / "dataset.json").write_text(json.dumps(description, indent=7))
    train("--data", elsewhere, *args, "--resume", tmp_path / "run" / "checkpoints" / "epoch_000001")
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == whole


def test_a_full_disk_at_the_first_checkpoints_state_file_leaves_no_staging(small_cls, tmp_path, monkeypatch):
    """The state file is the last one a checkpoint writes: its failure removes the staged folder,
    and the message does not promise a checkpoint that was never written."""
    from common.files import write_error
    from common.train import checkpoints

    def full_disk(path, obj):
        raise write_error(Path(path), OSError(errno.ENOSPC, "No space left on device"))

    monkeypatch.setattr(checkpoints, "write_json", full_disk)
    message = user_error(train_script.main, "--data", small_cls, "--ckpt-dir", tmp_path, "--epochs", "2",
                         "--checkpoint-every", "1")
    assert "cannot save checkpoint epoch_000000" in message and "No space left" in message
    assert "no checkpoint had been written yet" in message and "--resume" not in message
    assert list((tmp_path / "checkpoints").iterdir()) == []


def test_interrupted_saves_are_never_taken_for_checkpoints(small_cls, tmp_path, capsys):
    extra = ["--epochs", "4", "--checkpoint-every", "2", "--batch-size", "256"]
    train(*train_args(small_cls, tmp_path, *extra))
    root = tmp_path / "checkpoints"
    # What a crash mid-save or mid-delete leaves: a staging or discarded folder, or a folder
    # without its state file.
    for leftover in (".epoch_000009.tmp", ".epoch_000001.old"):
        (root / leftover).mkdir()
        (root / leftover / "model.safetensors").write_bytes(b"half")
    (root / "epoch_000008").mkdir()
    (root / "epoch_000008" / "model.safetensors").write_bytes(b"half")
    capsys.readouterr()
    train(*train_args(small_cls, tmp_path, *extra, "--resume"))
    out = capsys.readouterr().out
    assert "epoch_000003" in out and "continuing at epoch 4" in out
    assert not (root / ".epoch_000009.tmp").exists() and not (root / ".epoch_000001.old").exists()


def test_resume_refuses_other_settings(small_cls, tmp_path):
    extra = ["--epochs", "2", "--checkpoint-every", "1", "--batch-size", "256"]
    train(*train_args(small_cls, tmp_path, *extra))
    before = (tmp_path / "model.safetensors").read_bytes()
    message = user_error(train_script.main, *train_args(small_cls, tmp_path, *extra, "--lr", "0.5", "--resume"))
    assert "lr: 0.001 -> 0.5" in message
    message = user_error(train_script.main, *train_args(small_cls, tmp_path, *extra, "--epochs", "3", "--resume"))
    assert "epochs: 2 -> 3" in message and "optimizer_steps" in message
    # Run-only settings may change.
    train(*train_args(small_cls, tmp_path, "--epochs", "2", "--batch-size", "256", "--checkpoint-every", "5",
                      "--keep-checkpoints", "1", "--threads", "1", "--resume"))
    # A fresh run must not silently mix with or delete the earlier run's checkpoints.
    assert "--resume" in user_error(train_script.main, *train_args(small_cls, tmp_path, *extra))
    assert "no checkpoint" in user_error(train_script.main, *train_args(small_cls, tmp_path / "new", "--resume"))
    assert (tmp_path / "model.safetensors").read_bytes() == before


def test_resuming_a_finished_run_says_so(small_cls, tmp_path, capsys):
    extra = ["--epochs", "2", "--checkpoint-every", "1", "--batch-size", "512"]
    train(*train_args(small_cls, tmp_path, *extra))
    before = (tmp_path / "model.safetensors").read_bytes()
    capsys.readouterr()
    train(*train_args(small_cls, tmp_path, *extra, "--resume"))
    assert "had finished: nothing left to train" in capsys.readouterr().out
    assert (tmp_path / "model.safetensors").read_bytes() == before


@pytest.mark.parametrize("keep,most", [(2, 2), (3, 3), (1, 2)])
def test_checkpoints_rotate_with_never_more_than_kept_and_never_none_in_sight(tmp_path, monkeypatch, keep, most):
    """The oldest go out of sight before the new one comes into it, but for the newest of them: a
    kill between any two renames leaves --keep-checkpoints of them in sight (two, for a moment,
    with 1), never more, and always one to resume from."""
    from common.train import checkpoints as module

    def staged(epoch):
        folder = module.staging_dir(tmp_path, module.checkpoint_name(epoch))
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"w")

    state = CheckpointState(0, None, {}, [], None)
    for epoch in range(3):
        staged(epoch)
        module.commit_checkpoint(tmp_path, module.checkpoint_name(epoch), state, keep=keep)
    seen, rename = [], Path.rename

    def counted(self, target):  # what a kill right after each rename would leave in sight
        moved = rename(self, target)
        seen.append(len(module.complete_checkpoints(tmp_path)))
        return moved

    monkeypatch.setattr(Path, "rename", counted)
    staged(3)
    module.commit_checkpoint(tmp_path, module.checkpoint_name(3), state, keep=keep)
    assert seen and min(seen) >= 1 and max(seen) <= most
    assert [p.name for p in module.complete_checkpoints(tmp_path)] == [f"epoch_{e:06d}" for e in range(4 - keep, 4)]


def test_a_resumed_runs_training_time_counts_the_segments_before_it(checkpointed):
    """The card's time and outcome.train_seconds counted the last segment alone (0.0 s for a
    120-epoch run resumed only to save)."""
    folder, args = checkpointed
    checkpoint = folder / "checkpoints" / "epoch_000000"
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["train_seconds"] > 0
    (checkpoint / "trainer_state.json").write_text(json.dumps({**state, "train_seconds": 1000.0}))
    train(*args, "--resume", checkpoint)
    assert 1000 < json.loads((folder / "config.json").read_text())["outcome"]["train_seconds"] < 1100
    drop_from_state(checkpoint, "train_seconds")  # a checkpoint from before it was kept: this segment's alone
    train(*args, "--resume", checkpoint)
    assert json.loads((folder / "config.json").read_text())["outcome"]["train_seconds"] < 100
