"""Rich console output. Scripts print through here; train.py only on the main process."""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from common.metrics import figure_name

if TYPE_CHECKING:
    from rich.live import Live


def _width_off_terminal(default: int = 120) -> int:
    """Off a terminal (logs, CI) rich assumes 80 columns and would truncate the regression
    table: take $COLUMNS when it holds a positive number, else `default`."""
    value = os.environ.get("COLUMNS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else default


def _console() -> Console:
    if sys.stdout is None:  # started with its standard output closed (`>&-`): nothing is shown, nothing fails
        return Console(file=open(os.devnull, "w"), width=_width_off_terminal())
    return Console() if sys.stdout.isatty() else Console(width=_width_off_terminal())


console = _console()


class QuietThreads:
    """sys.stdout while some threads are to print nothing (`quiet_thread`): their writes go
    nowhere, and to them it is no terminal (so rich starts no refresh thread for them); every other
    thread writes to the stream it stands in for."""

    def __init__(self, stream: Any):
        self.stream, self.quiet = stream, set[int]()

    def _heard(self) -> bool:
        return self.stream is not None and threading.get_ident() not in self.quiet

    def write(self, text: str) -> int:
        return self.stream.write(text) if self._heard() else len(text)

    def flush(self) -> None:
        if self._heard():
            self.stream.flush()

    def isatty(self) -> bool:
        return self._heard() and self.stream.isatty()

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, ...: the stream's own
        return getattr(self.stream, name)


_quiet_lock = threading.Lock()


@contextlib.contextmanager
def quiet_thread() -> Iterator[None]:
    """This thread prints nothing while the context lasts; other threads print as before. A
    redirect of the one process-wide sys.stdout (contextlib's) silenced theirs too, and two such
    redirects ending out of order (quiet fits in threads: scikit-learn's threading backend) left
    it on a discarded buffer for good."""
    me = threading.get_ident()
    with _quiet_lock:
        if not isinstance(sys.stdout, QuietThreads):
            sys.stdout = QuietThreads(sys.stdout)
        proxy = sys.stdout
        proxy.quiet.add(me)
    try:
        yield
    finally:
        with _quiet_lock:
            proxy.quiet.discard(me)
            if not proxy.quiet and sys.stdout is proxy:  # the last quiet thread: the stream it stood in for
                sys.stdout = proxy.stream


def fmt(value: float) -> str:
    """Four decimals for losses and ratios; two for figures on a large original scale."""
    return f"{value:.4f}" if abs(value) < 100 else f"{value:.2f}"


FEW_NAMED = 8  # classes of few rows named in make_data.py's note

LABELS = {
    "train_loss": "train loss", "val_loss": "val loss", "val_f1_macro": "val F1", "val_r2": "val R²",
    "test_loss": "test loss", "accuracy": "accuracy",
    "precision_macro": "precision", "recall_macro": "recall", "f1_macro": "F1",
    "train_mae": "train MAE", "train_rmse": "train RMSE", "train_r2": "train R²",
    "test_mae": "test MAE", "test_rmse": "test RMSE", "test_r2": "test R²",
}


def metrics_table(rows: Sequence[dict[str, Any]], title: str) -> Table:
    """One row per evaluation; columns are the figures the rows carry, epoch first."""
    table = Table(title=title, title_justify="left", min_width=len(title))  # never wrap the title
    table.add_column("epoch", justify="right")
    keys = [k for k in LABELS if rows and k in rows[0]]
    for key in keys:
        table.add_column(LABELS[key], justify="right")
    for row in rows:
        table.add_row(str(row["epoch"]), *(fmt(row[k]) for k in keys))
    return table


def roles_table(roles: Sequence[Any], title: str) -> Table:
    """One row per column of a user's table: what it became and why."""
    table = Table(title=title, title_justify="left")
    for col in ("column", "read as", "role", "blanks", "why"):
        table.add_column(col)
    for r in roles:
        table.add_row(r.name or "''", r.kind, r.role, str(r.missing), r.why)
    return table


def report_replaced(folder: Any, earlier: str | None) -> None:
    """Where make_data replaced a data set made from another table (ingest_to_folder): said, not silent."""
    if earlier is not None:
        console.print(f"Note: {folder} held the data set of {earlier}, now replaced by this one (runs trained on "
                      "it keep their models, and can no longer --resume)")


def dropped_rows(meta: Any) -> str | None:
    """What make_data.py says of the rows it left out for want of a target (a DatasetDescription's),
    or None. The spellings a table's text reads as blanks are named: `NA` may have meant North
    America."""
    dropped = meta.source.get("rows_without_target")
    if not dropped:
        return None
    return (f"Dropped {dropped} row(s) without a target value: blank, or written as a missing value (`NA`, `N/A`, "
            "`NaN`, `null`, `None`, `?`, in their usual cases)")


def report_dataset(meta: Any) -> None:
    """What make_data.py made (a DatasetDescription): each column's role, the target's reading and
    the split."""
    source = meta.source
    if source.get("csv"):
        console.print(roles_table(meta.roles, f"columns of {source['csv']}"))
    if source.get("task_reason"):
        modelled = {"log_link": "; modelled through a log link (Poisson deviance; --target-transform none models it "
                                "as it is)",
                    "log1p": "; modelled as log(1 + y)"}.get(meta.target.transform if meta.target else "", "")
        console.print(f"Target '{source['target']}': {source['task_reason']}{modelled}")
    if dropped := dropped_rows(meta):
        console.print(escape(dropped))
    labels, steps = meta.class_labels, meta.preprocess
    dates = len(steps.dates)
    kinds = [f"{len(steps.numeric) - dates} numeric", *([f"{dates} date"] if dates else []),
             f"{len(steps.categorical)} categorical"]
    console.print(f"[bold]{meta.task}[/]: {meta.n_train} train / {meta.n_val} validation / "
                  f"{meta.n_test} test rows, {', '.join(kinds[:-1])} and {kinds[-1]} features"
                  + (f", {len(labels)} classes" if labels else ""))
    if far := source.get("target_far_values"):
        console.print(f"Note: {far['rows']} training target value(s) lie over a thousand times the target's typical "
                      f"spread from its median {far['median']:g} (the farthest {far['farthest']:g}): squared error, "
                      "R² and the model's fit are about them; check them (a slip, or a code for unknown), or drop "
                      "those rows")
    if few := source.get("classes_of_few_rows"):
        named = ", ".join(f"{escape(repr(label))} ({rows})" for label, rows in list(few.items())[:FEW_NAMED])
        if len(few) > FEW_NAMED:  # hundreds of them would fill the screen: dataset.json lists them all
            named += f" and {len(few) - FEW_NAMED:,} more of the {len(labels):,} classes (dataset.json names them all)"
        console.print(f"Note: class(es) with few training rows: {named}. The model can hardly learn "
                      "them, and macro-F1, which picks the best epoch, counts each as much as any other class: "
                      "merge or drop their rows if they are not classes of their own")


def confusion_table(matrix: np.ndarray, labels: Sequence[Any]) -> Table:
    table = Table(title="confusion matrix", title_justify="left")
    table.add_column("true \\ pred")
    for label in labels:
        table.add_column(str(label), justify="right")
    for label, row in zip(labels, matrix, strict=True):
        table.add_row(str(label), *(str(int(v)) for v in row))
    return table


def per_class_table(report: dict[str, Any], labels: Sequence[Any]) -> Table:
    table = Table(title="per class", title_justify="left")
    for col in ("class", "precision", "recall", "support"):
        table.add_column(col, justify="right")
    for i, label in enumerate(labels):
        table.add_row(str(label), f"{report['precision'][i]:.4f}", f"{report['recall'][i]:.4f}",
                      str(report["support"][i]))
    return table


def figures_table(figures: dict[str, float], title: str) -> Table:
    table = Table(title=title, title_justify="left", min_width=len(title))
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(key, fmt(value))
    return table


def importance_table(importance: Any, width: int = 24) -> Table:
    """Columns by importance, most important first, each with a bar as long as its drop."""
    title = (f"which columns matter: drop in {figure_name(importance.figure)} when shuffled ({importance.scored_on}, "
             f"{importance.rows:,} rows, {importance.repeats} repeats, {importance.seconds:.1f} s)")
    table = Table(title=title, title_justify="left")
    for col, justify in (("column", "left"), ("drop", "right"), ("±", "right"), ("", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    top = max([c.mean for c in importance.columns] + [1e-12])
    for c in importance.columns:
        bar = "█" * round(width * max(c.mean, 0.0) / top)
        table.add_row(c.column, f"{c.mean:.4f}", f"{c.std:.4f}", f"[blue]{bar}[/]")
    return table


class TrainingDisplay:
    """A progress bar (epoch, loss, time left) under a table that grows by one row per evaluation.

    Silent where `enabled` is False (every process but the main one), so one copy reaches the
    terminal. On a terminal it redraws a few times a second from rich's own thread, never from
    the training loop; elsewhere (logs, CI) it prints once, at the end."""

    def __init__(self, title: str, epochs: int, first_epoch: int, enabled: bool):
        self.title, self.enabled = title, enabled
        self.rows: list[dict[str, Any]] = []
        self._live: Live | None = None
        if enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("epoch {task.completed}/{task.total}"), BarColumn(),
                TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), TextColumn("left"),
                TimeRemainingColumn(), console=console, auto_refresh=False,
            )
            self._task = self._progress.add_task("train", total=epochs, completed=first_epoch, loss="-")

    def _renderable(self):
        from rich.console import Group

        return Group(metrics_table(self.rows, self.title), self._progress)

    def __enter__(self) -> TrainingDisplay:
        if self.enabled:
            from rich.live import Live

            self._live = Live(self._renderable(), console=console, auto_refresh=console.is_terminal,
                              refresh_per_second=4, vertical_overflow="visible")
            self._live.__enter__()
        return self

    def epoch_done(self, loss: float) -> None:
        if self.enabled:
            self._progress.update(self._task, advance=1, loss=fmt(loss))

    def extend(self, epochs: int) -> None:
        """The run goes on to `epochs` in all."""
        if self.enabled:
            self._progress.update(self._task, total=epochs)

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if self._live is not None:
            self._live.update(self._renderable())

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            if not console.is_terminal:  # off a terminal, Live leaves the cursor after the table
                console.line()
