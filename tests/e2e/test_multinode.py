"""Two machines on one host (two launches, one process each, over 127.0.0.1): checkpoints and
--resume with a --ckpt-dir that the machines share, and with one folder each."""
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from builders import ROOT, accelerate_cli, script_env

LONG = ["--epochs", "400", "--batch-size", "256", "--eval-every", "50", "--checkpoint-every", "1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_machines(data, folders, *args, port=None):
    """Start machine 0 and machine 1; returns their launchers."""
    port = port or free_port()
    procs = []
    for rank, folder in enumerate(folders):
        cmd = [accelerate_cli(), "launch", "--multi_gpu", "--num_machines", "2", "--machine_rank", str(rank),
               "--num_processes", "2", "--main_process_ip", "127.0.0.1", "--main_process_port", str(port),
               "train.py", "--data", str(data), "--ckpt-dir", str(folder), *args]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=script_env(CUDA_VISIBLE_DEVICES=""), text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True))
    return procs


def reached(folders, epoch) -> bool:
    return all(checkpoints(f)[0] and checkpoints(f)[0][-1] >= f"epoch_{epoch:06d}" for f in folders)


def kill_after(procs, folders, epoch, timeout=120) -> list[str]:
    """Kill both machines' launchers (and their workers) once each folder holds a checkpoint of
    `epoch` or later; their output."""
    deadline = time.monotonic() + timeout
    while not reached(folders, epoch) and time.monotonic() < deadline:
        time.sleep(0.05)
    for p in procs:
        os.killpg(p.pid, signal.SIGKILL)
    outs = [p.communicate()[0] for p in procs]
    assert reached(folders, epoch), "the machines did not get there:\n" + "\n".join(outs)
    return outs


def checkpoints(folder):
    """(committed checkpoints, hidden leftovers) under a run folder."""
    root = folder / "checkpoints"
    names = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
    # A save in progress stages its folder under a hidden name, its state written before the rename.
    return [n for n in names if not n.startswith(".") and (root / n / "trainer_state.json").exists()], \
        [n for n in names if n.startswith(".")]


@pytest.mark.parametrize("shared", [False, True])
def test_two_machines_checkpoint_and_resume(small_cls, tmp_path, shared):
    """Killed after epoch 2 and resumed on both machines, each from the checkpoints it can see."""
    folders = [tmp_path / "run"] * 2 if shared else [tmp_path / "machine0", tmp_path / "machine1"]
    outs = kill_after(two_machines(small_cls, folders, *LONG), folders, 2)
    note = "is not shared between the machines"
    assert all((note in out) != shared for out in outs), outs
    last = min(int(checkpoints(f)[0][-1][len("epoch_"):]) for f in folders)
    # SIGKILL reaches the two launchers a moment apart: a machine may have committed one more
    # checkpoint of its own than the other, and train.py then asks for --resume PATH of the
    # common one. Setting the newer one aside leaves what a kill a moment earlier would have.
    for folder in folders:
        for name in checkpoints(folder)[0]:
            if name > f"epoch_{last:06d}":
                shutil.rmtree(folder / "checkpoints" / name)
    outs = kill_after(two_machines(small_cls, folders, *LONG, "--resume"), folders, last + 3)
    assert all("Resumed from" in out and "continuing at epoch" in out for out in outs), outs
    for folder in set(folders):
        kept, leftovers = checkpoints(folder)
        assert len(kept) <= 2 and kept[-1] >= f"epoch_{last + 3:06d}"  # --keep-checkpoints 2, on every machine
        # only a save in progress, or the deletion of one older than those kept (set aside as .old first)
        assert all(name > f".{kept[-1]}" or (name.endswith(".old") and name < f".{kept[0]}") for name in leftovers), \
            leftovers
