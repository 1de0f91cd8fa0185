"""The losses and class weights (common/train/optim.py)."""
import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight

from common.train.optim import balanced_class_weights, poisson_deviance


def test_the_poisson_deviance_is_zero_at_the_truth_and_least_at_the_mean():
    y = torch.tensor([0.0, 0.0, 1.0, 5.0])
    assert poisson_deviance(torch.log(y.clamp_min(1e-30)), y).abs().max() < 1e-6
    constants = torch.linspace(-1.0, 1.5, 251)  # one log-mean for all four rows
    total = torch.stack([poisson_deviance(c.expand(4), y).sum() for c in constants])
    assert constants[total.argmin()].exp() == pytest.approx(y.mean().item(), rel=0.01)  # the mean, not the median


def test_a_class_weight_with_label_smoothing_weighs_each_row_by_its_own_class():
    from common.train.optim import member_losses

    logits = torch.zeros(1, 1, 2, requires_grad=True)
    y, weight = torch.tensor([0]), torch.tensor([0.5, 15.0])  # a rare class 1, weighted 30 to 1
    loss = member_losses("classification", logits, y, weight, label_smoothing=0.1)
    plain = member_losses("classification", logits, y, None, label_smoothing=0.1)
    assert loss.item() == pytest.approx(0.5 * plain.item())
    loss.sum().backward()
    assert logits.grad[0, 0, 0] < 0  # a row of class 0 still pulls the model towards class 0


def test_balanced_weights_are_sklearns():
    y = np.array([0] * 50 + [1] * 30 + [2] * 20)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y)
    np.testing.assert_allclose(balanced_class_weights(y, 3).numpy(), expected, rtol=1e-6)
    # A class with no training row weighs nothing (and sklearn refuses to weigh it).
    np.testing.assert_allclose(balanced_class_weights(np.array([0, 0, 2]), 3).numpy(), [0.75, 0.0, 1.5])


def test_a_restarted_cosine_leg_runs_from_its_peak_to_zero_and_resumes_from_its_state():
    from common.train.optim import restart_cosine

    def scheduler():
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)

    optimizer, cosine = scheduler()
    for _ in range(10):
        optimizer.step()
        cosine.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    restart_cosine(cosine, 0.5, 4)
    rates = [optimizer.param_groups[0]["lr"]]
    for _ in range(2):
        optimizer.step()
        cosine.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx([0.05 * (1 + np.cos(np.pi * t / 4)) / 2 for t in range(3)])
    # A checkpoint holds the leg: a scheduler built for the plan and loaded from it goes on alike.
    resumed_optimizer, resumed = scheduler()
    resumed_optimizer.load_state_dict(optimizer.state_dict())
    resumed.load_state_dict(cosine.state_dict())
    for _ in range(2):
        for opt, sched in ((optimizer, cosine), (resumed_optimizer, resumed)):
            opt.step()
            sched.step()
        assert resumed_optimizer.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_a_leg_set_on_torchs_scheduler_is_the_one_accelerates_wrapper_steps(small_cls):
    """build keeps torch's cosine beside the prepared wrapper, which passes none of its attributes
    on: a leg set on it is what the prepared optimizer's rates follow."""
    from accelerate import Accelerator

    from common.config import TrainConfig, parse_config
    from common.data.dataset import load_dataset
    from common.train.optim import restart_cosine
    from common.train.run_context import find_context
    from common.train.run_plan import make_plan
    from common.train.session import build

    cfg = parse_config(TrainConfig, ["--data", str(small_cls), "--lr-schedule", "cosine", "--epochs", "2"])
    plan = make_plan(cfg, load_dataset(small_cls), find_context(cfg, 1, 1))
    built = build(plan, Accelerator(cpu=True, step_scheduler_with_optimizer=False))
    assert isinstance(built.schedule, torch.optim.lr_scheduler.CosineAnnealingLR)
    restart_cosine(built.schedule, 0.5, 4)
    rates = [built.optimizer.param_groups[0]["lr"]]
    for _ in range(2):
        built.optimizer.step()
        built.scheduler.step()
        rates.append(built.optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx([0.5 * plan.optim.lr * (1 + np.cos(np.pi * t / 4)) / 2 for t in range(3)])
