"""Benchmark: train.py's loop against its peers, measured in one run on the same data.

    python bench/bench.py                 # everything (a few minutes on 2 cores, and section 8's 50M rows)
    python bench/bench.py --quick         # smaller sizes and fewer epochs, for a smoke run
    python bench/bench.py --no-ddp --no-tables --epochs 2 --sizes 2000 --infer-rows 3000   # mostly section 8

Prints ratios (ours / peer) and accuracies:
  0. whole processes (bench/processes.py): `train.py --epochs 1` and its imports; per epoch with
     start-up removed, train.py against the seed's own loop and scikit-learn, each a fresh process;
  1. epoch time of our loop (1 CPU process, Accelerate) vs the recipe's DataLoader loop and
     vs sklearn's MLPClassifier, same data, architecture, optimizer, batch and epochs;
  2. Accelerate's overhead: our loop vs the same fast data path in plain PyTorch;
  3. epoch time and peak memory as the rows grow (10k .. 10M);
  4. infer.py's throughput and peak memory on 1M rows;
  5. where data parallelism starts to pay on this machine: 1 vs 2 processes (gloo), the
     recipe's model and a wide one;
  6. reading (bench/tables.py): make_data.py's reading speed and memory on CSV and Parquet;
  7. quality (bench/quality.py; extras: pip install -r bench/requirements.txt): the default path,
     make_data.py + train.py + infer.py as a user runs them, on ~20 real tables split by the
     benchmark, against default LightGBM, HistGradientBoosting and an MLP pipeline (~6 minutes);
  8. scale (bench/scale.py): 1M, 10M and 50M rows x 10 features through the three scripts, each
     in a fresh process: make_data.py's rows/s and peak memory against reading the CSV whole, the
     epoch time and each process's anonymous resident memory with 1 and 2 processes, infer.py's
     rows/s and peak memory. Expected: time linear in rows, anonymous memory flat in rows.
Last, every time and quality goal beside this run's figures (bench/goals.py), met or not.
Results also go to --out (JSON). Timings live here, never in the tests.
"""
from __future__ import annotations

import dataclasses
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common.config import field, parse_config, recipe_value  # noqa: E402
from common.console import console  # noqa: E402
from common.model_folder import load_record  # noqa: E402


@dataclasses.dataclass
class BenchConfig:
    epochs: int = field(20, "epochs for the peer comparison (section 1 and 2)")
    recipe_rows: int = field(recipe_value("classification", "n_samples"),
                             "rows of the recipe's generated table for sections 1 and 2 (80% of them train)")
    sizes: list[int] = field([10_000, 100_000, 1_000_000, 10_000_000], "training rows for the scaling section")
    infer_rows: int = field(1_000_000, "rows for the inference throughput")
    quick: bool = field(False, "small sizes and 5 epochs: a smoke run")
    processes: bool = field(True, "whole processes: start-up and per-epoch time (section 0; about a minute)")
    ddp: bool = field(True, "measure 1 vs 2 processes (section 5; about a minute)")
    tables: bool = field(True, "users' tables: reading speed and default-path quality (sections 6 and 7)")
    read_sizes: list[int] = field([1_000_000, 10_000_000], "rows of the generated tables for the reading section")
    timing_rows: list[int] = field([10_000], "rows of the generated tables the three commands are timed on, beside "
                                   "LightGBM's whole process (section 7b; none: skip)")
    quality_tables: list[str] = field([], "the quality section's tables by name (default: all in bench/quality.py)",
                                      metavar="NAME")
    extra_tables: list[str] = field([], "more tables for the quality section, as PATH:TARGET[:TASK]",
                                    metavar="PATH:TARGET")
    scale: bool = field(True, "rows through make_data.py, train.py (1 and 2 processes) and infer.py (section 8; "
                        "~10 GB of /tmp at 50M rows)")
    scale_rows: list[int] = field([1_000_000, 10_000_000, 50_000_000], "rows of the generated CSVs for section 8")
    out: str = field("bench/out/results.json", "where to write the results as JSON")
    worker: str | None = field(None, "internal: run one measurement in this process and print JSON")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def median_epoch(epochs) -> float:
    """Run each epoch and return the median duration: robust to a stray slow epoch."""
    times = []
    for run in epochs:
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def recipe_data(n_samples: int):
    from common.config import MakeDataConfig
    from common.data.builtin import resolve_make_data_config, split_and_preprocess, synthetic_table

    cfg = resolve_make_data_config(MakeDataConfig(n_samples=n_samples))
    return split_and_preprocess(synthetic_table(cfg), cfg).data


def synthetic_data(n_train: int):
    """Cheap classification data of any size (sklearn's generator is too slow at 10M rows)."""
    from common.data.dataset import DatasetDescription, TabularData
    from common.steps import Preprocessor

    rng = np.random.default_rng(0)
    n_test = max(1, n_train // 4)
    X = rng.standard_normal((n_train + n_test, 10), dtype=np.float32)
    y = (X @ rng.standard_normal((10, 3), dtype=np.float32)).argmax(1).astype(np.int64)
    names = [f"x{i}" for i in range(10)]
    pre = Preprocessor.all_numeric(names, [0.0] * 10, [1.0] * 10)
    meta = DatasetDescription("classification", [0, 1, 2], pre, None, n_train, 0, n_test, [],
                              {"generator": "make_classification"})  # trained with the recipe's settings
    return TabularData(X[:n_train], y[:n_train], X[n_train:], y[n_train:], meta)


class PlainTorch:
    """Stands in for the Accelerator with plain PyTorch calls: one process, no wrappers."""
    device, num_processes, process_index, sync_gradients = torch.device("cpu"), 1, 0, True
    gradient_accumulation_steps, distributed_type, scaler = 1, "NO", None

    @staticmethod
    def backward(loss):
        loss.backward()

    @staticmethod
    def reduce(t, reduction="sum"):
        return t

    @staticmethod
    def print(*args):
        pass


def our_loop(data, epochs: int, accelerate: bool = True) -> tuple[float, float]:
    """(seconds per epoch, final test accuracy) of train.py's Trainer."""
    from common.config import TrainConfig
    from common.model import build_model
    from common.train.leans import LEANS
    from common.train.optim import make_optimizer
    from common.train.run_context import find_context
    from common.train.run_plan import make_plan
    from common.train.trainer import Stepper, Trainer

    plan = make_plan(TrainConfig(), data, find_context(TrainConfig(), 1, 1))
    torch.manual_seed(0)
    model = build_model(plan.model)
    optimizer = make_optimizer(plan.optim, model.parameters())
    accelerator: Any
    if accelerate:
        from accelerate import Accelerator

        accelerator = Accelerator(cpu=True)
        model, optimizer = accelerator.prepare(model, optimizer)
        stepper = Stepper(accelerator, model, optimizer, None, plan.batches.grad_accum)
    else:  # the same loop with no Accelerate object in it at all
        accelerator = PlainTorch()
        plain = {**dict.fromkeys(LEANS), "epoch_signal": "plain PyTorch has no gradient state"}
        stepper = Stepper(accelerator, model, optimizer, None, plan.batches.grad_accum, missing=plain)
    trainer = Trainer(accelerator, model, optimizer, None, data, plan, stepper)
    trainer.run_epoch(0)  # warm-up, untimed
    seconds = median_epoch([lambda e=e: trainer.run_epoch(e) for e in range(1, epochs + 1)])
    return seconds, trainer.evaluate(epochs, trainer.train_loss())["accuracy"]


def dataloader_loop(data, epochs: int) -> tuple[float, float]:
    """The recipe's loop: DataLoader(TensorDataset, shuffle=True), Adam, loss.item() per step."""
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.ReLU(), torch.nn.Linear(20, 3))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = torch.nn.CrossEntropyLoss()
    loader = DataLoader(TensorDataset(torch.from_numpy(data.X_train), torch.from_numpy(data.y_train)),
                        batch_size=1024, shuffle=True)

    def run_epoch():
        running = 0.0
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            optimizer.step()
            running += loss.item() * xb.size(0)

    run_epoch()
    seconds = median_epoch([run_epoch] * epochs)
    with torch.no_grad():
        acc = (model(torch.from_numpy(data.X_test)).argmax(1).numpy() == data.y_test).mean()
    return seconds, float(acc)


def sklearn_mlp(data, epochs: int) -> tuple[float, float]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=(20,), solver="adam", batch_size=1024, max_iter=epochs,
                        n_iter_no_change=epochs + 1, tol=0.0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        clf.fit(data.X_train, data.y_train)
    seconds = (time.perf_counter() - start) / clf.n_iter_  # sklearn runs its epochs in one call: the mean
    return seconds, float(clf.score(data.X_test, data.y_test))


# Linux starts a child's peak RSS (ru_maxrss) at its parent's resident size, so a worker spawned
# by this process, which holds hundreds of MB by section 3, could never report less. A small
# intermediate parent gives each worker a peak of its own.
SMALL_PARENT = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


# Workers run on one thread, as the loops compared run, but infer.py's: it takes every core, as
# a user runs it.
ALL_CORES = {"infer"}


LATER_CALLS = 2  # infer.py's calls after the first in its worker: the best of them is reported beside it


def in_worker(kind: str, arg: str) -> dict:
    """Run one measurement in a fresh process, so its peak memory is its own."""
    threads = {} if kind in ALL_CORES else {"OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", SMALL_PARENT, sys.executable, __file__, "--worker", f"{kind}:{arg}"],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, **threads})
    if proc.returncode != 0:
        raise RuntimeError(f"worker {kind}:{arg} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def worker(spec: str) -> dict:
    kind, arg = spec.split(":", 1)
    if kind not in ALL_CORES:
        torch.set_num_threads(1)
    if kind == "scale":
        rows = int(arg)
        base = peak_rss_mb()
        data = synthetic_data(rows)
        epochs = 1 if rows >= 5_000_000 else 3
        seconds, _ = our_loop(data, epochs)
        return {"rows": rows, "epoch_s": seconds, "peak_rss_mb": peak_rss_mb(), "base_rss_mb": base}
    if kind == "infer":
        import infer
        from common.allocator import keep_chunk_memory
        from common.data.tables import without_pandas

        keep_chunk_memory()  # as infer.py's own process does (run_cli)
        without_pandas()  # and its main block
        gc.freeze()  # and its collector, past what it loaded (common/errors.quiet_start)

        base = peak_rss_mb()
        ckpt, rows_file, out = arg.split(",")
        argv = ["--ckpt-dir", ckpt, "--input", rows_file, "--output", out]
        start = time.perf_counter()
        infer.main(argv)
        first, peak = time.perf_counter() - start, peak_rss_mb()
        # Later calls in the same process: the first pays for memory it touches for the first
        # time and for first-call set-up, which a server or a Python caller pays once.
        later = []
        for _ in range(LATER_CALLS):
            start = time.perf_counter()
            infer.main(argv)
            later.append(time.perf_counter() - start)
        return {"seconds": first, "later_seconds": min(later), "peak_rss_mb": peak, "base_rss_mb": base}
    if kind == "ingest":
        import tables

        return tables.ingest_worker(arg, peak_rss_mb)
    raise ValueError(spec)


def compare_peers(cfg: BenchConfig) -> tuple[dict, int]:
    """Each loop's epoch time and test accuracy on the recipe's table; its training rows."""
    torch.set_num_threads(1)
    data = recipe_data(cfg.recipe_rows)
    results = {}
    for name, fn in [("ours", lambda: our_loop(data, cfg.epochs)),
                     ("plain_fast_path", lambda: our_loop(data, cfg.epochs, accelerate=False)),
                     ("dataloader", lambda: dataloader_loop(data, cfg.epochs)),
                     ("sklearn_mlp", lambda: sklearn_mlp(data, cfg.epochs))]:
        seconds, acc = fn()
        results[name] = {"epoch_ms": seconds * 1e3, "accuracy": acc}
    return results, len(data.y_train)


def inference_throughput(cfg: BenchConfig, tmp: Path) -> dict:
    """Train a model for one epoch with train.py, then time infer.py on `infer_rows` raw rows."""
    import contextlib
    import io

    import make_data
    import train

    with contextlib.redirect_stdout(io.StringIO()):  # their own reports are not the benchmark's
        make_data.main(["--n-samples", "20000", "--out-dir", str(tmp / "data")])
        train.main(["--data", str(tmp / "data" / "cls_data"), "--ckpt-dir", str(tmp / "ckpt"), "--epochs", "1",
                    "--no-pictures"])  # the model is what is timed here, not its report
    rows = np.random.default_rng(0).standard_normal((cfg.infer_rows, 10))
    np.save(tmp / "rows.npy", rows)
    out = {}
    for fmt in ("npz", "csv"):
        r = in_worker("infer", f"{tmp / 'ckpt'},{tmp / 'rows.npy'},{tmp / ('preds.' + fmt)}")
        out[fmt] = {**r, "rows_per_s": cfg.infer_rows / r["seconds"],
                    "later_rows_per_s": cfg.infer_rows / r["later_seconds"]}
    return out


DDP_CASES = {  # label -> (epochs, train.py arguments)
    "recipe 10-20-3, batch 1024": (30, ["--hidden", "20", "--batch-size", "1024"]),
    "wide 10-512-512-3, batch 4096": (4, ["--hidden", "512", "512", "--batch-size", "4096"]),
}


def epoch_seconds(config: str, data: Path, ckpt: Path, epochs: int, args: list[str]) -> float:
    """Seconds per epoch of a real launch, from the loop time train.py records (start-up excluded)."""
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    cmd = [accelerate, "launch", "--config_file", f"accelerate_configs/{config}.yaml", "train.py", "--data", str(data),
           "--ckpt-dir", str(ckpt), "--epochs", str(epochs), "--eval-every", "100000", *args]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, env={**os.environ, "COLUMNS": "120"})
    record = load_record(ckpt).outcome
    return record.train_seconds / record.epochs_run


def ddp_crossover(tmp: Path) -> list[dict]:
    """1 vs 2 processes; each process takes whole batches, so 2 processes run half the steps
    of an epoch, each step paying an all-reduce."""
    subprocess.run([sys.executable, "make_data.py", "--out-dir", str(tmp / "ddp")], cwd=ROOT, check=True,
                   capture_output=True)
    data, rows = tmp / "ddp" / "cls_data", []
    for label, (epochs, args) in DDP_CASES.items():
        row: dict[str, Any] = {"case": label}
        for procs, config in ((1, "cpu"), (2, "multi_cpu")):
            row[f"epoch_s_{procs}"] = epoch_seconds(config, data, tmp / f"ddp_{procs}", epochs, args)
        rows.append(row)
    return rows


def report(results: dict) -> None:
    from rich.table import Table

    peers = results["peers"]
    ours = peers["ours"]
    rows = results.get("recipe_train_rows", recipe_value("classification", "n_samples") * 4 // 5)  # older results
    t = Table(title=f"1-2. epoch time, classification recipe ({rows:,} x 10 rows, 10-20-3 MLP, Adam, batch 1024), "
                    f"{results['epochs']} epochs", title_justify="left")
    for col in ("loop", "ms / epoch", "ours / this", "test accuracy"):
        t.add_column(col, justify="right")
    for name, r in peers.items():
        t.add_row(name, f"{r['epoch_ms']:.1f}", f"{ours['epoch_ms'] / r['epoch_ms']:.3f}", f"{r['accuracy']:.4f}")
    console.print(t)
    overhead = ours["epoch_ms"] / peers["plain_fast_path"]["epoch_ms"] - 1
    console.print(f"speed-up over the DataLoader loop: {peers['dataloader']['epoch_ms'] / ours['epoch_ms']:.1f}x; "
                  f"vs sklearn: ratio {ours['epoch_ms'] / peers['sklearn_mlp']['epoch_ms']:.2f}; "
                  f"Accelerate overhead: {overhead * 100:+.1f}%")
    t = Table(title="3. scaling with rows (synthetic, 1 process)", title_justify="left")
    for col in ("train rows", "s / epoch", "us / 1k rows", "peak RSS MB", "over start MB"):
        t.add_column(col, justify="right")
    for r in results["scaling"]:
        t.add_row(f"{r['rows']:,}", f"{r['epoch_s']:.3f}", f"{r['epoch_s'] / r['rows'] * 1e9:.0f}",
                  f"{r['peak_rss_mb']:.0f}", f"{r['peak_rss_mb'] - r['base_rss_mb']:.0f}")
    console.print(t)
    t = Table(title=f"4. infer.py on {results['infer_rows']:,} raw rows (.npy in, in-process, start-up excluded; "
                    f"the first call, and the best of {LATER_CALLS} more in the same process)", title_justify="left")
    for col in ("output", "seconds", "rows / s", "later call s", "later rows / s", "peak RSS MB"):
        t.add_column(col, justify="right")
    for fmt, r in results["inference"].items():
        t.add_row(fmt, f"{r['seconds']:.2f}", f"{r['rows_per_s']:,.0f}", f"{r['later_seconds']:.2f}",
                  f"{r['later_rows_per_s']:,.0f}", f"{r['peak_rss_mb']:.0f}")
    console.print(t)
    if results.get("ddp"):
        t = Table(title="5. data parallelism on this CPU (each process takes whole batches)", title_justify="left")
        for col in ("model", "1 process s/epoch", "2 processes s/epoch", "speed-up"):
            t.add_column(col, justify="right")
        for r in results["ddp"]:
            t.add_row(r["case"], f"{r['epoch_s_1']:.3f}", f"{r['epoch_s_2']:.3f}",
                      f"{r['epoch_s_1'] / max(r['epoch_s_2'], 1e-9):.2f}x")
        console.print(t)


def report_tables(results: dict) -> None:
    from rich.table import Table

    t = Table(title="6. make_data.py on a generated table (10 numeric + 1 text column), fresh process",
              title_justify="left")
    for col in ("rows", "format", "MB", "read s", "make_data s", "rows / s", "peak RSS MB"):
        t.add_column(col, justify="right")
    for r in results["reading"]:
        t.add_row(f"{r['rows']:,}", r["format"], f"{r['mb']:.0f}", f"{r['read_seconds']:.2f}", f"{r['seconds']:.2f}",
                  f"{r['rows_per_s']:,.0f}", f"{r['peak_rss_mb']:.0f}")
    console.print(t)
    import quality

    quality.report(results["quality"], console)


def main(argv=None) -> None:
    cfg = parse_config(BenchConfig, argv, __doc__)
    if cfg.worker:
        print(json.dumps(worker(cfg.worker)))
        return
    if cfg.quick:
        cfg = dataclasses.replace(cfg, epochs=5, sizes=[10_000, 100_000], infer_rows=100_000, read_sizes=[100_000],
                                  scale_rows=[100_000, 300_000], timing_rows=[3_000],
                                  quality_tables=cfg.quality_tables or ["penguins", "breast_cancer", "CPS1985"])
    import tempfile

    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or ''}".strip(", ")
    results: dict[str, Any] = {"machine": machine, "torch": torch.__version__, "epochs": cfg.epochs,
                               "infer_rows": cfg.infer_rows}
    results["peers"], results["recipe_train_rows"] = compare_peers(cfg)
    results["scaling"] = [in_worker("scale", str(n)) for n in cfg.sizes]
    with tempfile.TemporaryDirectory() as tmp:
        if cfg.processes:
            import processes

            results["processes"] = processes.whole_processes(Path(tmp))
        results["inference"] = inference_throughput(cfg, Path(tmp))
        if cfg.ddp:
            results["ddp"] = ddp_crossover(Path(tmp))
        if cfg.tables:
            import tables

            results["reading"] = tables.reading(Path(tmp), cfg.read_sizes, in_worker)
            import quality

            results["quality"] = quality.run(Path(tmp), quality.select(cfg.quality_tables, cfg.extra_tables),
                                             timing_rows=cfg.timing_rows)
        if cfg.scale:
            import scale

            results["scale"] = scale.scale(Path(tmp), cfg.scale_rows)
    console.print(f"machine: {results['machine']}, torch {results['torch']}")
    if cfg.processes:
        import processes

        processes.report(results["processes"], console)
    report(results)
    if cfg.tables:
        report_tables(results)
    if cfg.scale:
        import scale

        scale.report(results, console)
    Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
    Path(cfg.out).write_text(json.dumps(results, indent=2) + "\n")
    import goals

    goals.report(results, console)


if __name__ == "__main__":
    main()
