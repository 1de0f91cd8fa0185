"""Starting the processes that the launcher asked for and did not start (common/train/relaunch.py):
only on a CPU, only once, as multi_cpu.yaml would."""
import pytest

from builders import ROOT
from common.train import relaunch


def test_a_group_is_started_here_only_where_the_launcher_lost_processes_on_a_cpu(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv(relaunch.STARTED_HERE, raising=False)
    asked = ["accelerate", "launch", "--num_processes", "3", "train.py"]
    assert relaunch.processes_to_start(asked, gpus=0) == 3
    assert relaunch.processes_to_start(asked, gpus=1) is None  # DDP wants a GPU a process: the refusal speaks
    assert relaunch.processes_to_start(["accelerate", "launch", "--num_processes", "1", "train.py"], gpus=0) is None
    assert relaunch.processes_to_start(["python", "train.py"], gpus=0) is None
    monkeypatch.setenv(relaunch.STARTED_HERE, "1")  # a process of the group started here: never again
    assert relaunch.processes_to_start(asked, gpus=0) is None
    monkeypatch.delenv(relaunch.STARTED_HERE)
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert relaunch.processes_to_start(asked, gpus=0) is None


def test_the_group_is_launched_as_multi_cpu_yaml_launches_it():
    command = relaunch.group_command(4, ["train.py", "--epochs", "2"], "bf16")
    i = command.index(relaunch.QUIET_LAUNCHER)
    assert command[i - 1] == "-c" and "accelerate.commands.launch" in command[i]
    assert command[i + 1:] == ["--config_file", str(ROOT / "accelerate_configs" / "multi_cpu.yaml"),
                               "--num_processes", "4", "--main_process_port", "0", "--mixed_precision", "bf16",
                               "train.py", "--epochs", "2"]


def test_without_a_gpu_the_group_is_started_before_torch_loads():
    """The first process only waits for the group: loading torch there (seconds) bought nothing."""
    import os
    import subprocess
    import sys

    import pytest

    if not relaunch.surely_no_gpu():
        pytest.skip("a GPU driver's device file is here: the question waits for torch")
    probe = ("import sys\n"
             "from common.train import launch_check, relaunch\n"
             "launch_check.launcher_command_line = lambda: ['accelerate', 'launch', '--num_processes', '2', 'x.py']\n"
             "relaunch.run_group = lambda command, env: print(\n"
             "    'group of', command[command.index('--num_processes') + 1],\n"
             "    'torch loaded' if 'torch' in sys.modules else 'torch not loaded') or 7\n"
             "relaunch.relaunch_before_loading('__main__')\n")
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", relaunch.STARTED_HERE)}
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 7, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "group of 2 torch not loaded"


def test_help_is_printed_once_by_the_first_process_not_by_a_group(monkeypatch):
    started = []
    monkeypatch.setattr(relaunch, "start_missing_processes", started.append)
    monkeypatch.setattr(relaunch, "surely_no_gpu", lambda: True)
    for argv, group in [(["--help"], False), (["--epochs", "2", "-h"], False), (["--he"], False),
                        (["--hidden", "20"], True), (["--epochs", "2"], True)]:
        started.clear()
        monkeypatch.setattr("sys.argv", ["train.py", *argv])
        relaunch.relaunch_before_loading("__main__")
        assert bool(started) is group, argv


@pytest.mark.parametrize("stderr", ["read", "closed"])
def test_ctrl_c_while_the_groups_launcher_imports_ends_it_with_one_line(tmp_path, stderr):
    """Ctrl-C reaches the group's launcher while it is still importing torch (a second or two):
    it printed a KeyboardInterrupt traceback from deep inside torch, and no line of ours. With its
    stderr closed (`2>&-`), it still ends. Here a stand-in launcher whose import never ends takes
    its place."""
    import os
    import signal
    import subprocess
    import time

    launcher = tmp_path / "accelerate" / "commands"
    launcher.mkdir(parents=True)
    for package in (launcher.parent, launcher):
        (package / "__init__.py").write_text("")
    started = tmp_path / "importing"
    (launcher / "launch.py").write_text(f"import pathlib, time\npathlib.Path({str(started)!r}).touch()\n"
                                        "time.sleep(60)\n")
    command = relaunch.group_command(2, ["train.py"])
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    closing = (lambda: os.close(2)) if stderr == "closed" else None
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=closing)
    try:
        deadline = time.monotonic() + 30
        while not started.exists() and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.02)
        assert started.exists(), child.communicate()[1]
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
    finally:
        child.kill()
    said = "" if stderr == "closed" else "stopped: interrupted by Ctrl-C while starting; nothing was written\n"
    assert (child.returncode, err) == (128 + signal.SIGINT, said)
