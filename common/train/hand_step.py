"""A plain MLP's training step written out: forward pass, summed loss and every gradient in one
run of tensor operations, with no autograd graph.

Why: on a model the size of the recipe's (10-20-3, batches of 1,024 rows) a step's arithmetic
is a few dozen microseconds, and its fixed costs several hundred: autograd records a graph and
its engine walks it back (about a third of the step), and the kernels that handle a 3-wide
output do it row by row. Here the rows run along the columns (features x rows): the last
layer's product and the softmax then run along the long side (on 1,024 x 3, about 4x and 12x
faster than the row-major kernels), and the gradients are the textbook formulas: for each
layer one product for the weights, one for the layer below, a row sum for the bias, and the
activation's derivative from its output.

Where it applies (`hand_step_missing` says why not elsewhere): one process on a CPU, float32
weights and no mixed precision, one batch per optimizer step, a plain `nn.Sequential` of
`nn.Linear` layers with ReLU, Sigmoid or Tanh between them (the recipes' models), and the
loss of `common.train.optim.summed_loss` without class weights, label smoothing or a log link:
cross-entropy or squared error. Everywhere else (an ensemble, embeddings, several processes, a
GPU, bf16, accumulation) the step is autograd's, as before.

The formulas are autograd's, in another order of summation: the loss and gradients agree with
autograd's to float32 rounding, not to the bit (tests/train/test_hand_step.py compares them
on every supported shape). A run is therefore a different trajectory of the same optimisation,
as any change in the order of summation makes one: over many steps the two part by more than
rounding, the more so at high learning rates (one ReLU unit that switches on one row is enough),
and end on equally good weights (the recipe: every printed figure the same, accuracy 0.9475).
The activations' derivatives are ATen's own backward kernels (common/train/leans.py, lean 9).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from common.train.leans import aten_derivative

# Each activation module the step writes out: its name (common.model's) and its forward pass in
# place (its input is the step's own fresh product).
WRITTEN_OUT: dict[type, tuple[str, Callable[[torch.Tensor], Any]]] = {
    nn.ReLU: ("relu", torch.Tensor.relu_),
    nn.Sigmoid: ("sigmoid", torch.Tensor.sigmoid_),
    nn.Tanh: ("tanh", torch.Tensor.tanh_),
}


def layers_of(model: nn.Module) -> list[tuple[nn.Linear, type | None]] | None:
    """(linear layer, the activation after it or None) for a plain MLP; None for any other model."""
    if type(model) is not nn.Sequential:
        return None
    modules = list(model)
    layers: list[tuple[nn.Linear, type | None]] = []
    for i in range(0, len(modules), 2):
        linear, after = modules[i], modules[i + 1] if i + 1 < len(modules) else None
        if type(linear) is not nn.Linear or linear.bias is None:
            return None
        if after is not None and type(after) not in WRITTEN_OUT:
            return None
        layers.append((linear, type(after) if after is not None else None))
    return layers if layers and layers[-1][1] is None else None


def hand_step_missing(model: nn.Module, accelerator: Any, plan: Any, weighted: bool, log_link: bool) -> str | None:
    """None where the hand-written step applies to this run, else why not (autograd's step then)."""
    layers = layers_of(model)
    if layers is None:
        return "the model is not a plain MLP of linear layers with ReLU, Sigmoid or Tanh"
    if accelerator.num_processes != 1 or accelerator.device.type != "cpu":
        return "the run is not one process on a CPU"
    if getattr(accelerator, "mixed_precision", "no") != "no" or plan.batches.grad_accum != 1:
        return "the run uses mixed precision or gradient accumulation"
    if any(p.dtype != torch.float32 or not p.requires_grad for p in model.parameters()):
        return "the weights are not all trainable float32"
    if weighted or log_link or plan.optim.label_smoothing or plan.task not in ("classification", "regression"):
        return "the loss is weighted, smoothed or not plain cross-entropy or squared error"
    return None


def lost_derivative(model: nn.Module) -> str | None:
    """An activation of the model whose derivative kernel this torch lacks (lean 9), if any."""
    for _, kind in layers_of(model) or []:
        if kind is not None and aten_derivative(WRITTEN_OUT[kind][0]) is None:
            return WRITTEN_OUT[kind][0]
    return None


def hand_step_for(model: nn.Module, accelerator: Any, plan: Any, weighted: bool, log_link: bool) -> HandStep | None:
    """The run's step written out by hand, or None where autograd's step is the run's. A torch
    that has moved a derivative kernel the step needs is said once."""
    if hand_step_missing(model, accelerator, plan, weighted, log_link) is not None:
        return None
    lost = lost_derivative(model)
    if lost is not None:
        accelerator.print(f"note: this torch has no ATen kernel for {lost}'s derivative: the step takes "
                          "autograd's path (slower)")
        return None
    return HandStep(model, plan.task)


def weight_gradient(grad: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """grad (outputs x rows) times the layer's inputs (features x rows) transposed, contiguous
    as autograd leaves it (the fused optimizers read a gradient in its parameter's layout). The
    batch as it arrives (rows x features, seen transposed) is multiplied the other way round:
    a product along its rows costs half as much here."""
    if inputs.stride(0) == 1 and inputs.dim() == 2 and inputs.shape[1] > 1:
        return torch.mm(inputs, grad.t()).t().contiguous()
    return torch.mm(grad, inputs.t())


class HandStep:
    """Sets each parameter's `.grad` to the gradient of `scale` x the batch's summed loss, as
    `(loss_sum * scale).backward()` would from no gradient, and returns the summed loss."""

    def __init__(self, model: nn.Module, task: str):
        layers = layers_of(model)
        assert layers is not None
        self.task = task
        # Held once: module attribute lookups cost more than the small kernels they feed.
        self.weights = [linear.weight for linear, _ in layers]
        self.biases = [linear.bias for linear, _ in layers]
        self.columns = [linear.bias.unsqueeze(1) for linear, _ in layers]  # views: they see each update
        self.transposed = [linear.weight.t() for linear, _ in layers]
        self.forward_ops = [WRITTEN_OUT[kind][1] if kind else None for _, kind in layers]
        self.derivatives = [aten_derivative(WRITTEN_OUT[kind][0]) if kind else None for _, kind in layers]
        self.minus_ones = torch.empty(0)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, y: torch.Tensor, scale: float) -> torch.Tensor:
        outs = [x.t()]  # each layer's input, features x rows
        for weight, column, activate in zip(self.weights, self.columns, self.forward_ops, strict=True):
            out = torch.addmm(column, weight, outs[-1])
            if activate is not None:
                activate(out)
            outs.append(out)
        loss, grad = self.loss_and_gradient(outs.pop(), y, scale)
        for i in range(len(self.weights) - 1, -1, -1):
            self.weights[i].grad = weight_gradient(grad, outs[i])
            self.biases[i].grad = grad.sum(1)
            if i:
                derivative = self.derivatives[i - 1]
                assert derivative is not None
                grad = derivative(torch.mm(self.transposed[i], grad), outs[i])
        return loss

    def loss_and_gradient(self, out: torch.Tensor, y: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The summed loss of `out` (outputs x rows) and its gradient times `scale`, in place of `out`."""
        if self.task == "classification":
            log_p = torch.log_softmax(out, 0)
            target = y.unsqueeze(0)
            loss = log_p.gather(0, target).sum().neg_()
            grad = log_p.exp_()  # softmax - one-hot: the cross-entropy's gradient on the logits
            grad.scatter_add_(0, target, self.negative_ones(len(y), grad.dtype))
            return loss, grad.mul_(scale)
        # Squared error summed over rows, averaged over outputs (summed_loss's).
        diff = out.sub_(y.t() if y.dim() == 2 else y.unsqueeze(0))
        width = diff.shape[0]
        return diff.square().sum().div_(width), diff.mul_(2 * scale / width)

    def negative_ones(self, rows: int, dtype: torch.dtype) -> torch.Tensor:
        if self.minus_ones.shape[-1] < rows or self.minus_ones.dtype != dtype:
            self.minus_ones = torch.full((1, rows), -1.0, dtype=dtype)
        return self.minus_ones[:, :rows]
