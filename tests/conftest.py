"""Shared fixtures: tiny seeded data sets made once per session by the real make_data.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# A test-set size that no process count or batch size divides: 6003 rows -> 4802 train, 1201 test.
SMALL_ROWS = 6003


def script_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "CUDA_VISIBLE"))}
    env.update(PYTHONUNBUFFERED="1", COLUMNS="160", **extra)
    return env


def run_script(*args: str, check: bool = True, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run one of the scripts the way a user would, from the repository root."""
    cmd = [sys.executable, *args] if args[0].endswith(".py") else list(args)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env or script_env())
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def launch(config: str, *args: str, launcher_args: tuple[str, ...] = (), **kw) -> subprocess.CompletedProcess:
    """`accelerate launch --config_file accelerate_configs/<config>.yaml [launcher_args] train.py ...`"""
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    return run_script(accelerate, "launch", "--config_file", f"accelerate_configs/{config}.yaml", *launcher_args,
                      "train.py", *args, **kw)


def assert_user_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    """Exit code 2, no traceback, exactly one line on stderr, naming each of `words`."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


def read_metrics(ckpt_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (ckpt_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="session")
def recipe_cls(tmp_path_factory) -> Path:
    """The recipe's classification data, full size (100k rows)."""
    out = tmp_path_factory.mktemp("recipe_cls")
    run_script("make_data.py", "--out-dir", str(out))
    return out / "cls_data.npz"


@pytest.fixture(scope="session")
def small_cls(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("small_cls")
    run_script("make_data.py", "--n-samples", str(SMALL_ROWS), "--out-dir", str(out))
    return out / "cls_data.npz"


@pytest.fixture(scope="session")
def reg_data(tmp_path_factory) -> Path:
    """The recipe's regression data (1000 rows)."""
    out = tmp_path_factory.mktemp("reg")
    run_script("make_data.py", "--task", "regression", "--out-dir", str(out))
    return out / "reg_data.npz"
