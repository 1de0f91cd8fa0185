"""The run folder's pictures, drawn with matplotlib: how training went (curves.png), which columns
matter (importance.png) and, for classes, the confusion matrix of the scored rows
(confusion.png).

matplotlib is imported here only, inside the functions, when a picture is drawn: never at
start-up or on the training path. Figures are built with matplotlib's object API (no pyplot),
so drawing keeps no global state and needs no display. Each function writes a PNG to `path`.

A run draws through a `Painter`: a process of its own, started with the run (by train.py even
before torch loads: `start_early`), that imports matplotlib while the model trains (on a core
the training does not use) and draws while the run assesses its model, so that the pictures
add a fraction of a second to a run, not one.
It speaks JSON lines over its standard input and output, and ends when its input does (also
when the run is killed).
"""
from __future__ import annotations

import atexit
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.importance import Importance
from common.metrics import figure_name

ROOT = Path(__file__).resolve().parents[1]

DPI = 110
MOST_COLUMNS = 25  # importance.png shows this many columns at most, the most important


CHAR_INCHES = 0.085  # about one character of a tick label at matplotlib's default 10 pt


def _figure(width: float, height: float) -> Any:
    """A figure whose margins the caller sets: matplotlib's automatic layouts cost as much time
    again as the drawing."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI)


def _label_inches(labels: Sequence[str]) -> float:
    return 0.3 + CHAR_INCHES * max([len(label) for label in labels] + [1])


def _save(fig: Any, path: Path) -> None:
    fig.savefig(path, format="png")


def draw_curves(records: Sequence[dict[str, Any]], monitor: str, kept_epoch: int | None, scored_on: str,
                path: Path, label_smoothing: float = 0.0) -> None:
    """Training loss per evaluation (left) and the monitored figure (right): the run's own line,
    each member's on its fold as thin lines where the run cross-fits, the kept epoch marked.
    With label smoothing the training loss cannot fall below the smoothed targets' entropy: the
    legend says so, lest the gap to the held-out loss read as a fault."""
    fig = _figure(9.0, 3.6)
    fig.subplots_adjust(left=0.075, right=0.985, bottom=0.14, top=0.91, wspace=0.22)
    loss_ax, figure_ax = fig.subplots(1, 2)
    epochs = [r["epoch"] for r in records]
    smoothing = f" (label smoothing {label_smoothing:g})" if label_smoothing else ""
    loss_ax.plot(epochs, [r["train_loss"] for r in records], color="tab:blue", label=f"training loss{smoothing}")
    held = monitor.replace("f1_macro", "loss").replace("r2", "loss")
    if held != monitor and all(held in r for r in records):
        loss_ax.plot(epochs, [r[held] for r in records], color="tab:orange", label=f"{scored_on} loss")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_title("loss")
    loss_ax.legend(loc="upper right", fontsize="small")
    members_key = monitor.split("_")[0] + "_members"
    members: list[list[float | None]] = [r[members_key] for r in records if isinstance(r.get(members_key), list)]
    if members and len(members) == len(records):
        for i in range(len(members[0])):
            figure_ax.plot(epochs, [float("nan") if m[i] is None else m[i] for m in members], color="tab:gray",
                           alpha=0.45, linewidth=0.8,
                           label="each member, on its fold" if i == 0 else None)
    figure_ax.plot(epochs, [r[monitor] for r in records], color="tab:orange", linewidth=2,
                   label=f"the run ({scored_on})")
    for ax in (loss_ax, figure_ax):
        if kept_epoch is not None:
            ax.axvline(kept_epoch, color="tab:green", linestyle="--", linewidth=1)
    if kept_epoch is not None:
        figure_ax.plot([], [], color="tab:green", linestyle="--", label=f"kept: epoch {kept_epoch}")
    figure_ax.set_xlabel("epoch")
    figure_ax.set_title(f"{figure_name(monitor)}, {scored_on}")
    figure_ax.legend(loc="best", fontsize="small")
    _save(fig, path)


def draw_importance(importance: Importance, path: Path) -> None:
    """One bar per column, the figure's mean drop when it is shuffled, its spread as a whisker."""
    shown = importance.columns[:MOST_COLUMNS][::-1]  # the most important on top
    width, height = 7.0, 1.2 + 0.28 * len(shown)
    fig = _figure(width, height)
    fig.subplots_adjust(left=min(0.5, _label_inches([c.column for c in shown]) / width), right=0.97,
                        bottom=0.55 / height, top=1 - 0.4 / height)
    ax = fig.subplots()
    ax.barh([c.column for c in shown], [c.mean for c in shown], xerr=[c.std for c in shown], color="tab:blue",
            ecolor="tab:gray", capsize=2)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(f"drop in {figure_name(importance.figure)} when the column is shuffled "
                  f"({importance.repeats} repeats)")
    ax.set_title(f"which columns matter: {importance.rows:,} rows, {importance.scored_on}")
    _save(fig, path)


def draw_confusion(matrix: Sequence[Sequence[int]], labels: Sequence[Any], scored_on: str, path: Path) -> None:
    """Counts, true class by row and predicted class by column; each row shaded by its share."""
    import numpy as np

    counts = np.asarray(matrix, dtype=np.int64)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    names = [str(label) for label in labels]
    rotate = max(map(len, names)) > 4
    left = _label_inches(names) + 0.35
    bottom = 0.75 * _label_inches(names) + 0.45 if rotate else 0.75
    side = 1.8 + 0.45 * len(labels)
    width, height = side + left + 0.3, side + bottom + 0.45
    fig = _figure(width, height)
    fig.subplots_adjust(left=left / width, right=1 - 0.3 / width, bottom=bottom / height, top=1 - 0.45 / height)
    ax = fig.subplots()
    ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(names)), names, rotation=45 if rotate else 0, ha="right" if rotate else "center")
    ax.set_yticks(range(len(names)), names)
    if len(names) <= 20:
        for (i, j), n in np.ndenumerate(counts):
            ax.text(j, i, f"{n:,}", ha="center", va="center", fontsize="small",
                    color="white" if shares[i, j] > 0.6 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix, {scored_on}")
    _save(fig, path)


def _draw(picture: str, path: Path, args: dict[str, Any]) -> None:
    if picture == "curves":
        draw_curves(args["records"], args["monitor"], args["kept_epoch"], args["scored_on"], path,
                    args.get("label_smoothing", 0.0))
    elif picture == "importance":
        draw_importance(Importance.from_json(args["importance"]), path)
    elif picture == "confusion":
        draw_confusion(args["matrix"], args["labels"], args["scored_on"], path)
    else:
        raise ValueError(f"no picture named {picture!r}")


def serve() -> None:
    """The Painter's process: import matplotlib, then draw each picture asked for, one JSON line
    each way, until its input ends."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    warm_up = _figure(1.0, 1.0)  # the first picture loads the fonts and the renderer: paid while the run trains
    warm_up.subplots().set_title("warm-up")
    warm_up.savefig(io.BytesIO(), format="png")

    for line in sys.stdin:
        job = json.loads(line)
        try:
            _draw(job["picture"], Path(job["path"]), job["args"])
            print(json.dumps({"path": job["path"], "error": None}), flush=True)
        except Exception as err:  # reported to the run, which goes on without that picture
            print(json.dumps({"path": job["path"], "error": f"{type(err).__name__}: {err}"}), flush=True)


class Painter:
    """`with Painter() as painter:` ... `painter.draw("curves", path, records=...)` ... `painter.finish()`:
    the pictures drawn in a process of its own; `finish` waits for them and returns the ones that
    failed (path -> why). Where the process cannot start or dies, every picture is a failure."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.asked: list[str] = []
        self.failed: dict[str, str] = {}

    def __enter__(self) -> Painter:
        if self.proc is None and "*" not in self.failed:  # not started early (start_early)
            self.start()
        return self

    def start(self) -> None:
        try:
            # A session of its own: Ctrl-C in the terminal is the run's to handle (it may still
            # commit, pictures and all), not a signal that kills the painter under it.
            self.proc = subprocess.Popen(
                [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
                 "from common.figures import serve; serve()"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                start_new_session=True)
        except OSError as err:
            self.failed["*"] = f"cannot start a process to draw in ({err})"

    def draw(self, picture: str, path: Path, **args: Any) -> None:
        self.asked.append(str(path))
        if self.proc is None or self.proc.stdin is None:
            return
        try:
            self.proc.stdin.write(json.dumps({"picture": picture, "path": str(path), "args": args}) + "\n")
            self.proc.stdin.flush()
        except (OSError, ValueError):  # it has ended: finish() says why
            pass

    def finish(self, timeout_s: float = 120.0) -> dict[str, str]:
        """Wait for every picture asked for; the failed ones, with why."""
        if self.proc is None:
            return {path: self.failed["*"] for path in self.asked}
        try:
            out, err = self.proc.communicate(timeout=timeout_s)
        except (subprocess.TimeoutExpired, OSError, ValueError):
            self.proc.kill()
            out, _ = self.proc.communicate()  # reaped; the pictures it had finished still count
            err = f"it did not finish within {timeout_s:.0f} s"
        done = {}
        for line in out.splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):  # a line that is not an answer
                answer = json.loads(line)
                done[answer["path"]] = answer["error"]
        why = (err.strip().splitlines() or [f"it ended with code {self.proc.returncode}"])[-1]
        failures = {path: done.get(path, why) for path in self.asked}
        self.failed = {path: reason for path, reason in failures.items() if reason}
        self.proc = None
        return self.failed

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:  # left early (an error, a signal): nothing more to draw
            self.proc.kill()
            self.proc.wait()


# train.py's main process starts its Painter before it loads torch (start_early), and the run
# takes it (run_painter); one the run does not take is stopped when the process exits.
_started_early: list[Painter] = []


def start_early(argv: Sequence[str]) -> None:
    """Start the run's Painter now, before torch loads: matplotlib's import (~0.7 s here) then
    runs beside torch's on another core rather than beside the first epochs, and a short run
    (one epoch of the recipe: ~2 s) no longer waits for it at its end. Only where this is a
    launch's first process (or no launch's) and the command line leaves the pictures on."""
    from common.config import asks_for_help

    if os.environ.get("RANK", "0") != "0" or asks_for_help(argv) or not pictures_asked(argv) or _started_early:
        return
    painter = Painter()
    painter.start()
    _started_early.append(painter)
    atexit.register(stop_early)


def pictures_asked(argv: Sequence[str]) -> bool:
    """Whether the command line leaves the pictures on (the last of --pictures / --no-pictures
    decides; a config file may still turn them off, and the run then stops the Painter)."""
    flags = [arg for arg in argv if arg in ("--pictures", "--no-pictures")]
    return not flags or flags[-1] == "--pictures"


def run_painter() -> Painter:
    """The run's Painter: the one started early, else a new one (started on entering it)."""
    return _started_early.pop() if _started_early else Painter()


def stop_early() -> None:
    """A Painter started early that no run took (pictures off after all, not the main process,
    an error before training): stopped."""
    while _started_early:
        _started_early.pop().__exit__()
