"""Real 2-process data parallelism on the CPU (gloo), launched with the shipped config; SIGTERM to
the launcher of two, which stop at a step boundary, save it and resume bit for bit."""
import json
import shutil
import signal
import subprocess
import time
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from builders import ROOT, accelerate_cli, infer, launch, make_data, people, read_metrics, script_env, train, write
from common.data.dataset import load_dataset
from common.errors import UserError
from common.train.process_group import require_one_data_set

TWO_PROCESS_ARGS = ["--epochs", "4", "--batch-size", "16", "--eval-every", "1", "--save-on-signal"]


@pytest.fixture(scope="module")
def two_process_run(small_cls, tmp_path_factory):
    """A run of two processes with the shipped config, never stopped (the signal test's reference)."""
    ckpt = tmp_path_factory.mktemp("ddp")
    proc = launch("multi_cpu", "--data", str(small_cls), "--ckpt-dir", str(ckpt), *TWO_PROCESS_ARGS)
    return ckpt, proc


def test_both_processes_took_part(two_process_run):
    ckpt, proc = two_process_run
    config = json.loads((ckpt / "config.json").read_text())
    assert config["num_processes"] == 2
    assert "2 process(es)" in proc.stdout
    assert proc.stdout.count("Saved:") == 1  # the main process alone reports and saves
    assert proc.stdout.count("epoch 4/4") == 1  # and shows the progress bar


def test_test_metrics_count_every_test_row_once(two_process_run, small_cls, tmp_path):
    ckpt, _ = two_process_run
    n_test = len(load_dataset(small_cls).y_test)
    assert n_test % 2 == 1  # the shards are unequal
    records = read_metrics(ckpt)
    assert all(r["test_n"] == n_test for r in records)
    infer("--ckpt-dir", ckpt, "--metrics-json", tmp_path / "m.json")
    # infer.py scores all rows in one process with sklearn: the same figures.
    figures = json.loads((tmp_path / "m.json").read_text())
    assert figures["accuracy"] == pytest.approx(records[-1]["accuracy"], abs=1e-12)
    assert records[-1]["accuracy"] >= 0.85


def test_split_batches_on_two_processes_equal_one_process(small_cls, tmp_path):
    """Same global batches, split in two: DDP's averaged gradients must equal one process's,
    also with accumulation groups cut short at each epoch's end (10 batches in groups of 3), and
    with each process gathering its rows from the memory-mapped file in chunks of 3 steps, in
    block order."""
    args = ["--data", str(small_cls), "--epochs", "3", "--batch-size", "500", "--split-batches", "--grad-accum", "3",
            "--shuffle", "blocks"]
    launch("multi_cpu", *args, "--ckpt-dir", str(tmp_path / "two"), "--chunk-rows", "750")
    train(*args, "--ckpt-dir", tmp_path / "one")
    one = load_file(str(tmp_path / "one" / "model.safetensors"))
    two = load_file(str(tmp_path / "two" / "model.safetensors"))
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5)
    assert json.loads((tmp_path / "two" / "config.json").read_text())["num_processes"] == 2


def test_a_table_with_categories_trains_the_same_on_two_processes(tmp_path):
    """The users' default under DDP: five cross-fitted members with their folds, periodic and
    categorical embeddings; category codes travel in the one input tensor, sharded like the rest.
    The best comes late, so both go on for a leg: each process decides alike."""
    write(tmp_path / "people.csv", people(rows=1200))
    make_data("--csv", tmp_path / "people.csv", "--target", "label", "--out-dir", tmp_path)
    args = ["--data", str(tmp_path / "people"), "--epochs", "3", "--extend-epochs", "8", "--split-batches",
            "--batch-size", "100"]
    launch("multi_cpu", *args, "--ckpt-dir", str(tmp_path / "two"))
    train(*args, "--ckpt-dir", tmp_path / "one")
    one = load_file(str(tmp_path / "one" / "model.safetensors"))
    two = load_file(str(tmp_path / "two" / "model.safetensors"))
    assert any(key.startswith("embeddings.") for key in one) and one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5)
    epochs = [[r["epoch"] for r in read_metrics(tmp_path / run)] for run in ("one", "two")]
    assert epochs == [[0, 1, 2, 3, 4]] * 2
    decisions = [json.loads((tmp_path / run / "config.json").read_text())["decision"] for run in ("one", "two")]
    assert [(d or {}).get("threshold") for d in decisions] == [(decisions[0] or {}).get("threshold")] * 2


def test_early_stopping_on_two_processes_saves_usable_weights(small_val, tmp_path):
    """The best weights are taken from the unwrapped model: no `module.` prefix from DDP."""
    launch("multi_cpu", "--data", str(small_val), "--ckpt-dir", str(tmp_path), "--epochs", "40", "--eval-every", "1",
           "--patience", "2", "--lr", "0.3", "--batch-size", "64")
    weights = load_file(str(tmp_path / "model.safetensors"))
    assert sorted(weights) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    infer("--ckpt-dir", tmp_path, "--metrics-json", tmp_path / "m.json")
    config = json.loads((tmp_path / "config.json").read_text())
    outcome = config["outcome"]
    assert outcome["weights"] == "best" and outcome["best"]["epoch"] < outcome["epochs_run"] - 1
    # infer.py, scoring the saved weights alone, finds the best evaluation's figures: the weights
    # saved are those of the best epoch, not the last.
    figures = json.loads((tmp_path / "m.json").read_text())
    assert figures["accuracy"] == pytest.approx(config["outcome"]["final_metrics"]["accuracy"], abs=1e-12)


def test_sigterm_to_two_processes_then_resume_elsewhere_is_bit_identical(two_process_run, small_cls, tmp_path):
    """A preempted 2-process job: SIGTERM to the launcher at some moment of training, which passes
    it to both workers; they stop at the same step and save it. The job restarts with its data
    moved to another folder and resumes to the weights of a run never stopped."""
    import psutil

    data = tmp_path / "data"
    shutil.copytree(small_cls, data)
    args = TWO_PROCESS_ARGS  # the shared run's: it is the run never stopped
    cmd = [accelerate_cli(), "launch", "--config_file", "accelerate_configs/multi_cpu.yaml", "train.py",
           "--data", str(data), "--ckpt-dir", str(tmp_path / "cut"), *args]
    launcher = subprocess.Popen(cmd, cwd=ROOT, env=script_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "cut" / "metrics.running.jsonl").exists() and launcher.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # somewhere in epoch 0 or 1
    workers = [p for p in psutil.Process(launcher.pid).children(recursive=True) if "train.py" in " ".join(p.cmdline())]
    launcher.send_signal(signal.SIGTERM)
    _, stderr = launcher.communicate(timeout=60)
    assert launcher.returncode != 0
    lines = [line for line in stderr.splitlines() if line.startswith("stopped: SIGTERM")]
    assert len(lines) == 1 and "--resume (from" in lines[0], stderr[-3000:]
    psutil.wait_procs(workers, timeout=10)
    assert not [p for p in workers if p.is_running()]
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    moved = tmp_path / "scratch" / "data"
    shutil.move(data, moved)
    launch("multi_cpu", "--data", str(moved), "--ckpt-dir", str(tmp_path / "cut"), *args, "--resume")
    whole, _ = two_process_run
    assert (tmp_path / "cut" / "model.safetensors").read_bytes() == (whole / "model.safetensors").read_bytes()
    assert read_metrics(tmp_path / "cut") == read_metrics(whole)


def _data_set_check(rank: int, port: int, identity: str, said: Any) -> None:
    """One process of a two-process gloo group (forked, torch already imported): its verdict."""
    import types

    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        state = types.SimpleNamespace(num_processes=2, device=torch.device("cpu"))  # gloo's; NCCL's a GPU
        require_one_data_set("data/t", identity, state)
        said.put((rank, "same"))
    except UserError as err:
        said.put((rank, str(err)))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("identities,verdict", [
    (("620b7be691891d3f", "620b7be691891d3f"), "same"),
    (("620b7be691891d3f", "620b7be691891d3e"), "the processes read different data sets at --data data/t"),
])
def test_machines_with_different_copies_of_the_data_set_are_refused_on_every_process(identities, verdict):
    """Two machines' copies at the same path, one stale: the run trained on both without a word."""
    import multiprocessing
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fork = multiprocessing.get_context("fork")
    said = fork.Queue()
    processes = [fork.Process(target=_data_set_check, args=(rank, port, identities[rank], said)) for rank in (0, 1)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(60)
    verdicts = dict(said.get(timeout=5) for _ in processes)
    assert all(v.startswith(verdict) for v in verdicts.values()) and sorted(verdicts) == [0, 1]
