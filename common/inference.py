"""Loading a model folder and predicting with it: safetensors and JSON only, never pickle."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from common.artifacts import CONFIG_FILE, MODEL_FILE, load_weights, read_json
from common.dataset import scale_features, unscale_target
from common.errors import UserError
from common.model import build_model, forward_in_chunks, load_state
from common.tables import numeric_column, read_csv_columns

REQUIRED_KEYS = ("task", "model", "feature_names", "x_mean", "x_scale")


def load_model_dir(ckpt_dir: str | Path) -> tuple[dict[str, Any], torch.nn.Module]:
    ckpt_dir = Path(ckpt_dir)
    config = read_json(ckpt_dir / CONFIG_FILE, "model config")
    missing = [k for k in REQUIRED_KEYS if k not in config]
    if missing:
        raise UserError(f"{ckpt_dir / CONFIG_FILE} lacks {missing}: use the config.json that train.py wrote")
    if len(config["feature_names"]) != config["model"]["in_features"]:
        raise UserError(f"{ckpt_dir / CONFIG_FILE} names {len(config['feature_names'])} features but the model "
                        f"takes {config['model']['in_features']}: use the config.json that train.py wrote")
    model = build_model(config["model"])
    load_state(model, load_weights(ckpt_dir / MODEL_FILE), str(ckpt_dir / MODEL_FILE))
    return config, model.eval()


def model_outputs(model: torch.nn.Module, X_scaled: np.ndarray, batch_size: int) -> np.ndarray:
    """Logits (classification) or scaled targets (regression) for standardised rows, in order."""
    X = torch.from_numpy(np.ascontiguousarray(X_scaled, dtype=np.float32))
    return forward_in_chunks(model, X, batch_size).numpy()


def predict(config: dict[str, Any], model: torch.nn.Module, X_raw: np.ndarray,
            batch_size: int) -> dict[str, np.ndarray]:
    """Raw feature rows -> predictions in the original label space or y scale."""
    out = model_outputs(model, scale_features(X_raw, config), batch_size)
    if config["task"] == "classification":
        proba = torch.softmax(torch.from_numpy(out).double(), dim=1).numpy()
        labels = np.asarray(config["class_labels"])
        return {"prediction": labels[proba.argmax(axis=1)], "proba": proba}
    return {"prediction": unscale_target(out, config)[:, 0]}


def read_feature_rows(path: str, feature_names: list[str]) -> tuple[np.ndarray, dict[str, list[str]]]:
    """Raw features in training order, plus the other columns (ids and such) to carry through."""
    if path.endswith(".npy"):
        if not Path(path).is_file():
            raise UserError(f"input {path} not found: check the path")
        try:
            X = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise UserError(f"cannot read {path} ({err}): save a numeric array with numpy.save") from None
        if X.ndim != 2 or X.shape[1] != len(feature_names):
            raise UserError(f"{path} has shape {X.shape}, the model takes (rows, {len(feature_names)}): "
                            "pass the features in training order")
        if not np.issubdtype(X.dtype, np.number) or not np.isfinite(X).all():
            raise UserError(f"{path} holds non-numeric, NaN or infinite values: clean them first")
        return X.astype(np.float64), {}
    _, columns = read_csv_columns(path)
    missing = [n for n in feature_names if n not in columns]
    if missing:
        raise UserError(f"{path} lacks feature column(s) {missing}: the model needs {feature_names}")
    X = np.stack([numeric_column(n, columns[n], path) for n in feature_names], axis=1)
    extra = {name: values for name, values in columns.items() if name not in feature_names}
    return X, extra


def write_predictions(path: str, extra: dict[str, list[str]], result: dict[str, np.ndarray],
                      class_labels: list | None) -> None:
    """CSV for people and other tools; .npz (plain arrays, no pickle) when speed matters:
    formatting floats as text costs more than the model itself."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if path.endswith(".npz"):
        arrays = {name: np.asarray(values) for name, values in extra.items()}
        np.savez(path, **cast(dict[str, Any], {**arrays, **result}))  # numpy's stubs type **kwds as options
        return
    columns: dict[str, Any] = dict(extra)
    columns["prediction"] = result["prediction"].tolist()
    if "proba" in result:
        for k, label in enumerate(class_labels or []):
            columns[f"proba_{label}"] = [f"{p:.6g}" for p in result["proba"][:, k].tolist()]
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns.keys())
        writer.writerows(zip(*columns.values(), strict=True))
