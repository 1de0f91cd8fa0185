"""Shared fixtures and helpers.

Most tests call the scripts' `main()` in this process: interpreter start-up (torch, Accelerate)
is most of a small run's time. Real processes are launched only where that is what a test
proves: exit codes and one-line errors, several processes, kills, the accelerate launcher.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import infer as infer_script
import make_data as make_data_script
import train as train_script
from common.console import console
from common.errors import UserError

# Rich wraps long lines at the console's width: wide enough here that no message a test reads is cut.
console.width = 250

ROOT = Path(__file__).resolve().parents[1]

# A test-set size that no process count or batch size divides: 6003 rows -> 4802 train, 1201 test.
SMALL_ROWS = 6003


# Runs infer.py with every way of unpickling replaced by an error: proves inference needs none.
FORBID_PICKLE = """
import pickle, runpy, sys
def forbidden(*args, **kwargs):
    raise RuntimeError("pickle loading is forbidden here")
class ForbiddenUnpickler(pickle.Unpickler):
    def __init__(self, *args, **kwargs):
        forbidden()
pickle.load = pickle.loads = forbidden
pickle.Unpickler = ForbiddenUnpickler
pickle._Unpickler.load = forbidden  # the pure-Python unpickler that joblib and others subclass
import torch, joblib
torch.load = torch.serialization.load = joblib.load = forbidden
sys.argv = ["infer.py"] + sys.argv[1:]
runpy.run_path("infer.py", run_name="__main__")
"""


def script_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "CUDA_VISIBLE"))}
    env.update(PYTHONUNBUFFERED="1", COLUMNS="160", **extra)
    return env


def run_script(*args: str, check: bool = True, timeout: int = 300, env: dict | None = None,
               ) -> subprocess.CompletedProcess:
    """Run one of the scripts in a new process, the way a user would, from the repository root."""
    cmd = [sys.executable, *args] if args[0].endswith(".py") else list(args)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env or script_env())
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def accelerate_cli() -> str:
    return str(Path(sys.executable).with_name("accelerate"))


def launch(config: str, *args: str, launcher_args: tuple[str, ...] = (), **kw) -> subprocess.CompletedProcess:
    """`accelerate launch --config_file accelerate_configs/<config>.yaml [launcher_args] train.py ...`"""
    return run_script(accelerate_cli(), "launch", "--config_file", f"accelerate_configs/{config}.yaml",
                      *launcher_args, "train.py", *args, **kw)


def make_data(*args: str) -> None:
    make_data_script.main([str(a) for a in args])


def train(*args: str) -> None:
    train_script.main([str(a) for a in args])


def infer(*args: str) -> None:
    infer_script.main([str(a) for a in args])


def user_error(script_main, *args: str) -> str:
    """The one-line message of the UserError that a script's main raises on these arguments."""
    with pytest.raises(UserError) as info:
        script_main([str(a) for a in args])
    message = str(info.value)
    assert message and "\n" not in message
    return message


def assert_user_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    """Exit code 2, no traceback, exactly one line on stderr, naming each of `words`."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


def read_metrics(ckpt_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(ckpt_dir) / "metrics.jsonl").read_text().splitlines()]


def read_csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def read_config(ckpt_dir: Path) -> dict:
    return json.loads((Path(ckpt_dir) / "config.json").read_text())


@pytest.fixture(scope="session")
def recipe_cls(tmp_path_factory) -> Path:
    """The recipe's classification data, full size (100k rows)."""
    out = tmp_path_factory.mktemp("recipe_cls")
    make_data("--out-dir", out)
    return out / "cls_data"


@pytest.fixture(scope="session")
def small_cls(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("small_cls")
    make_data("--n-samples", SMALL_ROWS, "--out-dir", out)
    return out / "cls_data"


@pytest.fixture(scope="session")
def small_val(tmp_path_factory) -> Path:
    """The small classification data with validation rows (600), for early stopping."""
    out = tmp_path_factory.mktemp("small_val")
    make_data("--n-samples", SMALL_ROWS, "--val-size", "0.1", "--out-dir", out)
    return out / "cls_data"


@pytest.fixture(scope="session")
def reg_data(tmp_path_factory) -> Path:
    """The recipe's regression data (1000 rows)."""
    out = tmp_path_factory.mktemp("reg")
    make_data("--task", "regression", "--out-dir", out)
    return out / "reg_data"


@pytest.fixture(scope="session")
def small_model(small_cls, tmp_path_factory) -> Path:
    """One epoch on the small classification data: a model folder for inference tests to read."""
    ckpt = tmp_path_factory.mktemp("small_model")
    train("--data", small_cls, "--ckpt-dir", ckpt, "--epochs", 1)
    return ckpt


@pytest.fixture(scope="session")
def cls_run(recipe_cls, tmp_path_factory):
    """A few epochs of the classification recipe, launched through accelerate with cpu.yaml."""
    ckpt = tmp_path_factory.mktemp("cls_run")
    proc = launch("cpu", "--data", str(recipe_cls), "--ckpt-dir", str(ckpt), "--epochs", "6", "--eval-every", "2")
    return ckpt, proc


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/e2e/ is a scenario run in real processes: marked e2e with the
    tests elsewhere that carry the mark themselves."""
    e2e = Path(__file__).parent / "e2e"
    for item in items:
        if e2e in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)
