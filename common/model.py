"""The network, built from a plain description that JSON can hold.

`{"in_features": 10, "hidden": [20], "out_features": 3, "activation": "relu"}` is the
recipe's 10-20-3 MLP; `hidden: []` is a linear model. The weights' names are
nn.Sequential's ("0.weight", "2.bias", ...), so a spec plus a safetensors file
rebuilds the model with no training code and no pickle.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from common.errors import UserError

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU}


def model_spec(in_features: int, hidden: list[int], out_features: int, activation: str) -> dict[str, Any]:
    if any(w <= 0 for w in hidden):
        raise UserError(f"--hidden widths must be positive, got {hidden}")
    return {"in_features": int(in_features), "hidden": [int(w) for w in hidden],
            "out_features": int(out_features), "activation": activation}


def build_model(spec: dict[str, Any]) -> nn.Sequential:
    widths = [spec["in_features"], *spec["hidden"], spec["out_features"]]
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(widths, widths[1:])):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(widths) - 2:
            layers.append(ACTIVATIONS[spec["activation"]]())
    return nn.Sequential(*layers)


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load weights, turning a shape or name mismatch into a one-line user error."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found:
        raise UserError(
            f"weights in {source} do not match the model described by its config "
            f"(expected {expected}, found {found}): use the config.json saved with these weights"
        )
    model.load_state_dict(state)
