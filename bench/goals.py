"""The time and quality goals, each beside what this run of bench/bench.py measured: one table
at the end of the run, so that every goal is read against peers measured in the same run.

A goal whose section was skipped (`--no-processes`, `--no-tables`, a size left out) says
"not measured", never met.
"""
from __future__ import annotations

from typing import Any, NamedTuple

LARGE_ROWS = 30_000  # a "large" table of section 7: its gap to LightGBM has a goal of its own


class Goal(NamedTuple):
    figure: str
    ours: str
    beside: str  # the peer or the limit it is read against
    goal: str
    met: bool | None  # None: not measured in this run


def not_measured(figure: str, goal: str, why: str) -> Goal:
    return Goal(figure, "-", f"not measured ({why})", goal, None)


def recipe_goals(peers: dict[str, Any]) -> list[Goal]:
    ours, sklearn = peers["ours"]["epoch_ms"], peers["sklearn_mlp"]["epoch_ms"]
    loop, plain = peers["dataloader"]["epoch_ms"], peers["plain_fast_path"]["epoch_ms"]
    overhead = ours / plain - 1
    return [
        Goal("recipe epoch, in-process", f"{ours:.1f} ms",
             f"scikit-learn {sklearn:.1f} ms ({ours / sklearn:.2f}); DataLoader loop {loop:.1f} ms "
             f"({loop / ours:.1f}x)", "<= 0.5 of scikit-learn's, >= 20x the DataLoader loop",
             ours <= 0.5 * sklearn and loop / ours >= 20),
        Goal("Accelerate's overhead over plain PyTorch", f"{overhead * 100:+.1f}%", f"plain PyTorch {plain:.1f} ms",
             "<= 5%", overhead <= 0.05),
    ]


def process_goals(processes: dict[str, Any] | None) -> list[Goal]:
    if not processes:
        return [not_measured("whole process, per epoch", ">= 20x the seed's loop, >= 2x scikit-learn",
                             "--no-processes"),
                not_measured("python train.py --epochs 1", "the compiler stack never imported", "--no-processes")]
    ours, seed, sklearn = processes["ours_epoch_s"], processes["seed_epoch_s"], processes["sklearn_epoch_s"]
    compiler = processes.get("compiler_imported")
    return [
        Goal("whole process, per epoch (start-up removed)", f"{ours * 1e3:.1f} ms",
             f"the seed's loop {seed * 1e3:.1f} ms ({seed / ours:.1f}x); scikit-learn {sklearn * 1e3:.1f} ms "
             f"({sklearn / ours:.1f}x)", ">= 20x the seed's loop, >= 2x scikit-learn",
             seed / ours >= 20 and sklearn / ours >= 2),
        Goal("python train.py --epochs 1", f"{processes['train_epochs_1_s']:.2f} s",
             f"imports {processes['train_imports_s']:.2f} s; compiler stack "
             + ("imported" if compiler else "not imported" if compiler is not None else "not checked"),
             "the compiler stack never imported", None if compiler is None else not compiler),
    ]


def timing_goals(quality: dict[str, Any] | None) -> list[Goal]:
    goal = "<= 2x LightGBM's whole process, F1 no lower"
    rows = (quality or {}).get("timing") or []
    if not rows:
        return [not_measured("the three commands, generated table", goal, "--no-tables")]
    goals = []
    for r in rows:
        figure = f"the three commands, generated {r['rows']:,}-row table"
        if r.get("error") or not r.get("lightgbm_s"):
            goals.append(Goal(figure, "-", r.get("error") or r.get("lightgbm_error") or "no LightGBM", goal, None))
            continue
        ratio = r["seconds"] / r["lightgbm_s"]
        goals.append(Goal(figure, f"{r['seconds']:.1f} s, F1 {r['f1_macro']:.3f}",
                          f"LightGBM {r['lightgbm_s']:.1f} s, F1 {r['lightgbm_f1_macro']:.3f} ({ratio:.1f}x)", goal,
                          ratio <= 2 and r["f1_macro"] >= r["lightgbm_f1_macro"]))
    return goals


def inference_goals(inference: dict[str, Any], rows: int) -> list[Goal]:
    npz, csv = inference["npz"]["rows_per_s"], inference["csv"]["rows_per_s"]
    return [Goal(f"infer.py, {rows:,} rows from .npy (first call)", f"{npz / 1e6:.1f} M rows/s to .npz, "
                 f"{csv / 1e6:.1f} M to CSV", "memory bandwidth: far above", ">= 5 M rows/s to .npz, >= 3 M to CSV",
                 npz >= 5e6 and csv >= 3e6)]


def reading_goals(reading: list[dict[str, Any]] | None) -> list[Goal]:
    goal = "<= 10 s"
    row = next((r for r in reading or [] if r["rows"] == 10_000_000 and r["format"] == "csv"), None)
    if row is None:
        return [not_measured("make_data.py, 10M-row CSV, quantile scaling", goal, "10M rows not in --read-sizes")]
    standard = next((r for r in reading or [] if r["rows"] == 10_000_000 and r["format"].startswith("csv,")), None)
    beside = f"standard scaling {standard['seconds']:.1f} s" if standard else ""
    return [Goal("make_data.py, 10M-row CSV, quantile scaling", f"{row['seconds']:.1f} s, peak "
                 f"{row['peak_rss_mb']:.0f} MB", beside, goal, row["seconds"] <= 10)]


def quality_goals(quality: dict[str, Any] | None) -> list[Goal]:
    tables = [r for r in (quality or {}).get("tables", []) if r.get("gap") is not None]
    if quality is None or not tables:
        return [not_measured("section 7", "mean gap >= +0.019, none below -0.05", "--no-tables")]
    s = quality["summary"]
    behind = [r["table"] for r in tables if r["gap"] < s["behind_threshold"]]
    goals = [Goal(f"section 7, {len(tables)} table{'' if len(tables) == 1 else 's'}: mean gap to the best of "
                  "LightGBM / HGB / MLP",
                  f"{s['mean_gap']:+.3f}", f"worst {s['worst_gap']:+.3f} ({s['worst_table']})",
                  ">= +0.019, no table below -0.05", s["mean_gap"] >= 0.019 and not behind)]
    large = [r for r in tables if r.get("rows", 0) >= LARGE_ROWS and r.get("lightgbm") is not None]
    if large:
        worst = min(large, key=lambda r: r["ours"] - r["lightgbm"])
        gap = worst["ours"] - worst["lightgbm"]
        goals.append(Goal(f"tables of {LARGE_ROWS // 1000}k+ rows ({len(large)}) against LightGBM",
                          f"worst {gap:+.3f} ({worst['table']})", "LightGBM, same rows", ">= -0.01 on each",
                          gap >= -0.01))
    return goals


def goals(results: dict[str, Any]) -> list[Goal]:
    """Every goal beside this run's figures, in the order the sections ran."""
    return [*recipe_goals(results["peers"]), *process_goals(results.get("processes")),
            *timing_goals(results.get("quality")), *inference_goals(results["inference"], results["infer_rows"]),
            *reading_goals(results.get("reading")), *quality_goals(results.get("quality"))]


def report(results: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    t = Table(title="Goals, against this run's figures", title_justify="left")
    for col in ("figure", "ours", "beside it, this run", "goal", "met"):
        t.add_column(col, justify="left")
    for g in goals(results):
        met = "-" if g.met is None else "[green]yes[/green]" if g.met else "[red]no[/red]"
        t.add_row(g.figure, g.ours, g.beside, g.goal, met)
    console.print(t)
