"""What a finished run writes beside its model, for a person: importance.json, the pictures
(common/figures.py) and the model card, README.md (common/train/card.py). Made on the main
process from the final weights (common/train/assessment.py) and committed with the model files.
"""
from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from common.console import console, importance_table
from common.data.dataset import TabularData
from common.figures import Painter
from common.files import write_json_file
from common.metrics import macro_figures
from common.model_folder import CARD_FILE, IMPORTANCE_FILE, PICTURES, ModelRecord
from common.train.assessment import Assessment, ScoredRows, assess
from common.train.card import model_card
from common.train.run_plan import TrainPlan
from common.train.trainer import record_key

REPORT_FILES = (IMPORTANCE_FILE, CARD_FILE, *PICTURES)
CARD_MARK = "<!-- the model card train.py writes: replaced by each run -->"


@dataclasses.dataclass
class RunReport:
    """The files to write (name -> a function that writes one to a path), and what it said."""

    writers: dict[str, Callable[[Path], Any]]
    assessment: Assessment | None

    @classmethod
    def made(cls, plan: TrainPlan, data: TabularData, rows: ScoredRows | None, weights: dict[str, Any],
             record: ModelRecord, records: list[dict[str, Any]], painter: Painter | None) -> RunReport:
        """The assessment, the pictures (drawn by `painter` while the model is assessed; None: no
        pictures) and the card. A report that cannot be made is a note: the model is saved all
        the same, without it."""
        try:
            with tempfile.TemporaryDirectory(prefix="tabular-pictures-") as drawn:
                pictures = Pictures(Path(drawn), painter)
                assessment = assessed(plan, data, rows, weights, record, records, pictures)
                drawn_pictures = pictures.finished()
        except Exception as err:
            console.print(f"Note: the run's report (importance, pictures, card) could not be made "
                          f"({type(err).__name__}: {err}): the model is saved without it")
            return cls({}, None)
        writers: dict[str, Callable[[Path], Any]] = {name: png_writer(png) for name, png in drawn_pictures.items()}
        final = record.outcome.final_metrics
        figures = headline(final, "test" if rows is not None and rows.name == "test" else "val")
        importance = assessment.importance if assessment else None
        if assessment is not None:
            figures = {assessment.figure: assessment.value, **figures}
            if assessment.confusion is not None:  # the model's decision's (a threshold's, where it has one)
                figures |= headline(macro_figures(np.asarray(assessment.confusion)))
            writers[IMPORTANCE_FILE] = json_writer(assessment.to_json())
        # The test split besides, where the figures above are of other rows: as the model decides.
        test = {} if rows is None or rows.name == "test" else \
            headline(record.outcome.test_by_decision or final, "test", TEST_FIGURES)
        card = model_card(plan.run.ckpt_dir, record, data.description, plan.describe(), figures,
                          scored_on_name(rows), importance, list(drawn_pictures), test)
        # A folder named in bytes that are not UTF-8 (Python's surrogates) is written back as those bytes.
        writers[CARD_FILE] = lambda path: path.write_text(card + "\n" + CARD_MARK + "\n", encoding="utf-8",
                                                          errors="surrogateescape")
        return cls(writers, assessment)


def assessed(plan: TrainPlan, data: TabularData, rows: ScoredRows | None, weights: dict[str, Any],
             record: ModelRecord, records: list[dict[str, Any]], pictures: Pictures) -> Assessment | None:
    """The assessment, each picture asked for as soon as what it shows is known: the curves
    first, the confusion matrix before the importance is measured, the importance last."""
    if records:
        pictures.draw("curves", records=records, monitor=plan.loop.monitor, kept_epoch=record.outcome.best_epoch,
                      scored_on=scored_on_name(rows), label_smoothing=plan.optim.label_smoothing)

    def draw_confusion(scored: Assessment) -> None:
        if scored.confusion is not None:
            pictures.draw("confusion", matrix=scored.confusion, labels=record.class_labels or [],
                          scored_on=scored.scored_on)

    assessment = assess(plan, data, rows, weights, draw_confusion, record.threshold)
    if assessment is not None and assessment.importance is not None:
        console.print(importance_table(assessment.importance))
        pictures.draw("importance", importance=assessment.importance.to_json())
    return assessment


def json_writer(obj: dict[str, Any]) -> Callable[[Path], Any]:
    return lambda path: write_json_file(path, obj)


def png_writer(png: bytes) -> Callable[[Path], Any]:
    return lambda path: path.write_bytes(png)


def scored_on_name(rows: ScoredRows | None) -> str:
    """The rows the run's figures come from, in words."""
    return rows.name if rows is not None else "training"


class Pictures:
    """The pictures asked of a Painter, drawn into `folder`, and read back once it has finished."""

    def __init__(self, folder: Path, painter: Painter | None):
        self.folder, self.painter = folder, painter
        self.names: list[str] = []

    def draw(self, picture: str, **args: Any) -> None:
        if self.painter is not None:
            self.names.append(f"{picture}.png")
            self.painter.draw(picture, self.folder / f"{picture}.png", **args)

    def finished(self) -> dict[str, bytes]:
        """Each picture drawn, as PNG bytes; a picture that could not be drawn is named in a note."""
        if self.painter is None:
            return {}
        failed = self.painter.finish()
        for path, why in failed.items():
            console.print(f"Note: {Path(path).name} was not drawn ({why}): the run's other files are saved")
        return {name: (self.folder / name).read_bytes() for name in self.names
                if str(self.folder / name) not in failed and (self.folder / name).is_file()}


HEADLINE = ("accuracy", "precision_macro", "recall_macro", "mae", "rmse")
TEST_FIGURES = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "mae", "rmse", "r2")


def headline(final: dict[str, Any], split: str | None = None, keep: tuple[str, ...] = HEADLINE) -> dict[str, float]:
    """The figures worth a card's table, not the losses: of one split's rows as the evaluations
    name them (`split`: "val", out of fold too, or "test"; trainer.record_key), or named bare."""
    def key(figure: str) -> str:
        return figure if split is None else record_key(split, figure)

    return {figure: float(final[key(figure)]) for figure in keep if isinstance(final.get(key(figure)), (int, float))}


def owned_card(path: Path) -> bool:
    """Whether README.md in a run folder is absent or a card an earlier run wrote: a folder's own
    README (a user's --ckpt-dir .) is never replaced."""
    try:
        return not path.exists() or CARD_MARK in path.read_text(errors="replace")
    except OSError:
        return False
