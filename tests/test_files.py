"""Files written atomically (common/files.py): a crash or a kill mid-write leaves the earlier file or
folder, and the next reader or writer puts back what a kill left hidden."""
import errno
import json
import os
import shutil
import signal
import socket
import stat

import numpy as np
import pytest

from common.data.dataset import load_dataset
from common.errors import UserError
from common.files import atomic_path, read_json, write_json, write_problem


def test_a_kill_between_the_two_renames_leaves_the_earlier_data_set(tmp_path, small_cls):
    """atomic_folder moves the earlier folder aside, then the new one in: a kill in between
    leaves only the aside copy, which the next write puts back before anything else."""
    import shutil

    from common.files import restore_or_clear_leftovers

    final = tmp_path / "cls_data"
    shutil.copytree(small_cls, tmp_path / ".cls_data.123.old.part")  # the state such a kill leaves
    (tmp_path / ".cls_data.stage-k2j4_9zq.part").mkdir()            # and a half-filled stage
    (tmp_path / ".cls_data.x1y2z3w4.part").mkdir()                  # and one of an earlier version
    restore_or_clear_leftovers(final)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cls_data"]
    np.testing.assert_array_equal(load_dataset(final).X_train, load_dataset(small_cls).X_train)


def test_a_reader_puts_back_a_data_set_that_a_killed_swap_left_hidden(tmp_path, small_cls):
    import shutil

    shutil.copytree(small_cls, tmp_path / ".cls_data.123.old.part")  # a kill between the two renames
    data = load_dataset(tmp_path / "cls_data")  # what train.py and infer.py do first
    np.testing.assert_array_equal(data.X_train, load_dataset(small_cls).X_train)
    assert (tmp_path / "cls_data").is_dir() and not list(tmp_path.glob("*.part"))


@pytest.mark.parametrize("name,other", [("sales", "sales.v2"), ("d[1]", "d[1].x"), ("a*", "a*b")])
def test_a_folders_leftovers_are_its_own_never_those_of_a_name_it_begins(tmp_path, small_cls, name, other):
    """`sales` and `sales.v2` are two data sets: writing or reading one leaves the other's hidden
    folders (a kill's earlier folder, a stage at work) alone, and names with glob's characters
    are repaired as any other."""
    import shutil

    from common.files import atomic_folder

    theirs = [tmp_path / f".{other}.4242.old.part", tmp_path / f".{other}.stage-q1w2e3r4.part"]
    for folder in theirs:
        shutil.copytree(small_cls, folder)
    shutil.copytree(small_cls, tmp_path / f".{name}.77.old.part")  # its own kill between the renames
    (tmp_path / f".{name}.stage-a1b2c3d4.part").mkdir()             # and its own half-filled stage
    assert load_dataset(tmp_path / name).X_train.shape == load_dataset(small_cls).X_train.shape  # put back
    assert not (tmp_path / f".{name}.stage-a1b2c3d4.part").exists()
    with atomic_folder(tmp_path / name, lambda n: True) as stage:
        (stage / "x").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".part")) == sorted(p.name for p in theirs)
    assert all(load_dataset(folder).X_train.shape == load_dataset(small_cls).X_train.shape for folder in theirs)


def test_a_reader_leaves_a_swap_to_the_writer_at_work(tmp_path, small_cls):
    import shutil

    from common.files import exclusive_lock, folder_lock_file

    shutil.copytree(small_cls, tmp_path / ".cls_data.123.old.part")
    with exclusive_lock(folder_lock_file(tmp_path / "cls_data")) as holder:  # a writer between its renames
        assert holder is None
        with pytest.raises(UserError, match="not found"):
            load_dataset(tmp_path / "cls_data")
        assert (tmp_path / ".cls_data.123.old.part").is_dir()


@pytest.mark.parametrize("script", ["make_data", "infer"])
def test_sigterm_while_a_script_writes_keeps_the_earlier_output_and_no_leftovers(script, small_model, small_cls,
                                                                                   tmp_path, monkeypatch, capsys):
    """SIGTERM arrives once the new output is staged, just before it would replace the earlier one."""
    import infer as infer_script
    import make_data as make_data_script
    from common import files
    from common.errors import run_cli

    if script == "make_data":
        shutil.copytree(small_cls, tmp_path / "cls_data")
        earlier = tmp_path / "cls_data"
        argv = ["--n-samples", "3000", "--out-dir", str(tmp_path)]
        main = make_data_script.main
    else:
        np.save(tmp_path / "rows.npy", np.load(small_cls / "X_test.npy")[:50])
        earlier = tmp_path / "pred.csv"
        earlier.write_text("earlier\n")
        argv = ["--ckpt-dir", str(small_model), "--input", str(tmp_path / "rows.npy"), "--output", str(earlier)]
        main = infer_script.main
    before = snapshot_of(earlier)
    seal = files._seal

    def sealed_then_terminated(path):
        seal(path)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(files, "_seal", sealed_then_terminated)
    with pytest.raises(SystemExit) as info:
        run_cli(lambda: main(argv))
    assert info.value.code == 143
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("stopped: SIGTERM received")
    assert snapshot_of(earlier) == before
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock")]


def snapshot_of(path):
    if path.is_dir():
        return {p.name: p.read_bytes() for p in path.iterdir()}
    return path.read_bytes()


def crash_mid_write(target):
    with atomic_path(target) as tmp:
        tmp.write_text('{"half": ')
        raise RuntimeError("crash mid-write")


def test_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "config.json"
    write_json(target, {"good": 1})
    with pytest.raises(RuntimeError, match="crash mid-write"):
        crash_mid_write(target)
    assert read_json(target, "config") == {"good": 1}
    assert os.listdir(tmp_path) == ["config.json"]  # no temporary left behind


def test_a_file_where_a_folder_should_be_is_named_as_such(tmp_path):
    (tmp_path / "five.csv").write_text("a\n1\n")
    for target in (tmp_path / "five.csv" / "x.csv", tmp_path / "five.csv" / "deeper" / "x.csv"):
        with pytest.raises(UserError) as caught:
            write_json(target, {"good": 1})
        expected = f"cannot write in {tmp_path / 'five.csv'}: it is a file, not a folder; choose another path"
        assert str(caught.value) == expected
    assert (tmp_path / "five.csv").read_text() == "a\n1\n"


@pytest.mark.parametrize("err", [
    RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 287680 vs 287568"),
    OSError("Error while serializing: I/O error: File too large (os error 27)"),  # what safetensors says
    OSError(errno.EFBIG, "File too large"),
])
def test_a_write_cut_short_by_a_file_size_limit_says_so_not_free_some_space(tmp_path, err):
    import resource

    before = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 40, before[1]))  # far above anything this test writes
    try:
        reason, fix = write_problem(err, tmp_path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, before)
    assert reason.startswith("File too large") and f"{1 << 40:,} bytes" in reason
    assert "ulimit -f" in fix and "free some space" not in fix


def test_torchs_own_text_never_reaches_the_user(tmp_path):
    reason, fix = write_problem(RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 9 vs 7"),
                                tmp_path)  # a disk with room and no limit: the write was cut short all the same
    assert "enforce" not in reason and "pos" not in reason and fix
    assert write_problem(OSError(errno.ENOSPC, "No space left on device"), tmp_path) == (
        "No space left on device", "free some space or choose another folder")


def test_a_full_disk_inside_a_staged_folder_is_said_of_the_folder_not_its_hidden_stage(tmp_path):
    from common.files import WriteFailed, atomic_folder, write_error

    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "a.npy").write_bytes(b"earlier")
    with pytest.raises(WriteFailed) as info, atomic_folder(tmp_path / "set", lambda name: name == "a.npy") as stage:
        raise write_error(stage / "a.npy", OSError(errno.ENOSPC, "No space left on device"))
    assert str(info.value).startswith(f"cannot write {tmp_path / 'set'} (No space left on device)")
    assert info.value.errno == errno.ENOSPC and ".part" not in str(info.value)
    assert (tmp_path / "set" / "a.npy").read_bytes() == b"earlier"


def test_a_path_to_read_that_is_no_file_says_what_it_is(tmp_path):
    import make_data as make_data_script
    from builders import user_error

    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "folder").mkdir()
    said = {name: user_error(make_data_script.main, "--csv", tmp_path / name, "--target", "y")
            for name in ("folder", "pipe", "gone.csv")}
    assert said["folder"] == f"--csv {tmp_path / 'folder'} is a folder, not a file: pass the file itself"
    assert "is not a regular file (a pipe or a device)" in said["pipe"]
    assert said["gone.csv"] == f"--csv {tmp_path / 'gone.csv'} not found: check the path"


def test_a_write_that_fails_says_what_was_kept_only_where_there_was_something(tmp_path):
    from common.files import write_error

    (tmp_path / "old.csv").write_text("earlier")
    full = OSError(errno.ENOSPC, "No space left on device")
    assert str(write_error(tmp_path / "old.csv", full)).endswith("; old.csv keeps what it held before")
    assert "keeps" not in str(write_error(tmp_path / "new.csv", full))


def test_a_reader_looking_at_a_lock_does_not_turn_a_starting_writer_away(tmp_path):
    """lock_holder takes the lock for a moment to see whether a run holds it; a run starting just
    then asks again a moment later instead of taking the reader for another run."""
    import fcntl
    import threading

    from common.files import exclusive_lock, lock_holder

    lock = tmp_path / ".lock"
    lock.write_text("pid 1 on an earlier host")
    with open(lock) as looking:
        fcntl.flock(looking, fcntl.LOCK_SH | fcntl.LOCK_NB)  # as lock_holder holds it while it looks
        threading.Timer(0.02, fcntl.flock, (looking, fcntl.LOCK_UN)).start()
        with exclusive_lock(lock) as holder:
            assert holder is None
            assert lock_holder(lock) == f"pid {os.getpid()} on {socket.gethostname()}"
    assert lock_holder(lock) is None


def test_a_pipe_or_a_link_given_as_the_target_is_written_not_replaced(tmp_path):
    """--metrics-json /dev/stdout, a named pipe, a device: a file renamed over one would replace it
    (/dev/null, run as root). A link keeps pointing where it did, at the new contents."""
    import threading

    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    got = []
    reader = threading.Thread(target=lambda: got.append(pipe.read_text()))
    reader.start()
    write_json(pipe, {"a": 1})
    reader.join(timeout=10)
    assert json.loads(got[0]) == {"a": 1} and stat.S_ISFIFO(os.stat(pipe).st_mode)
    (tmp_path / "real.json").write_text("{}")
    (tmp_path / "link.json").symlink_to(tmp_path / "real.json")
    write_json(tmp_path / "link.json", {"b": 2})
    assert (tmp_path / "link.json").is_symlink() and read_json(tmp_path / "real.json", "x") == {"b": 2}


@pytest.mark.parametrize("kind", ["folder", "link"])
def test_a_lock_file_that_is_a_folder_or_a_link_is_one_line_and_the_link_target_untouched(tmp_path, kind):
    """A folder ended in IsADirectoryError's traceback; a link was followed and its target truncated."""
    from common.errors import UserError
    from common.files import exclusive_lock

    lock, victim = tmp_path / ".lock", tmp_path / "victim.txt"
    victim.write_text("keep me")
    lock.mkdir() if kind == "folder" else lock.symlink_to(victim)
    with pytest.raises(UserError, match=rf"^{lock} is a {kind}, not the lock file a run keeps there: remove it$"), \
            exclusive_lock(lock):
        pass
    assert victim.read_text() == "keep me"


def test_a_model_folder_given_as_a_data_set_and_weights_that_are_a_folder_are_named_as_such(small_model, tmp_path):
    """Both said "not found: check the path", which sent the user looking for a file that was there."""
    from common.data.dataset import load_dataset
    from common.errors import UserError
    from common.files import load_weights

    with pytest.raises(UserError, match=rf"^{small_model} is a model folder \(train.py's\), not a data set"):
        load_dataset(small_model)
    (tmp_path / "model.safetensors").mkdir()
    with pytest.raises(UserError, match=r"model.safetensors are not a file \(a folder, a pipe or a device\)"):
        load_weights(tmp_path / "model.safetensors")


def test_json_nested_too_deeply_is_one_line(tmp_path):
    """`[[[...]]]` a hundred thousand deep: the parser's RecursionError was a traceback."""
    from common.files import read_json

    (tmp_path / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(UserError, match="is not valid JSON \\(nested too deeply to read\\): regenerate it"):
        read_json(tmp_path / "config.json", "the model's config")


def test_weights_are_written_as_safetensors_writes_them_and_nothing_beside(tmp_path):
    """The bytes of safetensors' save_file, written by us: save_file's own temporary file, left
    beside the weights by a kill, was one no clean-up knew."""
    import torch
    from safetensors.torch import save_file

    from common.files import write_weights_file

    weights = {"w": torch.randn(3, 4), "b": torch.arange(5.0)}
    (tmp_path / "ours").mkdir()
    write_weights_file(tmp_path / "ours" / "model.safetensors", weights)
    save_file(weights, str(tmp_path / "theirs.safetensors"), metadata={"format": "pt"})
    assert (tmp_path / "ours" / "model.safetensors").read_bytes() == (tmp_path / "theirs.safetensors").read_bytes()
    assert os.listdir(tmp_path / "ours") == ["model.safetensors"]
