"""The network, built from a plain description that JSON can hold.

`{"in_features": 10, "hidden": [20], "out_features": 3, "activation": "relu"}` is the
recipe's 10-20-3 MLP; `hidden: []` is a linear model. The weights' names are
nn.Sequential's ("0.weight", "2.bias", ...), so a spec plus a safetensors file
rebuilds the model with no training code and no pickle.

A table with categorical columns adds `"categorical": [{"cardinality": K, "dim": d}, ...]`:
each column's codes (the last inputs of a row, see common/data/preprocess.py) go through a
learned embedding, concatenated with the numeric inputs in front of the same MLP. Without
categorical columns the model is exactly the plain MLP above.
"""
from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import torch
from torch import nn

from common.errors import UserError
from common.model_folder import UNKNOWN_CODE

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU}


def model_spec(in_features: int, hidden: Sequence[int], out_features: int, activation: str,
               embeddings: Sequence[tuple[int, int]] = ()) -> dict[str, Any]:
    """`embeddings`: (cardinality, width) of each categorical column's embedding."""
    if any(w <= 0 for w in hidden):
        raise UserError(f"--hidden widths must be positive, got {list(hidden)}")
    spec: dict[str, Any] = {"in_features": int(in_features), "hidden": [int(w) for w in hidden],
                            "out_features": int(out_features), "activation": activation}
    if embeddings:
        spec["categorical"] = [{"cardinality": int(k), "dim": int(d)} for k, d in embeddings]
    return spec


def layer_widths(spec: dict[str, Any]) -> list[int]:
    embedded = sum(c["dim"] for c in spec.get("categorical", []))
    return [spec["in_features"] + embedded, *spec["hidden"], spec["out_features"]]


def parameter_count(spec: dict[str, Any]) -> int:
    """The MLP's weights (embeddings are looked up, not multiplied)."""
    return sum((fan_in + 1) * fan_out for fan_in, fan_out in pairwise(layer_widths(spec)))


def mlp(spec: dict[str, Any]) -> nn.Sequential:
    widths = layer_widths(spec)
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(pairwise(widths)):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(widths) - 2:
            layers.append(ACTIVATIONS[spec["activation"]]())
    return nn.Sequential(*layers)


class TabularNet(nn.Module):
    """Numeric inputs and categorical codes in one row -> embeddings + MLP."""

    def __init__(self, spec: dict[str, Any]):
        super().__init__()
        self.numeric = spec["in_features"]
        embeddings = [nn.Embedding(c["cardinality"], c["dim"]) for c in spec["categorical"]]
        with torch.no_grad():  # code 0 (unseen or rare values) starts neutral: where the training rows
            for emb in embeddings:  # had no rare value it never trains, and would stay random
                emb.weight[UNKNOWN_CODE].zero_()
        self.embeddings = nn.ModuleList(embeddings)
        self.mlp = mlp(spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        codes = x[:, self.numeric:].long()
        embedded = [emb(codes[:, i]) for i, emb in enumerate(self.embeddings)]
        return self.mlp(torch.cat([x[:, :self.numeric], *embedded], dim=1))


def build_model(spec: dict[str, Any]) -> nn.Module:
    return TabularNet(spec) if spec.get("categorical") else mlp(spec)


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str,
               fix: str = "use the config.json saved with these weights") -> None:
    """Load weights, turning a shape or name mismatch into a one-line user error."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found:
        raise UserError(f"weights in {source} do not match the model (expected {expected}, found {found}): {fix}")
    model.load_state_dict(state)
