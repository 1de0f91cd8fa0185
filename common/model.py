"""The network, built from its description (`ModelSpec`, which config.json holds as JSON).

`ModelSpec(10, (20,), 3, "relu")` is the recipe's 10-20-3 MLP; `hidden=()` is a linear
model. The weights' names are nn.Sequential's ("0.weight", "2.bias", ...), so a spec plus a
safetensors file rebuilds the model with no training code and no pickle.

A table with categorical columns adds `categorical=((K, d), ...)`: each column's codes (the
last inputs of a row, see common/steps.py) go through a learned embedding, concatenated with
the numeric inputs in front of the same MLP. Without categorical columns the model is exactly
the plain MLP above.

A spec with `members=k` is an ensemble of k such networks held as stacked weights and run
as one batched computation (EnsembleNet): every member sees every row, and its output is
[rows, k, outputs]. `combine_members` turns that into one prediction: the mean of the
members' probabilities (as log-probabilities, so argmax and softmax read it as logits), the
mean of their predictions (as a log, where the outputs are log E[y]), or the mean of their
outputs. Its numeric inputs may first go through periodic embeddings
(`periodic=(f, d)`), which let one column such as the hour of the
day act on the network non-linearly.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator
from itertools import pairwise, zip_longest
from typing import Any

import numpy as np
import torch
from torch import nn

from common.errors import UserError
from common.schema import Fields, is_int
from common.steps import UNKNOWN_CODE

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU}
PERIODIC_SIGMA = 0.1  # initial frequencies ~ N(0, sigma^2) on inputs scaled to about [-3, 3] (RealMLP's)


@contextlib.contextmanager
def intra_op_threads(threads: int) -> Iterator[None]:
    """torch's threads for a run, given back after it (a Python caller's process goes on)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The network's description, as config.json holds it under "model"."""

    in_features: int                            # numeric inputs (missing indicators included)
    hidden: tuple[int, ...]                     # hidden widths; () is a linear model
    out_features: int
    activation: str
    categorical: tuple[tuple[int, int], ...] = ()  # (cardinality, width) of each column's embedding
    members: int = 0                            # > 0: an ensemble of this many (EnsembleNet)
    dropout: float = 0.0                        # after each hidden layer (ensembles)
    periodic: tuple[int, int] = (0, 0)          # (frequencies, width) of periodic numeric embeddings

    def __post_init__(self) -> None:
        if any(w <= 0 for w in self.hidden):
            raise UserError(f"--hidden widths must be positive, got {list(self.hidden)}")

    @property
    def numeric_width(self) -> int:
        """What the numeric inputs become in front of the first layer: each column itself, plus
        its periodic embedding where there is one."""
        return self.in_features * (1 + self.periodic[1])

    @property
    def layer_widths(self) -> list[int]:
        return [self.numeric_width + sum(d for _, d in self.categorical), *self.hidden, self.out_features]

    @property
    def multiply_adds_per_row(self) -> int:
        """The MLP's weights (embeddings are looked up, not multiplied), over all members: the
        arithmetic of one row, which sizes the threads."""
        dense = sum((fan_in + 1) * fan_out for fan_in, fan_out in pairwise(self.layer_widths))
        f, d = self.periodic
        return dense * max(1, self.members) + self.in_features * f * (d + 2)

    @property
    def parameter_count(self) -> int:
        """How many weights it holds: each member's MLP and embeddings, and the periodic weights
        they share (multiply_adds_per_row counts those but their biases)."""
        tables = sum(cardinality * width for cardinality, width in self.categorical)
        return self.multiply_adds_per_row + tables * max(1, self.members) + self.in_features * self.periodic[1]

    def training_bytes(self, batch_rows: int, optimizer_states: int) -> int:
        """About what a training step holds at once, in float32: the weights, their gradients and
        the optimizer's states, and a batch's activations (kept for the backward pass, and their
        gradients)."""
        activations = batch_rows * max(1, self.members) * (self.numeric_width + sum(self.layer_widths[1:]))
        return 4 * (self.parameter_count * (2 + optimizer_states) + 2 * activations)

    def to_json(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"in_features": self.in_features, "hidden": list(self.hidden),
                                "out_features": self.out_features, "activation": self.activation}
        if self.categorical:
            spec["categorical"] = [{"cardinality": k, "dim": d} for k, d in self.categorical]
        if self.members:
            spec["members"], spec["dropout"] = self.members, self.dropout
            if self.periodic[0]:
                spec["periodic"] = {"frequencies": self.periodic[0], "dim": self.periodic[1]}
        return spec

    @classmethod
    def read(cls, f: Fields, key: str = "model") -> ModelSpec:
        """A network this code can build, or a UserError naming the file."""
        try:
            return cls.fields_of(f.nested(key, f.obj_of(key)))
        except UserError:
            raise f.error(f"describes a model this code cannot build ({f.value(key)!r})") from None

    @classmethod
    def fields_of(cls, m: Fields) -> ModelSpec:
        hidden = m.checked("hidden", lambda v: isinstance(v, list) and all(is_int(w) and w > 0 for w in v),
                           "a list of positive integers")
        categorical = [m.nested(f"categorical[{i}]", c) for i, c in enumerate(m.list_of_objects("categorical", []))]
        periodic = m.nested("periodic", m.obj_of("periodic")) if m.has("periodic") else None
        return cls(m.integer("in_features"), tuple(hidden), m.integer("out_features", minimum=1),
                   m.text("activation", tuple(ACTIVATIONS)),
                   tuple((c.integer("cardinality", minimum=1), c.integer("dim", minimum=1)) for c in categorical),
                   m.integer("members", default=0), m.number("dropout", default=0.0),
                   (periodic.integer("frequencies", minimum=1), periodic.integer("dim", minimum=1)) if periodic
                   else (0, 0))


def mlp(spec: ModelSpec) -> nn.Sequential:
    widths = spec.layer_widths
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(pairwise(widths)):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(widths) - 2:
            layers.append(ACTIVATIONS[spec.activation]())
    return nn.Sequential(*layers)


class TabularNet(nn.Module):
    """Numeric inputs and categorical codes in one row -> embeddings + MLP."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.numeric = spec.in_features
        embeddings = [nn.Embedding(cardinality, dim) for cardinality, dim in spec.categorical]
        with torch.no_grad():  # code 0 (unseen or rare values) starts neutral: where the training rows
            for emb in embeddings:  # had no rare value it never trains, and would stay random
                emb.weight[UNKNOWN_CODE].zero_()
        self.embeddings = nn.ModuleList(embeddings)
        self.mlp = mlp(spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        codes = x[:, self.numeric:].long()
        embedded = [emb(codes[:, i]) for i, emb in enumerate(self.embeddings)]
        return self.mlp(torch.cat([x[:, :self.numeric], *embedded], dim=1))


def stacked_uniform(members: int, *shape: int, bound: float) -> nn.Parameter:
    """Each member's weights drawn independently, as nn.Linear draws them (U(-bound, bound))."""
    return nn.Parameter(torch.empty(members, *shape).uniform_(-bound, bound))


class EnsembleNet(nn.Module):
    """k networks in one: numeric inputs (with periodic embeddings) and categorical embeddings
    in front of an MLP, each member with weights of its own, all computed by batched matrix
    products. forward() gives [rows, k, outputs]; combine_members makes one prediction of it.

    Stacked weights, not k modules: one optimizer step, one DDP all-reduce and one checkpoint
    for the whole ensemble, and k members cost little more than one on small tables, where
    the per-step overhead dominates."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        k, self.numeric = spec.members, spec.in_features
        f, d = spec.periodic
        if f:
            # Shared by the members (as TabM shares its embeddings): computed once per row, where
            # one per member made the step twice as slow as the MLP behind it.
            self.frequencies = nn.Parameter(torch.randn(self.numeric, f) * PERIODIC_SIGMA)
            self.phases = nn.Parameter(torch.empty(self.numeric, f).uniform_(-math.pi, math.pi))
            self.periodic_weight = nn.Parameter(torch.empty(self.numeric, f, d).uniform_(-f ** -0.5, f ** -0.5))
            self.periodic_bias = nn.Parameter(torch.empty(self.numeric, d).uniform_(-f ** -0.5, f ** -0.5))
        self.periodic = bool(f)
        tables = []
        for cardinality, dim in spec.categorical:
            table = torch.randn(k, cardinality, dim)
            table[:, UNKNOWN_CODE] = 0.0  # code 0 starts neutral, as in TabularNet
            tables.append(nn.Parameter(table))
        self.embeddings = nn.ParameterList(tables)
        widths = spec.layer_widths
        self.weights = nn.ParameterList(stacked_uniform(k, fan_in, fan_out, bound=fan_in ** -0.5)
                                        for fan_in, fan_out in pairwise(widths))
        self.biases = nn.ParameterList(stacked_uniform(k, 1, fan_out, bound=fan_in ** -0.5)
                                       for fan_in, fan_out in pairwise(widths))
        self.activation = ACTIVATIONS[spec.activation]()
        self.dropout = nn.Dropout(spec.dropout)

    def inputs(self, x: torch.Tensor, members: slice) -> torch.Tensor:
        """[k, rows, width] first-layer inputs of the chosen members."""
        k = len(range(*members.indices(self.weights[0].shape[0])))
        numeric = x[:, :self.numeric]
        parts = [numeric.unsqueeze(0).expand(k, -1, -1)]
        if self.periodic:
            angles = 2 * math.pi * numeric.unsqueeze(-1) * self.frequencies + self.phases
            embedded = torch.einsum("rfp,fpd->rfd", torch.cos(angles), self.periodic_weight) + self.periodic_bias
            parts.append(embedded.flatten(1).unsqueeze(0).expand(k, -1, -1))
        codes = x[:, self.numeric:].long()
        parts += [table[members, codes[:, i]] for i, table in enumerate(self.embeddings)]
        return torch.cat(parts, dim=2)

    def forward(self, x: torch.Tensor, member: int | None = None) -> torch.Tensor:
        """[rows, k, outputs]; with `member`, that member's alone ([rows, 1, outputs]): scoring a
        row out of fold then costs one member's arithmetic, not k."""
        members = slice(None) if member is None else slice(member, member + 1)
        h = self.inputs(x, members)
        last = len(self.weights) - 1
        dropout = self.training and self.dropout.p > 0  # skipped where it is the identity: a small pass's time
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(bias, h, weight) if member is None else torch.baddbmm(bias[members], h, weight[members])
            if i < last:
                h = self.activation(h)
                if dropout:
                    h = self.dropout(h)
        return h.transpose(0, 1)


def combine_members(out: torch.Tensor, task: str, log_link: bool = False) -> torch.Tensor:
    """One prediction per row from a model's output: an ensemble's [rows, k, outputs] becomes the
    log of its members' mean probability (classification), the log of their mean prediction
    (`log_link`: outputs are log E[y]) or their mean output (regression); a single network's
    [rows, outputs] passes unchanged."""
    if out.dim() == 2:
        return out
    if task == "classification":
        return torch.logsumexp(torch.log_softmax(out.float(), dim=-1), dim=1) - math.log(out.shape[1])
    if log_link:
        return torch.logsumexp(out.float(), dim=1) - math.log(out.shape[1])
    return out.mean(dim=1)


def class_probabilities(out: np.ndarray) -> np.ndarray:
    """A classifier's outputs (a member's logits, or the members' combined log-probabilities) as
    probabilities in double precision: what a prediction reports and decides by, and what the
    two-class threshold is fitted on. The softmax runs along the rows (classes x rows): torch's
    kernel over a last dimension of a few classes loops row by row, 8x slower (bench/README.md,
    section 4); the probabilities differ from that kernel's in their last bits. Rows are padded
    to whole PASS_BLOCKs, as forward passes are, since the kernel gives the last few rows of a
    call another exp: a row's probabilities are the same whatever rows share its call. A view:
    each class's column contiguous, as the CSV writer reads them (Predictor.predict_proba copies
    it into rows)."""
    rows, pad = len(out), -len(out) % PASS_BLOCK
    if rows and pad:
        out = np.concatenate([out, np.repeat(out[:1], pad, axis=0)])
    return torch.softmax(torch.from_numpy(out).double().T, dim=0).T[:rows].numpy()


# torch's CPU kernels take other paths for a matrix of few rows (a matrix-vector product for one
# row) and for the last rows of a block, whose sums round differently. Every forward pass is
# padded to a multiple of this many rows (copies of its first row): then each row's outputs were
# the same to the last bit whatever rows shared its pass, for passes of 32 to 20,000 rows on one
# and two threads (the recipe's MLP; five-member ensembles, classification and regression). At
# multiples of 8, rows of a regression ensemble's passes under 48 rows still differed.
PASS_BLOCK = 32

# A prediction's forward passes keep each layer's activations to about this many numbers (8 MB
# of float32), which the cache holds: one pass over 65,536 rows of five 128-128 members
# allocated, faulted in and streamed 168 MB per layer, 2.2x slower than passes of 2,048 rows.
# The recipe's 20-wide model still takes a whole batch in one pass.
PASS_ACTIVATIONS = 1 << 21


def pass_rows(spec: ModelSpec) -> int:
    """Rows per forward pass in prediction: PASS_ACTIVATIONS over the widest layer's numbers per
    row, in whole PASS_BLOCKs."""
    widest = max(spec.layer_widths) * max(spec.members, 1)
    return max(1, PASS_ACTIVATIONS // widest // PASS_BLOCK) * PASS_BLOCK


@torch.inference_mode()
def predicted_outputs(model: nn.Module, x: Any, task: str, log_link: bool = False, *, rows_per_pass: int) -> Any:
    """One prediction's outputs per row of the float32 array `x` (combine_members), as float32
    numpy, in forward passes of `rows_per_pass` rows (pass_rows), each padded to PASS_BLOCKs:
    a multiple of PASS_BLOCK wastes none."""
    import numpy as np

    passes = [_one_pass(model, x[start:start + rows_per_pass], task, log_link)
              for start in range(0, len(x), rows_per_pass)]
    return np.concatenate(passes) if passes else _one_pass(model, x, task, log_link)


def _one_pass(model: nn.Module, x: Any, task: str, log_link: bool) -> Any:
    """One forward pass (under predicted_outputs' inference mode), padded to whole PASS_BLOCKs."""
    import numpy as np

    rows, pad = len(x), -len(x) % PASS_BLOCK
    if rows and pad:
        x = np.concatenate([x, np.repeat(x[:1], pad, axis=0)])
    return combine_members(model(torch.from_numpy(x)), task, log_link)[:rows].float().numpy()


def build_model(spec: ModelSpec) -> nn.Module:
    if spec.members:
        return EnsembleNet(spec)
    return TabularNet(spec) if spec.categorical else mlp(spec)


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str,
               fix: str = "use the config.json saved with these weights") -> None:
    """Load weights, turning a shape or name mismatch into a one-line user error."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found:
        raise UserError(f"weights in {source} do not match the model ({shape_differences(expected, found)}): {fix}")
    model.load_state_dict(state)


def shape_differences(expected: dict[str, tuple], found: dict[str, tuple], shown: int = 3) -> str:
    """The first few tensors that differ, each in a few words: `weights.0 (1, 52, 16) here, (5,
    52, 16) there`, missing ones and extra ones by name."""
    kinds = [[f"{k} {expected[k]} here, {found[k]} there" for k in expected if k in found and expected[k] != found[k]],
             [f"{k} missing" for k in expected if k not in found],
             [f"{k} not in the model" for k in found if k not in expected]]
    words = [w for group in zip_longest(*kinds) for w in group if w]  # each kind among the first
    more = f", and {len(words) - shown} more" if len(words) > shown else ""
    return "; ".join(words[:shown]) + more
