"""The model card: README.md in the run folder, in the Hugging Face Hub's format (YAML front
matter, then Markdown), so that `hf upload <repo> <ckpt-dir> --exclude .lock` makes a complete
model repository of the folder. It says what the model is (task, target, columns and how each
is prepared), how it was trained and on what, its figures on rows it never trained on, which
columns matter, and the lines that use it."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.data.description import DatasetDescription
from common.decision import decision_in_words
from common.importance import Importance
from common.metrics import figure_name
from common.model_folder import ModelRecord, RunOutcome
from common.steps import Preprocessor

HUB_METRICS = {"f1_macro": ("f1", {"average": "macro"}), "accuracy": ("accuracy", None), "r2": ("r_squared", None),
               "mae": ("mae", None), "rmse": ("rmse", None)}


def front_matter(name: str, record: ModelRecord, figures: dict[str, float], scored_on: str) -> str:
    import yaml

    pipeline = f"tabular-{record.task}"
    metrics = [{"type": HUB_METRICS[k][0], "value": round(float(v), 6), "name": f"{figure_name(k)} ({scored_on})",
                **({"args": HUB_METRICS[k][1]} if HUB_METRICS[k][1] else {})}
               for k, v in figures.items() if k in HUB_METRICS]
    meta = {
        "library_name": "pytorch",
        "tags": [pipeline, "tabular", "safetensors", "accelerate"],
        "pipeline_tag": pipeline,
        "metrics": sorted({str(m["type"]) for m in metrics}),
        "model-index": [{"name": name, "results": [{
            "task": {"type": pipeline, "name": pipeline.replace("-", " ").title()},
            "dataset": {"type": name, "name": name},
            "metrics": metrics}]}],
    }
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def how_prepared(name: str, pre: Preprocessor) -> str:
    for step in pre.numeric:
        if step.name == name:
            scaling = "training quantiles mapped onto a normal" if step.quantiles is not None else \
                "standardised" if step.is_date else f"standardised (mean {step.mean:.4g}, scale {step.scale:.4g})"
            if step.is_date:
                cycles = ", ".join(part.replace("_", " ") for part in step.date_parts)
                scaling = f"a date: its instant ({scaling}) and its cycles ({cycles}) as sine and cosine"
            blanks = f"; blanks take the median {step.median_text} and a `{name}_missing` input" if step.indicator \
                else ""
            view = pre.code_view(name)
            codes = f"; also as codes: a learned embedding of its {len(view.levels)} most frequent values" if view \
                else ""
            return scaling + blanks + codes
    for cat in pre.categorical:
        if cat.name == name:
            return f"learned embedding of {len(cat.levels)} levels; rare and unseen values share one code"
    return ""


def epochs_text(outcome: RunOutcome) -> str:
    """The card's epochs: how many, the legs among them, and whose weights were kept."""
    legs = ""
    if outcome.legs:
        lengths = [str(n) for n in outcome.legs]
        listed = lengths[0] if len(lengths) == 1 else ", ".join(lengths[:-1]) + " and " + lengths[-1]
        legs = (f" ({outcome.epochs_run - sum(outcome.legs)} planned, then {'a leg' if len(lengths) == 1 else 'legs'} "
                f"of {listed} while the best came late)")
    kept = f"the best evaluation's weights kept (epoch {outcome.best_epoch})" if outcome.weights == "best" \
        else "the last epoch's weights"
    return f"{outcome.epochs_run}{legs}, {kept}"


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


TRANSFORM_WORDS = {"log_link": "modelled as the exponential of the network's output: a log link",
                   "log1p": "modelled on the log scale, log(1 + y)"}


def figures_table(figures: dict[str, float]) -> str:
    return markdown_table(["figure", "value"], [[figure_name(k), f"{v:.4f}"] for k, v in figures.items()])


def network_in_words(members: int, hidden: Sequence[int], activation: str) -> str:
    """'a linear model', 'an MLP (20, relu)', 'an ensemble of 5 MLPs (128 x 128, relu)'."""
    kind, shape = ("MLP", f" ({' x '.join(map(str, hidden))}, {activation})") if hidden else ("linear model", "")
    if members > 1:
        return f"an ensemble of {members} {kind}s{shape}"
    return f"{'an' if hidden else 'a'} {kind}{shape}"


def held_out_of_training(training: dict[str, Any]) -> str:
    """What the training rows held out themselves: folds, each validating one member, or one
    validation fold (a table's figures are on these rows, not on a validation split)."""
    folds = training.get("folds", 0)
    if folds >= 2:
        return f" (in {folds} folds, each member validated on its own)"
    return " (a validation fold of them held out)" if folds == 1 else ""


def model_card(ckpt_dir: str | Path, record: ModelRecord, description: DatasetDescription, plan_line: str,
               figures: dict[str, float], scored_on: str, importance: Importance | None, pictures: list[str],
               test: dict[str, float] | None = None) -> str:
    """README.md's text. `figures`: the saved weights' figures on `scored_on` rows; `test`: theirs
    on the test split, as the model decides, where those are other rows."""
    source = description.source
    name = Path(record.data).name if record.data else str(source.get("generator") or "model")  # the data set's
    target = record.target_column or "the target"
    what = ("classes " + ", ".join(f"`{c}`" for c in record.class_labels or [])) if record.task == "classification" \
        else "a number" + (f", {TRANSFORM_WORDS.get(record.target.transform, record.target.transform)}"
                           if record.target and record.target.transform != "none" else "")
    network = network_in_words(record.model.members, record.model.hidden, record.model.activation)
    parts = [front_matter(name, record, figures, scored_on), f"# {name}: {record.task} of `{target}`\n",
             f"Predicts `{target}` ({what}) from {plural(len(record.preprocess.column_names), 'column')} of "
             f"`{source.get('csv') or name}` with {network}, trained with PyTorch and Accelerate. Weights in "
             "`model.safetensors`, everything else needed to use them in `config.json`: no pickle anywhere.\n"]
    parts.append(f"## Figures ({scored_on})\n\n" + figures_table(figures) + "\n" if figures else
                 "## Figures\n\nNone: every row of the data set trained the model (no validation or test rows, no "
                 "folds), so there are no rows it never saw to measure it on.\n")
    decision = decision_in_words(record.decision, record.training.get("decision", ""), record.class_labels or [])
    if decision:
        figures_note = (" The figures above are this decision's, on the rows its threshold was chosen on: a little "
                        "above what new rows get.") if record.decision else ""
        parts.append(f"It predicts {decision}.{figures_note}\n")
    if test:
        parts.append(f"## Test split ({description.n_test:,} rows, never trained on, nor chosen on)\n\n"
                     + figures_table(test) + "\n")
    if importance is not None:
        parts.append(f"## Which columns matter\n\nThe drop in {figure_name(importance.figure)} when a column "
                     f"is shuffled, over {importance.rows:,} rows ({importance.scored_on}), "
                     f"{importance.repeats} repeats:\n\n" + markdown_table(
                         ["column", "drop", "spread"],
                         [[f"`{c.column}`", f"{c.mean:.4f}", f"{c.std:.4f}"] for c in importance.columns]) + "\n")
    roles = [[f"`{r.name}`", r.role, r.missing, how_prepared(r.name, record.preprocess) or r.why]
             for r in description.roles if r.name != record.target_column]
    if roles:
        parts.append("## Columns\n\n" + markdown_table(["column", "role", "blanks", "how it enters the model"], roles)
                     + "\n")
    parts.append(f"## Training\n\n{plan_line}.\n\n" + markdown_table(["", ""], [
        ["rows", f"{description.n_train:,} training{held_out_of_training(record.training)}, "
                 f"{description.n_val:,} validation, {description.n_test:,} test"],
        ["hardware", f"{record.num_processes} process(es), {record.device}, mixed precision {record.mixed_precision}"],
        ["epochs", epochs_text(record.outcome)],
        ["time", f"{record.outcome.train_seconds:.1f} s training, {record.outcome.startup_seconds:.1f} s start-up"],
        ["versions", ", ".join(f"{k} {v}" for k, v in record.versions.items())]]) + "\n")
    if pictures:
        parts.append("## Pictures\n\n" + "\n".join(f"![{Path(p).stem}]({p})" for p in pictures) + "\n")
    folder = str(ckpt_dir)
    proba = "\nmodel.predict_proba(rows)   # columns in model.classes order" if record.task == "classification" else ""
    parts.append("## Use it\n\nWith this repository's code (`common/`, `infer.py`):\n\n```bash\n"
                 f"python infer.py --ckpt-dir {folder} --input new_rows.csv --output predictions.csv\n```\n\n"
                 "```python\nfrom common.api import Predictor\n\n"
                 f"model = Predictor.load(\"{folder}\")\nmodel.predict(rows)         # a DataFrame, an Arrow table, "
                 f"a dict of columns or a list of rows{proba}\n```\n")
    return "\n".join(parts)
