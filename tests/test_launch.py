"""`accelerate launch --num_processes N` starts N processes or stops in one line; errors print once."""
import subprocess
import sys

import pytest

from common.errors import ProcessError, UserError
from common.train import process_group as launch_module
from common.train.launch_check import refuse_lost_processes, requested_processes, trap_message
from conftest import ROOT, accelerate_cli, assert_user_error, launch, read_config, run_script, script_env


@pytest.mark.parametrize("argv,expected", [
    (["/usr/bin/python3", "/venv/bin/accelerate", "launch", "--num_processes", "4", "train.py"], 4),
    (["accelerate", "launch", "--num_processes=3", "train.py", "--epochs", "2"], 3),
    (["accelerate", "launch", "--num-processes", "2", "train.py"], 2),
    (["python", "-m", "accelerate.commands.launch", "--num_processes", "2", "train.py"], 2),
    (["/venv/bin/python3", "/venv/bin/accelerate-launch", "--num_processes", "2", "train.py"], 2),
    (["accelerate", "launch", "train.py"], None),  # no request, and no default config here
    (["bash", "-c", "python train.py"], None),     # not Accelerate's launcher
])
def test_the_launchers_request_is_read_from_its_command_line(argv, expected, monkeypatch):
    import accelerate.commands.config as config

    monkeypatch.setattr(config, "default_config_file", "/nonexistent/default_config.yaml")
    assert requested_processes(argv) == expected


def test_a_config_files_process_count_counts(tmp_path):
    (tmp_path / "c.yaml").write_text("distributed_type: 'NO'\nnum_processes: 3\n")
    assert requested_processes(["accelerate", "launch", "--config_file", str(tmp_path / "c.yaml"), "t.py"]) == 3


def test_one_process_where_several_were_asked_for_is_refused(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError) as info:
        refuse_lost_processes(1, ["accelerate", "launch", "--num_processes", "4", "train.py"])
    message = str(info.value)
    assert "asked for 4 processes but started 1" in message
    assert "--multi_gpu --num_processes 4" in message and "multi_cpu.yaml --num_processes 4" in message
    refuse_lost_processes(4, ["accelerate", "launch", "--num_processes", "4", "train.py"])  # they were started


@pytest.mark.parametrize("gpus,words", [(0, ["--multi_gpu --num_processes 4 --main_process_port 0"]),
                                        (1, ["one GPU", "`python train.py`", "CUDA_VISIBLE_DEVICES="]),
                                        (2, ["--multi_gpu --num_processes 2 train.py"]),
                                        (8, ["--multi_gpu --num_processes 4 train.py"])])
def test_the_refusal_names_a_command_that_works_on_this_machine(gpus, words):
    message = trap_message(4, gpus)
    assert all(word in message for word in words), message


def test_who_prints_an_error(monkeypatch):
    class State:
        is_local_main_process = False

    monkeypatch.setattr(launch_module, "_state", State())
    assert not launch_module.reports(UserError("the same on every process"))
    assert launch_module.reports(ProcessError("this process's own checkpoint file"))
    State.is_local_main_process = True
    assert launch_module.reports(UserError("the same on every process"))


CPU_ONLY = script_env(CUDA_VISIBLE_DEVICES="")  # on a GPU machine too, these launches are about the CPU


def test_accelerate_launch_num_processes_2_on_a_cpu_stops_before_any_work(small_cls, tmp_path):
    proc = run_script(accelerate_cli(), "launch", "--num_processes", "2", "train.py", "--data", str(small_cls),
                      "--ckpt-dir", str(tmp_path / "run"), check=False, env=CPU_ONLY)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "asked for 2 processes but started 1" in errors[0], proc.stderr
    assert "--multi_gpu --num_processes 2" in errors[0] and "train.py --data" in errors[0]  # the user's arguments
    # Accelerate's simple launcher turns train.py's exit code 2 into its own 1, with its traceback.
    assert proc.returncode == 1 and "returned non-zero exit status 2" in proc.stderr
    assert not (tmp_path / "run").exists()


WRAPPER = "import subprocess, sys; i = sys.argv.index('--'); sys.exit(subprocess.call(sys.argv[i + 1:]))"


def test_train_py_itself_exits_2_with_one_line(small_cls, tmp_path):
    """The same trap seen from train.py's own exit: a parent whose command line asks for 2."""
    proc = subprocess.run([sys.executable, "-c", WRAPPER, "accelerate", "launch", "--num_processes", "2", "--",
                           sys.executable, "train.py", "--data", str(small_cls), "--ckpt-dir", str(tmp_path / "run")],
                          cwd=ROOT, capture_output=True, text=True, env=CPU_ONLY, timeout=120)
    assert_user_error(proc, "asked for 2 processes but started 1", "--multi_gpu --num_processes 2")
    assert not (tmp_path / "run").exists()


def test_the_working_command_forms_a_group_of_two_and_reports_errors_once(small_cls, tmp_path):
    run = tmp_path / "run"
    proc = run_script(accelerate_cli(), "launch", "--multi_gpu", "--num_processes", "2", "--main_process_port", "0",
                      "train.py", "--data", str(small_cls), "--ckpt-dir", str(run), "--epochs", "1", env=CPU_ONLY)
    assert read_config(run)["num_processes"] == 2 and "2 process(es)" in proc.stdout
    for bad, line in ((["--lr", "-1"], "error: --lr must be a positive number, got -1.0"),
                      (["--epochs", "x"], "error: argument --epochs: invalid int value: 'x' (see --help)")):
        proc = launch("multi_cpu", "--data", str(small_cls), "--ckpt-dir", str(tmp_path / "bad"), *bad,
                      check=False, env=CPU_ONLY)
        errors = [text for text in proc.stderr.splitlines() if text.startswith("error:")]
        assert proc.returncode != 0 and errors == [line], proc.stderr
    assert not (tmp_path / "bad").exists()
