"""The helpers that tests share: run the scripts (in this process or in a new one), make the
tables they read, and read what they write. Plain functions and constants only: fixtures live in
conftest.py, and every test module imports what it needs from here (never from another test module).

Most tests call the scripts' `main()` in this process: interpreter start-up (torch, Accelerate)
is most of a small run's time. Real processes are launched only where that is what a test
proves (tests/e2e/): exit codes and one-line errors, several processes, kills, the accelerate launcher.
"""
from __future__ import annotations

import contextlib
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

import infer as infer_script
import make_data as make_data_script
import train as train_script
from common.errors import UserError

ROOT = Path(__file__).resolve().parents[1]

# A test-set size that no process count or batch size divides: 6003 rows -> 4802 train, 1201 test.
SMALL_ROWS = 6003

# Quick settings for a user's small table (hundreds to thousands of rows): a step's fixed cost rules
# at these sizes, so few, large batches.
FAST = ["--batch-size", "128", "--epochs", "10", "--lr", "0.01", "--eval-every", "10"]

# What a finished run leaves in its folder.
FILES = ("model.safetensors", "config.json", "metrics.jsonl")

# The recipe's ten feature names, as a CSV header.
RECIPE_HEADER = ",".join(f"x{i}" for i in range(10))

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


# The run's pictures cost a process importing matplotlib: drawn only where a test asks for them
# (`--pictures` later on the line wins).
QUIET_RUN = ["--no-pictures"]


# ---- the scripts in a new process ----

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


def launch(config: str, *args: str, launcher_args: tuple[str, ...] = (), pictures: bool = False,
           **kw) -> subprocess.CompletedProcess:
    """`accelerate launch --config_file accelerate_configs/<config>.yaml [launcher_args] train.py ...`"""
    return run_script(accelerate_cli(), "launch", "--config_file", f"accelerate_configs/{config}.yaml",
                      *launcher_args, "train.py", *([] if pictures else QUIET_RUN), *args, **kw)


def assert_user_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    """Exit code 2, no traceback, exactly one line on stderr, naming each of `words`."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


# ---- the scripts in this process ----

def make_data(*args: str) -> None:
    make_data_script.main([str(a) for a in args])


def train(*args: str) -> None:
    train_script.main([*QUIET_RUN, *(str(a) for a in args)])


def infer(*args: str) -> None:
    infer_script.main([str(a) for a in args])


def train_args(data, ckpt, *extra):
    return ["--data", str(data), "--ckpt-dir", str(ckpt), *map(str, extra)]


def user_error(script_main, *args: str) -> str:
    """The one-line message of the UserError that a script's main raises on these arguments."""
    with pytest.raises(UserError) as info:
        script_main([str(a) for a in args])
    message = str(info.value)
    assert message and "\n" not in message
    return message


# ---- what the scripts write ----

def read_metrics(ckpt_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(ckpt_dir) / "metrics.jsonl").read_text().splitlines()]


def read_csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def read_config(ckpt_dir: Path) -> dict:
    return json.loads((Path(ckpt_dir) / "config.json").read_text())


def snapshot(folder):
    """The bytes of a finished run's files."""
    return {name: (folder / name).read_bytes() for name in FILES}


# ---- users' tables ----

def write(path, columns, sep=","):
    table = pa.table(columns)
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    else:
        pa_csv.write_csv(table, path, write_options=pa_csv.WriteOptions(delimiter=sep))
    return path


def people(rows=600, seed=0, sort_by_class=False):
    """An id, text with blanks, true/false, numbers with blanks, a constant and an empty column."""
    rng = np.random.default_rng(seed)
    city = rng.choice(["oslo", "paris", "rome"], rows)
    member = rng.random(rows) < 0.5
    age = rng.normal(40, 10, rows)
    score = (city == "rome") * 1.5 + member * 1.0 + (age - 40) / 10 + rng.normal(0, 0.5, rows)
    label = np.where(score > 1.2, "high", "low")
    order = np.argsort(label, kind="stable") if sort_by_class else np.arange(rows)
    age_with_blanks = np.where(rng.random(rows) < 0.15, np.nan, age)
    city_with_blanks = [None if rng.random() < 0.1 else c for c in city]
    return {
        "person_id": np.arange(rows),
        "city": pa.array([city_with_blanks[i] for i in order]),
        "member": member[order],
        "age": pa.array(age_with_blanks[order], from_pandas=True),
        "country": ["norway"] * rows,
        "notes": pa.nulls(rows, pa.string()),
        "label": label[order],
    }


def count_table(path, rows=400, seed=0):
    """A skewed count target (most rows 0-3, a few in the hundreds), one text column."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    shop = rng.choice(["a", "b", "c"], rows)
    visits = np.floor(np.expm1(np.clip(1.2 * x + (shop == "a") + rng.normal(0, 0.5, rows), 0, None) * 2)).astype(int)
    write(path, {"x": x, "shop": shop, "visits": visits})
    return visits


def write_csv(path, header, rows):
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def write_rows(path, rows, header=RECIPE_HEADER, id_column=None):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(([id_column] if id_column else []) + header.split(","))
        for row in rows:
            w.writerow(row)


# ---- the machine ----

@contextlib.contextmanager
def tmpfs(path, options):
    """A small filesystem of its own (a full disk, a read-only one): root only; skipped elsewhere."""
    path.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.decode().strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
