"""The hand-written step of a plain MLP: autograd's loss and gradients to float32 rounding, on
every shape it takes; autograd's step everywhere else; and in a whole run, weights that agree
with autograd's run."""
from types import SimpleNamespace

import pytest
import torch
from accelerate import Accelerator

from common.config import TrainConfig, parse_config
from common.data.dataset import load_dataset
from common.model import ModelSpec, build_model
from common.train.hand_step import HandStep, hand_step_for, hand_step_missing
from common.train.optim import summed_loss
from common.train.run_context import find_context
from common.train.run_plan import make_plan
from common.train.session import build
from common.train.trainer import Trainer


def autograd_step(model, task, x, y, scale):
    for p in model.parameters():
        p.grad = None
    loss = summed_loss(task)(model(x), y)
    (loss * scale).backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


def hand_step(model, task, x, y, scale):
    for p in model.parameters():
        p.grad = None
    loss = HandStep(model, task)(x, y, scale)
    return loss, {name: p.grad.clone() for name, p in model.named_parameters()}


SHAPES = [((), "relu")] + [(hidden, activation) for hidden in [(20,), (16, 8)]
                           for activation in ["relu", "sigmoid", "tanh"]]


@pytest.mark.parametrize("hidden,activation", SHAPES)  # a linear model has no activation: one case
@pytest.mark.parametrize("task,outputs", [("classification", 3), ("classification", 2), ("regression", 1),
                                          ("regression", 2)])
def test_the_loss_and_every_gradient_are_autograds(hidden, activation, task, outputs):
    torch.manual_seed(0)
    model = build_model(ModelSpec(10, hidden, outputs, activation))
    rows = 37  # not a multiple of any kernel's block
    x = torch.randn(rows, 10)
    y = torch.randint(0, outputs, (rows,)) if task == "classification" else torch.randn(rows, outputs)
    scale = 1 / rows
    want_loss, want = autograd_step(model, task, x, y, scale)
    loss, got = hand_step(model, task, x, y, scale)
    torch.testing.assert_close(loss, want_loss, rtol=1e-5, atol=1e-5)
    assert got.keys() == want.keys()
    for name, grad in want.items():
        torch.testing.assert_close(got[name], grad, rtol=1e-5, atol=1e-6, msg=name)
        assert got[name].is_contiguous(), name  # the fused optimizers read a gradient in its parameter's layout
    assert all(not p.grad.requires_grad for p in model.parameters())


def cpu(processes=1, mixed="no"):
    return SimpleNamespace(num_processes=processes, device=torch.device("cpu"), mixed_precision=mixed)


def plan(task="classification", accum=1, smoothing=0.0):
    return SimpleNamespace(task=task, batches=SimpleNamespace(grad_accum=accum),
                           optim=SimpleNamespace(label_smoothing=smoothing))


RECIPE = ModelSpec(10, (20,), 3, "relu")


def test_it_applies_to_the_recipes_models_on_one_cpu_process():
    accelerator = Accelerator(cpu=True)
    assert hand_step_missing(build_model(RECIPE), accelerator, plan(), False, False) is None
    assert isinstance(hand_step_for(build_model(RECIPE), accelerator, plan(), False, False), HandStep)
    linear = build_model(ModelSpec(10, (), 1, "relu"))
    assert hand_step_missing(linear, cpu(), plan("regression"), False, False) is None


@pytest.mark.parametrize("model,accelerator,settings,weighted,log_link,why", [
    (build_model(ModelSpec(10, (20,), 3, "gelu")), cpu(), plan(), False, False, "plain MLP"),
    (build_model(ModelSpec(10, (20,), 3, "relu", members=4)), cpu(), plan(), False, False, "plain MLP"),
    (build_model(ModelSpec(4, (20,), 3, "relu", categorical=((5, 2),))), cpu(), plan(), False, False, "plain MLP"),
    (build_model(RECIPE), cpu(processes=2), plan(), False, False, "one process"),
    (build_model(RECIPE), cpu(mixed="bf16"), plan(), False, False, "mixed precision"),
    (build_model(RECIPE), cpu(), plan(accum=2), False, False, "accumulation"),
    (build_model(RECIPE), cpu(), plan(), True, False, "weighted"),
    (build_model(RECIPE), cpu(), plan(smoothing=0.1), False, False, "smoothed"),
    (build_model(ModelSpec(10, (20,), 1, "relu")), cpu(), plan("regression"), False, True, "weighted"),
    (build_model(RECIPE).double(), cpu(), plan(), False, False, "float32"),
])
def test_everywhere_else_the_step_is_autograds(model, accelerator, settings, weighted, log_link, why):
    missing = hand_step_missing(model, accelerator, settings, weighted, log_link)
    assert missing is not None and why in missing
    assert hand_step_for(model, accelerator, settings, weighted, log_link) is None


def test_a_torch_without_a_derivative_kernel_takes_autograds_step_and_says_so(monkeypatch, capsys):
    import common.train.hand_step as hand_step_module

    monkeypatch.setattr(hand_step_module, "aten_derivative", lambda activation: None)
    assert hand_step_for(build_model(RECIPE), Accelerator(cpu=True), plan(), False, False) is None
    out = capsys.readouterr().out
    assert "note:" in out and "relu" in out and "autograd" in out
    linear = build_model(ModelSpec(10, (), 3, "relu"))  # no activation: no kernel needed
    assert isinstance(hand_step_for(linear, Accelerator(cpu=True), plan(), False, False), HandStep)


def trained_weights(data, argv, by_hand):
    plan = make_plan(cfg := parse_config(TrainConfig, argv), data, find_context(cfg, 1, 1))
    accelerator = Accelerator(cpu=True, step_scheduler_with_optimizer=False)
    trainer = Trainer(accelerator, *build(plan, accelerator)[:3], data, plan, by_hand=by_hand)
    losses = [trainer.run_epoch(epoch) for epoch in range(plan.loop.epochs)]
    return trainer, losses, {k: v.detach().clone() for k, v in trainer.net.state_dict().items()}


@pytest.mark.parametrize("argv", [["--epochs", "3", "--batch-size", "256", "--lr-schedule", "cosine"],
                                  ["--epochs", "2", "--batch-size", "700", "--optimizer", "sgd", "--lr", "0.05"]])
def test_a_run_by_hand_follows_autograds_run(small_cls, argv):
    """Two trajectories of the same optimisation, which part only by rounding over a few epochs
    at the recipe's rates (over many, or at high rates, they part further: hand_step.py)."""
    data = load_dataset(small_cls)
    hand, hand_losses, by_hand = trained_weights(data, argv, True)
    plain, losses, by_autograd = trained_weights(data, argv, False)
    assert hand.hand is not None and plain.hand is None
    assert hand_losses == pytest.approx(losses, rel=1e-4)
    for key, value in by_autograd.items():
        torch.testing.assert_close(by_hand[key], value, rtol=1e-3, atol=1e-4, msg=key)


def test_label_smoothing_smooths_a_single_networks_training_loss(small_cls):
    data = load_dataset(small_cls)
    smoothed, smoothed_losses, _ = trained_weights(data, ["--epochs", "1", "--label-smoothing", "0.2"], True)
    _, losses, _ = trained_weights(data, ["--epochs", "1"], True)
    assert smoothed.hand is None  # the hand step has no smoothing: autograd's step, with it
    assert smoothed_losses != losses
    out, y = torch.randn(50, 3), torch.arange(50) % 3
    want = torch.nn.functional.cross_entropy(out, y, reduction="sum", label_smoothing=0.2)
    torch.testing.assert_close(smoothed.training_loss_fn(out, y), want)
    torch.testing.assert_close(smoothed.loss_fn(out, y), torch.nn.functional.cross_entropy(out, y, reduction="sum"))
