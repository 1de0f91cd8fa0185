"""Benchmark section 8, scale (run through bench/bench.py): the three scripts on a CSV of N rows
x 10 features, each step in a fresh process started the way a user starts it.

- ingest: make_data.py on the CSV, rows/s and peak memory, against reading the same file whole
  with pyarrow in a fresh process (the floor: what holding the parsed table costs);
- train: one epoch of train.py with 1 and 2 processes: epoch time, and each process's anonymous
  resident memory (RssAnon), which leaves out the page-cached data set file the processes map;
- infer: infer.py on the same CSV: rows/s and peak memory.

Expected: time linear in rows; anonymous memory per process flat in rows. The report prints the
ratios largest N / smallest N that say so, and make_data.py's peak over the floor's.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the files it reads go through their schemas in common/
FEATURES = [f"x{i}" for i in range(10)]
WRITE_CHUNK = 1_000_000  # rows generated and written at a time: the writer's memory stays bounded at any N
POLL_S = 0.2             # how often the memory of a running process tree is sampled
TRAIN_ARGS = ["--epochs", "1", "--hidden", "20", "--batch-size", "4096", "--lr", "0.001", "--optimizer", "adam",
              "--eval-every", "100000", "--patience", "0"]
READ_WHOLE = "import sys, pyarrow.csv; pyarrow.csv.read_csv(sys.argv[1])"


# Each measured command runs under this small parent, which times it and reports its peak
# resident size. Linux starts a child's ru_maxrss at its parent's resident size when it is
# spawned, so under bench.py (torch loaded, hundreds of MB) no peak could read lower than
# bench.py's own; under this ~15 MB parent it is the command's. RUSAGE_CHILDREN is the max over
# all children waited for, hence one parent per command.
MEASURE = """
import resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.call(sys.argv[2:])
seconds = time.perf_counter() - start
with open(sys.argv[1], "w") as out:
    out.write(f"{code} {seconds} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}")
"""


class StepFailed(Exception):
    """A script exited with an error; the message names the step and the script's last line."""


@dataclasses.dataclass
class Sampled:
    parent: int
    rss_anon_mb: float = 0.0  # the highest anonymous resident memory seen
    vm_rss_mb: float = 0.0    # the highest resident memory seen, file pages included


@dataclasses.dataclass
class Watched:
    command: int                    # the pid of the command measured
    seconds: float                  # its wall time, start-up included
    peak_rss_mb: float              # exact: the highest resident memory of any process in its tree
    processes: dict[int, Sampled]   # its tree, sampled every POLL_S


def write_csv(path: Path, rows: int, seed: int = 0) -> None:
    """x0..x9 (float) and a 3-class `label` set by a fixed linear map of them, so a model can learn it."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((10, 3), dtype=np.float32)
    schema = pa.schema([*(pa.field(name, pa.float32()) for name in FEATURES), pa.field("label", pa.int64())])
    with pa_csv.CSVWriter(path, schema) as writer:
        for start in range(0, rows, WRITE_CHUNK):
            X = rng.standard_normal((min(WRITE_CHUNK, rows - start), 10), dtype=np.float32)
            label = (X @ weights).argmax(axis=1).astype(np.int64)
            writer.write_table(pa.table([*X.T, label], schema=schema))


def memory_kb(pid: int) -> dict[str, int]:
    """RssAnon and VmRSS of one process from /proc; empty once it has exited."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        return {}
    fields = (line.split(":", 1) for line in lines if line.startswith(("RssAnon:", "VmRSS:")))
    return {name: int(value.split()[0]) for name, value in fields}


class TreeSampler:
    """Samples the memory of every process below `root` in a thread, until stopped."""

    def __init__(self, root: int):
        self.root, self.stop = root, threading.Event()
        self.processes: dict[int, Sampled] = {}
        self.thread = threading.Thread(target=self.run, daemon=True)

    def sample(self) -> None:
        import psutil

        try:
            tree = psutil.Process(self.root).children(recursive=True)
        except psutil.NoSuchProcess:
            return
        for proc in tree:
            mem = memory_kb(proc.pid)
            if not mem:  # exited since the listing
                continue
            seen = self.processes.setdefault(proc.pid, Sampled(proc.ppid()))
            seen.rss_anon_mb = max(seen.rss_anon_mb, mem["RssAnon"] / 1024)
            seen.vm_rss_mb = max(seen.vm_rss_mb, mem["VmRSS"] / 1024)

    def run(self) -> None:
        while True:
            self.sample()
            if self.stop.wait(POLL_S):
                return

    def __enter__(self) -> TreeSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def last_line(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def run_watched(step: str, cmd: Sequence[str], log: Path) -> Watched:
    """Run `cmd` from the repository root under MEASURE, sampling its tree's memory; its output
    goes to `log`."""
    env = {**os.environ, "COLUMNS": "120"}
    figures = log.with_suffix(".measured")
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", MEASURE, str(figures), *cmd], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, env=env)
        with TreeSampler(proc.pid) as sampler:
            proc.wait()
    code, seconds, peak_kb = figures.read_text().split()
    if int(code) != 0:  # negative: killed by that signal (the kernel's OOM killer sends 9)
        how = f"exited with {code}" if int(code) > 0 else f"was killed by signal {-int(code)}"
        raise StepFailed(f"{step} {how}: {last_line(log)}")
    # -1: the command ended before the first sample
    command = next((pid for pid, seen in sampler.processes.items() if seen.parent == proc.pid), -1)
    return Watched(command, float(seconds), int(peak_kb) / 1024, sampler.processes)


def throughput(watched: Watched, rows: int) -> dict[str, float]:
    return {"seconds": watched.seconds, "rows_per_s": rows / watched.seconds, "peak_rss_mb": watched.peak_rss_mb}


def ingest(table: Path, rows: int, out_dir: Path) -> dict[str, Any]:
    """make_data.py on the table, and the floor: pyarrow reading it whole. Both find the file in
    the page cache, since it was just written."""
    floor = run_watched("read whole", [sys.executable, "-c", READ_WHOLE, str(table)], out_dir / "read_whole.log")
    made = run_watched("make_data.py", [sys.executable, "make_data.py", "--csv", str(table), "--target", "label",
                                        "--out-dir", str(out_dir / "data")], out_dir / "make_data.log")
    return {"read_whole": throughput(floor, rows), "ingest": throughput(made, rows)}


def launch_command(processes: int) -> list[str]:
    if processes == 1:
        return [sys.executable, "train.py"]
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    return [accelerate, "launch", "--config_file", "accelerate_configs/multi_cpu.yaml", "train.py"]


def train(data: Path, run: Path, processes: int) -> dict[str, Any]:
    """One epoch; the epoch time is the loop time train.py records (start-up excluded)."""
    cmd = [*launch_command(processes), "--data", str(data), "--ckpt-dir", str(run), *TRAIN_ARGS]
    watched = run_watched(f"train.py, {processes} process(es)", cmd, run.with_suffix(".log"))
    from common.model_folder import load_record

    record = load_record(run).outcome
    # One process: the command is train.py itself. Two: the accelerate launcher, reported apart
    # since it holds no data, and its workers.
    tree = watched.processes
    workers = [watched.command] if processes == 1 else [p for p, seen in tree.items() if seen.parent == watched.command]
    return {"epoch_s": record.train_seconds / record.epochs_run, "workers": len(workers),
            "rss_anon_mb": max(tree[p].rss_anon_mb for p in workers),
            "vm_rss_mb": max(tree[p].vm_rss_mb for p in workers),
            "launcher_rss_anon_mb": tree[watched.command].rss_anon_mb if processes > 1 else None,
            "peak_rss_mb": watched.peak_rss_mb}


def infer(run: Path, table: Path, rows: int, out_dir: Path) -> dict[str, float]:
    cmd = [sys.executable, "infer.py", "--ckpt-dir", str(run), "--input", str(table),
           "--output", str(out_dir / "pred.csv")]
    return throughput(run_watched("infer.py", cmd, out_dir / "infer.log"), rows)


def measure_rows(tmp: Path, rows: int, processes: Sequence[int] = (1, 2)) -> dict[str, Any]:
    """Every step at one N; the N's files are deleted afterwards, so that the disk holds one N at a
    time. A failing step ends this N with its error line, and the next N still runs."""
    from common.data.dataset import read_description

    folder = tmp / f"scale_{rows}"
    folder.mkdir(parents=True)
    table = folder / f"rows_{rows}.csv"
    try:
        write_csv(table, rows)
        result: dict[str, Any] = {"rows": rows, "csv_mb": table.stat().st_size / 2**20,
                                  **ingest(table, rows, folder)}
        data = folder / "data" / table.stem
        result["train_rows"] = read_description(data)[0].n_train
        result["train"] = {f"{p}p": train(data, folder / f"run_{p}p", p) for p in processes}
        result["infer"] = infer(folder / f"run_{processes[0]}p", table, rows, folder)
        return result
    except StepFailed as err:
        return {"rows": rows, "error": str(err)}
    finally:
        shutil.rmtree(folder)


def per_row(result: dict[str, Any], procs: str) -> float:
    return result["train"][procs]["epoch_s"] / result["train_rows"]


def ratios(sizes: list[dict[str, Any]]) -> dict[str, Any]:
    """At the largest N, make_data.py's peak over the floor's; with two sizes or more, largest N
    over smallest N, where 1.0 is time linear in rows and memory flat in rows."""
    done = sorted((r for r in sizes if "error" not in r), key=lambda r: r["rows"])
    if not done:
        return {}
    first, last = done[0], done[-1]
    out = {"rows": last["rows"],
           "ingest_peak_over_read_whole": last["ingest"]["peak_rss_mb"] / last["read_whole"]["peak_rss_mb"]}
    if len(done) > 1:
        both = [procs for procs in last["train"] if procs in first["train"]]
        out["from_rows"] = first["rows"]
        out |= {f"epoch_s_per_row_{procs}": per_row(last, procs) / per_row(first, procs) for procs in both}
        out |= {f"rss_anon_{procs}": last["train"][procs]["rss_anon_mb"] / first["train"][procs]["rss_anon_mb"]
                for procs in both}
    return out


def startup_seconds(tmp: Path) -> dict[str, float]:
    """Wall time of `--help` (imports and argument parsing): the part of ingest's and infer's
    wall time that does not grow with rows."""
    tmp.mkdir(parents=True, exist_ok=True)
    return {script: run_watched(f"{script} --help", [sys.executable, script, "--help"], tmp / "help.log").seconds
            for script in ("make_data.py", "infer.py")}


def scale(tmp: Path, sizes: Iterable[int], processes: Sequence[int] = (1, 2)) -> dict[str, Any]:
    measured = [measure_rows(tmp, n, processes) for n in sizes]
    return {"sizes": measured, "ratios": ratios(measured), "startup_s": startup_seconds(tmp)}


def figure(result: dict[str, Any], procs: str, key: str, fmt: str) -> str:
    train = result["train"].get(procs)
    return format(train[key], fmt) if train else "-"


def scale_table(scaled: dict[str, Any]) -> Any:
    from rich.table import Table

    t = Table(title="8. scale: a CSV of N rows x 10 features -> make_data.py -> train.py (1 epoch, batch 4096 per "
                    "process; RssAnon: the largest worker's) -> infer.py on the CSV, each a fresh process",
              title_justify="left")
    t.add_column("rows", justify="right", no_wrap=True)
    for col in ("ingest rows/s", "ingest peak MB", "read whole peak MB", "epoch s 1p", "epoch s 2p",
                "us / 1k rows 1p", "RssAnon MB 1p", "RssAnon MB 2p", "infer rows/s", "infer peak MB"):
        t.add_column(col, justify="right")
    for r in scaled["sizes"]:
        if "error" in r:
            t.add_row(f"{r['rows']:,}", "failed", *[""] * 9)
            continue
        us_per_1k = f"{per_row(r, '1p') * 1e9:.0f}" if "1p" in r["train"] else "-"
        t.add_row(f"{r['rows']:,}", f"{r['ingest']['rows_per_s']:,.0f}", f"{r['ingest']['peak_rss_mb']:.0f}",
                  f"{r['read_whole']['peak_rss_mb']:.0f}", figure(r, "1p", "epoch_s", ".3f"),
                  figure(r, "2p", "epoch_s", ".3f"), us_per_1k, figure(r, "1p", "rss_anon_mb", ".0f"),
                  figure(r, "2p", "rss_anon_mb", ".0f"), f"{r['infer']['rows_per_s']:,.0f}",
                  f"{r['infer']['peak_rss_mb']:.0f}")
    return t


def ratio_line(ratios: dict[str, Any]) -> str:
    line = f"ingest peak / read-whole peak at {ratios['rows']:,} rows: {ratios['ingest_peak_over_read_whole']:.2f}"
    if "from_rows" not in ratios:
        return line
    procs = sorted(k.rsplit("_", 1)[1] for k in ratios if k.startswith("rss_anon_"))
    return (line + f"; {ratios['rows']:,} rows over {ratios['from_rows']:,}: epoch time per row "
            + ", ".join(f"{p} {ratios['epoch_s_per_row_' + p]:.2f}" for p in procs) + " (1.00 = linear), RssAnon "
            + ", ".join(f"{p} {ratios['rss_anon_' + p]:.2f}" for p in procs) + " (1.00 = flat)")


def report(results: dict, console: Any) -> None:
    scaled = results["scale"]
    console.print(scale_table(scaled))
    for r in scaled["sizes"]:
        if "error" in r:
            console.print(f"{r['rows']:,} rows failed: {r['error']}", markup=False, highlight=False)
    startup = ", ".join(f"{script} {s:.2f} s" for script, s in scaled["startup_s"].items())
    console.print(f"Ingest and infer rows/s are over wall time, start-up included; start-up alone (--help): "
                  f"{startup}. Epoch: train.py's loop time. RssAnon leaves out the page-cached data set the "
                  "workers map.")
    if scaled["ratios"]:
        console.print(ratio_line(scaled["ratios"]))
