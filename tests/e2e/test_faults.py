"""Faults of the machine and of other processes, in real processes: a kill, a stopped process, a
second run or writer on the same folder. Each ends in one line, and the folder holds one
consistent run or data set (the earlier or the new one) afterwards."""
import contextlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

import train as train_script
from builders import ROOT, accelerate_cli, launch, script_env, train, user_error
from common.errors import UserError


def start(args, **kw):
    return subprocess.Popen([sys.executable, "train.py", *map(str, args)], cwd=ROOT, env=script_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def wait_for(path, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert path.exists(), "the run did not get there"


LONG = ["--epochs", "100000", "--batch-size", "64", "--eval-every", "1"]


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


def test_ctrl_c_is_one_line_with_the_way_to_resume(small_cls, tmp_path):
    run = start(["--data", small_cls, "--ckpt-dir", tmp_path, *LONG, "--checkpoint-every", "1"])
    wait_for(tmp_path / "checkpoints" / "epoch_000001" / "trainer_state.json", run)
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 130 and "Traceback" not in stderr
    (line,) = stderr.strip().splitlines()
    assert line.startswith("stopped: Ctrl-C ") and "--resume (from" in line and "epoch_0000" in line


@pytest.mark.parametrize("signum, by, code", [(signal.SIGINT, "Ctrl-C", 130), (signal.SIGTERM, "SIGTERM", 143)])
def test_a_signal_while_a_script_starts_is_one_line_and_run_cli_takes_over(signum, by, code):
    """Before run_cli, while torch loads: quiet_start's handler, one line and the shell's code at once."""
    starting = subprocess.Popen(
        [sys.executable, "-c", "from common.errors import quiet_start; quiet_start(__name__); import time; "
                               "print('ready', flush=True); time.sleep(60)"],
        cwd=ROOT, env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert starting.stdout.readline().strip() == "ready"
        starting.send_signal(signum)
        _, stderr = starting.communicate(timeout=30)
    finally:
        starting.kill()
    assert starting.returncode == code
    assert stderr.strip().splitlines() == [f"stopped: interrupted by {by} while starting; nothing was written"]
    handed_over = subprocess.run(
        [sys.executable, "-c", "import signal; from common.errors import quiet_start, run_cli; quiet_start(__name__); "
                               "run_cli(lambda: print(signal.getsignal(signal.SIGINT) is signal.default_int_handler, "
                               "signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL))"],
        cwd=ROOT, env=script_env(), capture_output=True, text=True, timeout=30)
    assert handed_over.stdout.strip() == "True True", handed_over.stderr


SIGNALLED_AFTER = """
import atexit, os, signal, sys, time
from common.errors import quiet_start, run_cli, written
quiet_start(__name__)

def signalled():
    for signum in (signal.SIGINT, signal.SIGTERM):
        os.kill(os.getpid(), signum)
    time.sleep(0.1)
    print("shut down", flush=True)

def main():
    written("the predictions in p.csv")
    if sys.argv[1] == "during":
        raise KeyboardInterrupt  # as a Ctrl-C while the figures are printed
    atexit.register(signalled)  # as a Ctrl-C while the interpreter shuts down

run_cli(main)
"""


@pytest.mark.parametrize("when", ["during", "after"])
def test_a_signal_once_the_output_is_in_place_says_so_or_changes_nothing(when):
    """After the output is written, a Ctrl-C says that it was (not that files were left as they
    were); once main has returned, Ctrl-C and SIGTERM change nothing: exit 0, no traceback."""
    done = subprocess.run([sys.executable, "-c", SIGNALLED_AFTER, when], cwd=ROOT, env=script_env(),
                          capture_output=True, text=True, timeout=30)
    if when == "during":
        assert done.returncode == 130
        assert done.stderr.strip().splitlines() == [
            "stopped: interrupted by Ctrl-C; the predictions in p.csv had been written before it; other files "
            "were left as they were"]
    else:
        assert (done.returncode, done.stdout, done.stderr) == (0, "shut down\n", "")


PRINTS_A_LOT = """
import sys
from pathlib import Path
from common.errors import quiet_start, run_cli
quiet_start(__name__)
from common.console import console

def main():
    for i in range(2000):
        console.print(f"line {i} of a long report")  # rich, as the scripts print
        print(f"plain line {i}", flush=True)         # print, as accelerator.print does
    Path(sys.argv[1]).write_text("done")

run_cli(main)
"""


@pytest.mark.parametrize("out", ["full", "closed"])
def test_standard_output_that_fails_neither_stops_the_work_nor_prints_a_traceback(out, tmp_path):
    """stdout on a full disk (/dev/full): the work finishes, then one line and exit 1. A reader
    that went away (`| head`): the work finishes, exit 0, nothing said, as for any Unix filter."""
    result = tmp_path / "result"
    command = [sys.executable, "-c", PRINTS_A_LOT, str(result)]
    if out == "full":
        with open("/dev/full", "w") as full:
            done = subprocess.run(command, cwd=ROOT, env=script_env(), stdout=full, stderr=subprocess.PIPE,
                                  text=True, timeout=60)
        code, stderr = done.returncode, done.stderr
    else:
        proc = subprocess.Popen(command, cwd=ROOT, env=script_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline().startswith("line 0")
        proc.stdout.close()  # the reader goes away, as `| head -1` does
        stderr = proc.stderr.read()
        code = proc.wait(timeout=60)
    assert result.read_text() == "done"
    if out == "full":
        assert code == 1
        assert stderr.strip().splitlines() == [
            "error: standard output failed (No space left on device): what the run printed stops short, but the "
            "run finished and its files are whole; make room, or send the output elsewhere"]
    else:
        assert (code, stderr) == (0, "")


PRINTS_BARS = """
import sys
from pathlib import Path
from common.errors import quiet_start, run_cli
quiet_start(__name__)
from common.console import console

def main():
    console.print("age ████ 0.12 ± 0.01")  # the importance table's bars, as train.py prints them at the end
    print("café", flush=True)
    Path(sys.argv[1]).write_text("done")

run_cli(main)
"""


def test_standard_output_that_cannot_encode_a_character_prints_a_question_mark_and_loses_nothing(tmp_path):
    """PYTHONIOENCODING=ascii: the importance table's bars raised UnicodeEncodeError as a run ended,
    a traceback, and the finished run was lost."""
    done = subprocess.run([sys.executable, "-c", PRINTS_BARS, str(tmp_path / "result")], cwd=ROOT,
                          env=script_env(PYTHONIOENCODING="ascii"), capture_output=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, b"") and (tmp_path / "result").read_text() == "done"
    assert b"age ???? 0.12 ? 0.01" in done.stdout and b"caf?" in done.stdout


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


def test_an_append_cut_short_by_a_file_size_limit_leaves_no_part_line(tmp_path):
    """Under `ulimit -f` the kernel lets the first bytes of a write through and reports a short
    count, with no error: the append must notice, cut the file back, and say so in one line."""
    import subprocess
    import sys
    import textwrap

    path = tmp_path / "metrics.running.jsonl"
    path.write_text('{"epoch": 0}\n' * 300)  # 3,900 bytes; the limit below is 4,096
    before = path.read_bytes()
    script = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        from common.errors import UserError
        from common.files import append_jsonl
        try:
            append_jsonl({str(path)!r}, {{"epoch": 1, "loss": "x" * 400}})
        except UserError as err:
            print(err)
            sys.exit(2)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout.startswith(f"cannot write {path}")
    assert path.read_bytes() == before
