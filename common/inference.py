"""Loading a model folder and predicting with it: safetensors and JSON only, never pickle."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from common.artifacts import CONFIG_FILE, MODEL_FILE, atomic_path, load_weights, read_json
from common.dataset import preprocessor_of, unscale_target
from common.errors import UserError
from common.model import ACTIVATIONS, build_model, forward_in_chunks, load_state
from common.preprocess import Categories, Preprocessor
from common.table import decimal_of, numeric_values, read_table, text_values

REQUIRED_KEYS = ("task", "model", "feature_names")


def load_model_dir(ckpt_dir: str | Path) -> tuple[dict[str, Any], torch.nn.Module]:
    ckpt_dir = Path(ckpt_dir)
    config = read_json(ckpt_dir / CONFIG_FILE, "model config")
    problem = config_problem(config)
    if problem:
        raise UserError(f"{ckpt_dir / CONFIG_FILE} {problem}: use the config.json that train.py wrote with "
                        "these weights")
    model = build_model(config["model"])
    weights = load_weights(ckpt_dir / MODEL_FILE)
    bad = [k for k, v in weights.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise UserError(f"{ckpt_dir / MODEL_FILE} holds NaN or infinite weights in {bad}: retrain the model")
    load_state(model, weights, str(ckpt_dir / MODEL_FILE))
    return config, model.eval()


def config_problem(config: dict[str, Any]) -> str | None:
    """What is wrong with a model folder's config.json for this code, or None: each key it reads,
    with the type it needs, checked before any is used."""
    missing = [k for k in REQUIRED_KEYS if k not in config]
    if "preprocess" not in config and not {"x_mean", "x_scale"} <= config.keys():
        missing.append("preprocess")
    if config.get("task") == "classification" and not config.get("class_labels"):
        missing.append("class_labels")
    if config.get("task") == "regression" and not all(isinstance(config.get(k), (int, float))
                                                      for k in ("y_mean", "y_scale")):
        missing.append("y_mean/y_scale")
    if missing:
        return f"lacks {missing}"
    spec = config["model"]
    if config["task"] not in ("classification", "regression"):
        return f"names an unknown task {config['task']!r}"
    if not isinstance(spec, dict) or not all(isinstance(spec.get(k), int) for k in ("in_features", "out_features")) \
            or not isinstance(spec.get("hidden"), list) or spec.get("activation") not in ACTIVATIONS:
        return f"describes a model this code cannot build ({spec!r})"
    inputs = spec["in_features"] + len(spec.get("categorical", []))
    if len(config["feature_names"]) != inputs:
        return f"names {len(config['feature_names'])} inputs but the model takes {inputs}"
    try:
        pre = preprocessor_of(config)
    except (KeyError, TypeError, ValueError):
        return "holds preprocessing steps this code cannot read"
    if len(pre.input_names) != inputs:
        return f"has preprocessing for {len(pre.input_names)} inputs but the model takes {inputs}"
    if config["task"] == "classification" and len(config["class_labels"]) != spec["out_features"]:
        return f"names {len(config['class_labels'])} classes but the model has {spec['out_features']} outputs"
    return None


def model_outputs(model: torch.nn.Module, X_inputs: np.ndarray, batch_size: int) -> np.ndarray:
    """Logits (classification) or scaled targets (regression) for preprocessed rows, in order."""
    X = torch.from_numpy(np.ascontiguousarray(X_inputs, dtype=np.float32))
    return forward_in_chunks(model, X, batch_size).numpy()


def predict(config: dict[str, Any], model: torch.nn.Module, X_inputs: np.ndarray,
            batch_size: int) -> dict[str, np.ndarray]:
    """Preprocessed rows -> predictions in the original label space or y scale."""
    out = model_outputs(model, X_inputs, batch_size)
    if config["task"] == "classification":
        proba = torch.softmax(torch.from_numpy(out).double(), dim=1).numpy()
        labels = np.asarray(config["class_labels"])
        return {"prediction": labels[proba.argmax(axis=1)], "proba": proba}
    return {"prediction": unscale_target(out, config)[:, 0]}


def read_npy_rows(path: str, pre: Preprocessor) -> np.ndarray:
    """A numeric array, its columns the model's numeric table columns in training order."""
    if pre.categorical:
        raise UserError(f"{path}: a .npy array cannot hold the model's categorical columns "
                        f"{[c.name for c in pre.categorical]}: pass a CSV or Parquet file")
    if not Path(path).is_file():
        raise UserError(f"input {path} not found: check the path")
    try:
        X = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {path} ({err}): save a numeric array with numpy.save") from None
    names = pre.column_names
    if X.ndim != 2 or X.shape[1] != len(names):
        raise UserError(f"{path} has shape {X.shape}, the model takes (rows, {len(names)}): "
                        f"pass the columns {names} in this order")
    if not np.issubdtype(X.dtype, np.number) or np.isinf(X).any():
        raise UserError(f"{path} holds non-numeric or infinite values: clean them first (NaN counts as blank)")
    X = X.astype(np.float64)
    return pre.transform(lambda n: X[:, names.index(n)], lambda n: Categories.from_list([]), len(X))


def read_feature_rows(path: str, config: dict[str, Any], sep: str | None = None,
                      ) -> tuple[np.ndarray, dict[str, list[Any]]]:
    """The model's inputs for each row of a table (.csv, Parquet) or .npy array, and the table's
    other columns (ids and such) to carry into the predictions. Blanks are filled as in training."""
    pre = preprocessor_of(config)
    if path.endswith(".npy"):
        return read_npy_rows(path, pre), {}
    table = read_table(path, sep, text_columns=[c.name for c in pre.categorical])
    missing = [n for n in pre.column_names if n not in table.column_names]
    if missing:
        raise UserError(f"{path} lacks column(s) {missing}: the model needs {pre.column_names}")
    decimal = decimal_of(table)
    X = pre.transform(lambda n: numeric_values(table.column(n), n, path, decimal),
                      lambda n: text_values(table.column(n)), table.num_rows)
    extra = {n: table.column(n).to_pylist() for n in table.column_names if n not in pre.column_names}
    return X, extra


def carried_name(name: str, result: dict[str, np.ndarray], class_labels: list | None) -> str:
    """An input column's name in the output, renamed `<name>_input` where ours would take it."""
    ours = {"prediction", *(f"proba_{label}" for label in class_labels or [])}
    return f"{name}_input" if name in ours else name


def _text(values: list[Any]) -> list[str]:
    return ["" if v is None else str(v) for v in values]


def write_predictions(path: str, extra: dict[str, list[Any]], result: dict[str, np.ndarray],
                      class_labels: list | None) -> None:
    """CSV for people and other tools; .npz (plain arrays, no pickle) when speed matters:
    formatting floats as text costs more than the model itself. Written beside the target and
    renamed over it when complete: a failed write leaves any earlier file as it was."""
    with atomic_path(path) as tmp:
        if path.endswith(".npz"):
            arrays = {carried_name(name, result, class_labels): np.asarray(_text(values))
                      for name, values in extra.items()}
            with open(tmp, "wb") as fh:
                np.savez(fh, **cast(dict[str, Any], {**arrays, **result}))  # numpy's stubs type **kwds as options
            return
        columns: dict[str, Any] = {carried_name(name, result, class_labels): _text(values)
                                   for name, values in extra.items()}
        columns["prediction"] = result["prediction"].tolist()
        if "proba" in result:
            for k, label in enumerate(class_labels or []):
                columns[f"proba_{label}"] = [f"{p:.6g}" for p in result["proba"][:, k].tolist()]
        with open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(columns.keys())
            writer.writerows(zip(*columns.values(), strict=True))
