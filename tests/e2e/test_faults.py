"""Faults a user or the machine can cause: each ends in one line, and the run folder holds one
consistent run (the earlier or the new one) afterwards."""
import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from builders import (
    FILES,
    ROOT,
    accelerate_cli,
    launch,
    people,
    read_config,
    script_env,
    snapshot,
    tmpfs,
    train,
    user_error,
    write,
)
from safetensors.torch import load_file, save_file

import infer as infer_script
import train as train_script
from common.errors import UserError
from common.train import run_folder
from common.train.heartbeat import lost_peers


def start(args, **kw):
    return subprocess.Popen([sys.executable, "train.py", *map(str, args)], cwd=ROOT, env=script_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def wait_for(path, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert path.exists(), "the run did not get there"


LONG = ["--epochs", "100000", "--batch-size", "64", "--eval-every", "1"]


@pytest.mark.e2e
def test_a_second_run_on_a_folder_in_use_is_refused(small_cls, tmp_path):
    first = start(["--data", small_cls, "--ckpt-dir", tmp_path, *LONG])
    try:
        wait_for(tmp_path / "metrics.running.jsonl", first)
        message = user_error(train_script.main, "--data", small_cls, "--ckpt-dir", tmp_path, "--epochs", "1")
        assert "another run is using" in message and f"pid {first.pid}" in message
    finally:
        first.kill()
        first.wait()
    train("--data", small_cls, "--ckpt-dir", tmp_path, "--epochs", "1")  # a killed run leaves no lock behind
    assert (tmp_path / "model.safetensors").exists()


@pytest.mark.e2e
def test_ctrl_c_is_one_line_with_the_way_to_resume(small_cls, tmp_path):
    run = start(["--data", small_cls, "--ckpt-dir", tmp_path, *LONG, "--checkpoint-every", "1"])
    wait_for(tmp_path / "checkpoints" / "epoch_000001" / "trainer_state.json", run)
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 130 and "Traceback" not in stderr
    (line,) = stderr.strip().splitlines()
    assert line.startswith("stopped: Ctrl-C ") and "--resume (from" in line and "epoch_0000" in line


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


@pytest.mark.parametrize("make,words", [
    (lambda d: d.write_text("a file"), ["cannot write in"]),
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
    assert message.startswith(f"checkpoint damaged: {weights} is changed") and "resume from another" in message


@pytest.mark.parametrize("damage,words", [
    # One flipped byte, the size unchanged: what a bad disk or a bad copy does.
    (lambda c: (c / "model.safetensors").write_bytes(flip((c / "model.safetensors").read_bytes())),
     ["checkpoint damaged", "model.safetensors is changed"]),
    (lambda c: (c / "optimizer.bin").unlink(), ["checkpoint damaged", "optimizer.bin is missing"]),
    # The epoch edited by hand: it would log epochs twice.
    (lambda c: edit_state(c, epoch=0), ["checkpoint damaged", "says epoch 0"]),
    (lambda c: edit_state(c, manifest=[1]), ["checkpoint damaged", "no valid manifest"]),
    (lambda c: (c / "trainer_state.json").write_text("[1, 2]"), ["not a checkpoint state"]),
])
def test_a_damaged_checkpoint_is_named_as_damaged(checkpointed, damage, words):
    folder, args = checkpointed
    damage(folder / "checkpoints" / "epoch_000001")
    message = user_error(train_script.main, *args, "--resume")
    assert all(word in message for word in words), message


def flip(blob: bytes) -> bytes:
    return blob[:-1] + bytes([blob[-1] ^ 1])


def edit_state(checkpoint, **changes):
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    (checkpoint / "trainer_state.json").write_text(json.dumps({**state, **changes}))


def test_a_fresh_run_never_mixes_with_an_earlier_runs_checkpoints(checkpointed):
    folder, args = checkpointed
    message = user_error(train_script.main, "--data", args[1], "--ckpt-dir", folder, "--epochs", "1")
    assert "earlier run's checkpoints" in message


def test_resume_refuses_a_data_file_replaced_by_another_of_the_same_shape(checkpointed):
    folder, args = checkpointed
    X_train = Path(args[1]) / "X_train.npy"
    kept = np.load(X_train)
    try:
        np.save(X_train, kept[::-1].copy())  # the same shape, other rows
        message = user_error(train_script.main, *args, "--resume")
        assert "on other data" in message and "--data" in message
    finally:
        np.save(X_train, kept)


@pytest.mark.parametrize("change,words", [
    (lambda c: c.pop("class_labels"), ["lacks 'class_labels'"]),
    (lambda c: c["model"].update(activation="swish"), ["cannot build"]),
    (lambda c: c["preprocess"]["numeric"].pop(), ["preprocessing for 9 inputs"]),
    (lambda c: c.update(class_labels=[0, 1]), ["2 classes", "3 outputs"]),
])
def test_a_config_that_does_not_fit_is_one_line(small_model, tmp_path, change, words):
    for name in ("model.safetensors", "config.json"):
        shutil.copy(small_model / name, tmp_path / name)
    config = json.loads((tmp_path / "config.json").read_text())
    change(config)
    (tmp_path / "config.json").write_text(json.dumps(config))
    message = user_error(infer_script.main, "--ckpt-dir", tmp_path)
    assert all(word in message for word in words), message


def test_weights_holding_nan_are_refused(small_model, tmp_path):
    shutil.copy(small_model / "config.json", tmp_path / "config.json")
    weights = load_file(str(small_model / "model.safetensors"))
    weights["0.weight"][0, 0] = float("nan")
    save_file(weights, str(tmp_path / "model.safetensors"))
    assert "NaN or infinite weights in ['0.weight']" in user_error(infer_script.main, "--ckpt-dir", tmp_path)


def test_a_run_resumed_after_its_early_stop_finishes_as_it_was(small_val, tmp_path):
    args = ["--data", small_val, "--epochs", "60", "--eval-every", "1", "--patience", "2", "--lr", "0.3",
            "--batch-size", "64", "--checkpoint-every", "1", "--keep-checkpoints", "1"]
    train(*args, "--ckpt-dir", tmp_path / "whole")
    shutil.copytree(tmp_path / "whole", tmp_path / "cut")
    for name in FILES:  # as if killed after the last checkpoint, before the final save
        (tmp_path / "cut" / name).unlink()
    train(*args, "--ckpt-dir", tmp_path / "cut", "--resume")
    whole, cut = read_config(tmp_path / "whole"), read_config(tmp_path / "cut")
    assert whole["epochs_run"] < 60
    for key in ("final_metrics", "epochs_run", "best_epoch", "weights"):
        assert cut[key] == whole[key], key
    weights = [(tmp_path / run / "model.safetensors").read_bytes() for run in ("cut", "whole")]
    assert weights[0] == weights[1]


@pytest.mark.e2e
def test_workers_stop_when_their_launcher_is_killed(small_cls, tmp_path):
    cmd = [accelerate_cli(), "launch", "--config_file", "accelerate_configs/multi_cpu.yaml", "train.py",
           "--data", str(small_cls), "--ckpt-dir", str(tmp_path), *LONG]
    launcher = subprocess.Popen(cmd, cwd=ROOT, env=script_env(CUDA_VISIBLE_DEVICES=""), start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(tmp_path / "metrics.running.jsonl", launcher)
    workers = [p for p in psutil.Process(launcher.pid).children(recursive=True) if "train.py" in " ".join(p.cmdline())]
    assert len(workers) == 2
    os.killpg(launcher.pid, signal.SIGKILL)  # what a job scheduler does
    launcher.wait()
    gone, alive = psutil.wait_procs(workers, timeout=20)
    for p in alive:
        p.kill()
    assert not alive, "workers outlived their launcher"


def test_a_collective_that_timed_out_is_one_line():
    message = str(lost_peers(RuntimeError("[gloo] Timed out waiting 5000ms for recv operation"), 5))
    assert "stopped answering for 5 s" in message and "--resume" in message
    other = RuntimeError("something else")
    assert lost_peers(other, 5) is other


def test_predictions_never_overwrite_a_hard_linked_input(small_model, tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text(",".join(f"x{i}" for i in range(10)) + "\n" + ",".join(["1"] * 10) + "\n")
    os.link(rows, tmp_path / "out.csv")  # the output path is another name of the input
    before = rows.read_bytes()
    infer_script.main(["--ckpt-dir", str(small_model), "--input", str(rows), "--output", str(tmp_path / "out.csv")])
    assert rows.read_bytes() == before and "prediction" in (tmp_path / "out.csv").read_text()


@pytest.mark.e2e
def test_a_two_process_run_on_a_folder_in_use_stops_everywhere_in_one_line(small_cls, tmp_path):
    first = start(["--data", small_cls, "--ckpt-dir", tmp_path, *LONG])
    try:
        wait_for(tmp_path / "metrics.running.jsonl", first)
        proc = launch("multi_cpu", "--data", str(small_cls), "--ckpt-dir", str(tmp_path), "--epochs", "1",
                      check=False, env=script_env(CUDA_VISIBLE_DEVICES=""), timeout=120)
    finally:
        first.kill()
        first.wait()
    errors = [line for line in proc.stderr.splitlines() if line.startswith(("error:", "stopped:"))]
    assert proc.returncode != 0 and len(errors) == 1 and "another run is using" in errors[0], proc.stderr
    assert "RuntimeError" not in proc.stderr  # no process was left waiting for the refused one


@pytest.mark.e2e
def test_a_resumed_runs_metrics_come_from_its_checkpoint_alone(small_cls, tmp_path):
    """An earlier run's metrics.jsonl in the folder and a lost metrics.running.jsonl change nothing:
    each checkpoint carries the run's evaluations up to its epoch."""
    whole = ["--epochs", "12", "--batch-size", "64", "--eval-every", "1", "--checkpoint-every", "1", "--lr", "0.01"]
    train("--data", small_cls, "--ckpt-dir", tmp_path / "whole", *whole)
    train("--data", small_cls, "--ckpt-dir", tmp_path / "cut", "--epochs", "2", "--lr", "0.3")  # an earlier run
    run = start(["--data", small_cls, "--ckpt-dir", tmp_path / "cut", *whole])
    wait_for(tmp_path / "cut" / "checkpoints" / "epoch_000004" / "trainer_state.json", run)
    run.kill()
    run.wait()
    (tmp_path / "cut" / "metrics.running.jsonl").unlink()
    train("--data", small_cls, "--ckpt-dir", tmp_path / "cut", *whole, "--resume")
    assert (tmp_path / "cut" / "metrics.jsonl").read_text() == (tmp_path / "whole" / "metrics.jsonl").read_text()


@pytest.mark.e2e
def test_a_process_that_stops_answering_is_named_in_one_line(small_cls, tmp_path):
    """SIGSTOP one of two workers: the other gives up after --timeout and names it."""
    log = tmp_path / "launch.log"
    cmd = [accelerate_cli(), "launch", "--config_file", "accelerate_configs/multi_cpu.yaml", "train.py",
           "--data", str(small_cls), "--ckpt-dir", str(tmp_path / "run"), *LONG, "--timeout", "5"]
    with open(log, "w") as out:
        launcher = subprocess.Popen(cmd, cwd=ROOT, env=script_env(CUDA_VISIBLE_DEVICES=""), start_new_session=True,
                                    stdout=out, stderr=subprocess.STDOUT)
    stopped = None
    try:
        wait_for(tmp_path / "run" / "metrics.running.jsonl", launcher)
        workers = sorted(psutil.Process(launcher.pid).children(recursive=True), key=lambda p: p.pid)
        stopped = [p for p in workers if "train.py" in " ".join(p.cmdline())][-1]
        stopped.suspend()
        deadline = time.monotonic() + 90
        while "error:" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        os.killpg(launcher.pid, signal.SIGKILL)
        launcher.wait()
        if stopped is not None:  # a stopped process runs no watchdog: it would outlive the test
            with contextlib.suppress(psutil.NoSuchProcess):
                stopped.kill()
    errors = [line for line in log.read_text().splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "stopped answering for 5 s" in errors[0], log.read_text()[-2000:]
    assert f"pid {stopped.pid}" in errors[0] and "--resume" in errors[0]


def test_a_full_disk_while_make_data_streams_a_table_keeps_the_earlier_data_set(small_cls, tmp_path):
    """A 3 MB tmpfs: the earlier data set fits, the scratch files of a 60k-row table do not."""
    import make_data as make_data_script

    table = write(tmp_path / "people.csv", people(rows=60_000))
    with tmpfs(tmp_path / "disk", "size=3M") as disk:
        shutil.copytree(small_cls, disk / "people")  # an earlier data set of the same name
        before = {p.name: p.read_bytes() for p in (disk / "people").iterdir()}
        message = user_error(make_data_script.main, "--csv", table, "--target", "label", "--out-dir", disk)
        assert "No space left on device" in message and "cannot write" in message
        # No staging folder left behind; the writers' lock file stays (a lock file deleted on release
        # could be locked by one process and recreated by another).
        assert sorted(p.name for p in disk.iterdir()) == [".people.lock", "people"]
        assert {p.name: p.read_bytes() for p in (disk / "people").iterdir()} == before


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


@pytest.mark.parametrize("array,damage,words", [
    ("X_train", lambda a: a.__setitem__((4000, 3), np.nan), ["the train split", "NaN or infinite inputs"]),
    ("X_test", lambda a: a.__setitem__((7, 0), np.inf), ["the test split", "NaN or infinite inputs"]),
    ("y_test", lambda a: a.__setitem__(11, 3), ["the test split", "class ids outside 0..2"]),
])
def test_a_data_set_damaged_after_it_was_written_is_one_line(small_cls, tmp_path, array, damage, words):
    data = tmp_path / "data"
    shutil.copytree(small_cls, data)
    values = np.load(data / f"{array}.npy")
    damage(values)
    np.save(data / f"{array}.npy", values)
    message = user_error(train_script.main, "--data", data, "--ckpt-dir", tmp_path / "run", "--epochs", "1")
    assert all(word in message for word in words) and "regenerate the data set" in message, message
    assert not (tmp_path / "run" / "model.safetensors").exists()


@pytest.mark.e2e
def test_a_killed_writers_staged_output_is_removed_by_the_next_write(small_model, small_cls, tmp_path):
    """infer.py killed mid-write leaves a hidden partial output (gigabytes at scale): the next run
    on the same output removes it, and leaves a live writer's staged file alone."""
    import infer as infer_script

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    rows = np.load(small_cls / "X_test.npy")[:20]
    np.save(tmp_path / "rows.npy", rows)
    output = tmp_path / "pred.csv"
    dead = tmp_path / f".pred.csv.{dead_pid}.x1y2.tmp"
    live = tmp_path / f".pred.csv.{os.getpid()}.z3w4.tmp"
    for leftover in (dead, live):
        leftover.write_bytes(b"partial")
    infer_script.main(["--ckpt-dir", str(small_model), "--input", str(tmp_path / "rows.npy"), "--output", str(output)])
    assert output.is_file() and not dead.exists() and live.exists()


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


@pytest.mark.e2e
def test_a_second_writer_of_a_data_set_stops_in_one_line_and_spares_the_first(tmp_path):
    """Two make_data.py runs on one output folder: the second would have deleted the first's staging."""
    import subprocess
    import sys
    import textwrap

    from common.files import atomic_folder

    script = textwrap.dedent(f"""
        import sys, time
        from common.files import atomic_folder
        with atomic_folder({str(tmp_path / 'cls_data')!r}, lambda name: True) as stage:
            (stage / "X_train.npy").write_bytes(b"first")
            print("staged", flush=True)
            sys.stdin.readline()
    """)
    first = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "staged"
        with pytest.raises(UserError, match=rf"another process is writing {tmp_path / 'cls_data'} \(pid {first.pid}"), \
                atomic_folder(tmp_path / "cls_data", lambda name: True):
            pass
        first.communicate("go\n", timeout=30)
    finally:
        first.kill()
    assert first.returncode == 0 and (tmp_path / "cls_data" / "X_train.npy").read_bytes() == b"first"
