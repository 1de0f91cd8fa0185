"""Accelerate's internals that the fast path leans on: still where we expect, and the public
path that replaces each one gives the same weights."""
import contextlib
import sys

import pytest
import torch
from accelerate import Accelerator

from common.config import TrainConfig, parse_config
from common.data.dataset import load_dataset
from common.train.leans import (
    DISABLED_CACHE,
    LEANS,
    compiler_lean_missing,
    compiler_unloaded,
    eager_optimizer_class,
    never_compiled_functions,
    unwrapped_model,
)
from common.train.run_context import find_context
from common.train.run_plan import make_plan
from common.train.session import build
from common.train.trainer import Stepper, Trainer

ALL_MISSING = dict.fromkeys(LEANS, "forced off by the test")


class RecordingStepper(Stepper):
    """Notes, for every batch, whether it ends a group and whether Accelerate would sync."""

    seen: list

    def accumulate(self, ends_group):
        context = super().accumulate(ends_group)
        self.seen = getattr(self, "seen", [])

        @contextlib.contextmanager
        def recorded():
            with context:
                self.seen.append((ends_group, self.accelerator.sync_gradients))
                yield

        return recorded()


def run(data, argv, missing=None):
    plan = make_plan(cfg := parse_config(TrainConfig, argv), data, find_context(cfg, 1, 1))
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=plan.batches.grad_accum,
                              step_scheduler_with_optimizer=False)
    model, optimizer, scheduler, _ = build(plan, accelerator)
    stepper = RecordingStepper(accelerator, model, optimizer, scheduler, plan.batches.grad_accum, missing=missing)
    trainer = Trainer(accelerator, model, optimizer, scheduler, data, plan, stepper)
    for epoch in range(plan.loop.epochs):
        trainer.run_epoch(epoch)
    weights = {k: v.detach().clone() for k, v in accelerator.unwrap_model(model).state_dict().items()}
    return weights, stepper


@pytest.fixture(scope="module")
def data(small_cls):
    return load_dataset(small_cls)


def test_every_lean_still_holds_on_the_installed_accelerate(data):
    _, stepper = run(data, ["--epochs", "1"])
    assert stepper.probe() == dict.fromkeys(LEANS)
    assert stepper.fallbacks == {}
    import accelerate.optimizer

    assert hasattr(accelerate.optimizer.is_lomo_available, "cache_info")  # lean 1 took effect


# 4802 rows in batches of 1000: 5 batches an epoch, so a group of 3 is cut short at each epoch's end.
ACCUMULATING = ["--epochs", "3", "--batch-size", "1000", "--grad-accum", "3", "--lr-schedule", "cosine"]


def test_accelerate_sees_where_each_epoch_ends(data):
    _, stepper = run(data, ACCUMULATING)
    assert [ends for ends, _ in stepper.seen] == [False, False, True, False, True] * 3
    assert all(ends == synced for ends, synced in stepper.seen)


@pytest.mark.parametrize("argv", [ACCUMULATING, ["--epochs", "2", "--batch-size", "700"]])
def test_the_public_path_gives_the_same_weights(data, argv, capsys, monkeypatch):
    import accelerate.optimizer

    fast, _ = run(data, argv)
    check = accelerate.optimizer.is_lomo_available
    monkeypatch.setattr(accelerate.optimizer, "is_lomo_available", getattr(check, "__wrapped__", check))
    public, stepper = run(data, argv, missing=ALL_MISSING)
    assert not hasattr(accelerate.optimizer.is_lomo_available, "cache_info")  # really uncached
    assert set(stepper.fallbacks) == set(LEANS)
    for key in fast:
        assert torch.equal(fast[key], public[key]), key
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert len(notes) == len(LEANS)  # each fallback is announced once


def test_an_optimizer_over_other_parameters_zeroes_through_itself():
    accelerator = Accelerator(cpu=True)
    model, other = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    stepper = Stepper(accelerator, model, torch.optim.SGD(other.parameters(), lr=0.1), None, 1)
    assert "zero_through_model" in stepper.fallbacks


def test_the_compiler_lean_holds_on_the_installed_torch():
    assert compiler_lean_missing() is None


@pytest.mark.parametrize("name", ["Adam", "AdamW", "SGD"])
@pytest.mark.parametrize("kernel", [{"fused": True}, {"foreach": True}, {"foreach": False, "weight_decay": 0.01}])
def test_the_eager_optimizer_gives_torchs_weights_to_the_bit(name, kernel):
    """Lean 5's public path is torch's own class: the same updates, with a schedule and a closure."""
    def trained(cls):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        optimizer = cls(model.parameters(), lr=0.05, **kernel)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=7)
        x, y = torch.randn(32, 6, generator=torch.Generator().manual_seed(1)), torch.arange(32) % 3

        def closure():
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            return loss.detach()

        losses = []
        for _ in range(7):
            losses.append(float(optimizer.step(closure)))
            schedule.step()
        return model.state_dict(), optimizer.state_dict()["state"], losses

    stock = getattr(torch.optim, name)
    with compiler_unloaded():
        eager = trained(eager_optimizer_class(stock))
    public = trained(stock)
    assert eager[2] == public[2]
    for key, value in public[0].items():
        assert torch.equal(eager[0][key], value), key
    assert_same_state(eager[1], public[1])
    assert isinstance(eager_optimizer_class(stock)(torch.nn.Linear(1, 1).parameters()), stock)


def assert_same_state(got, want):
    """Two optimizers' states alike to the bit: moments, step counts, momentum buffers."""
    assert got.keys() == want.keys()
    for index, state in want.items():
        assert state.keys() == got[index].keys(), index
        for name, value in state.items():
            same = torch.equal(got[index][name], value) if torch.is_tensor(value) else got[index][name] == value
            assert same, (index, name)


def test_the_compiler_marks_are_torchs_own_again_after_a_run(monkeypatch):
    functions = never_compiled_functions()
    monkeypatch.delitem(sys.modules, "torch._dynamo", raising=False)  # as in a process that never compiled
    for function in functions:
        monkeypatch.delattr(function, DISABLED_CACHE, raising=False)
    with compiler_unloaded():
        assert all(vars(f)[DISABLED_CACHE] is f for f in functions)
    assert not any(DISABLED_CACHE in vars(f) for f in functions)


def test_a_model_is_unwrapped_as_accelerate_unwraps_it():
    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(torch.nn.Linear(2, 1))
    assert unwrapped_model(accelerator, model) is accelerator.unwrap_model(model)


def test_the_eager_step_is_not_wrapped_in_torchs_profiler_label_yet_its_hooks_run():
    cls = eager_optimizer_class(torch.optim.SGD)
    own = cls.__dict__["step"]
    model = torch.nn.Linear(2, 1)
    optimizer = cls(model.parameters(), lr=0.1)
    assert cls.__dict__["step"] is own  # torch's constructor left it unwrapped
    calls = []
    optimizer.register_step_pre_hook(lambda *args: calls.append("pre"))
    from torch.optim.optimizer import register_optimizer_step_post_hook

    handle = register_optimizer_step_post_hook(lambda *args: calls.append("global post"))
    try:
        model(torch.ones(1, 2)).sum().backward()
        optimizer.step()
    finally:
        handle.remove()
    assert calls == ["pre", "global post"]


@pytest.mark.parametrize(("settings", "plain"), [({}, True), ({"gradient_accumulation_steps": 2}, False)])
def test_backward_is_called_directly_only_where_accelerate_would_do_just_that(settings, plain):
    from common.train.leans import backward_is_plain, direct_backward_missing

    assert direct_backward_missing() is None
    accelerator = Accelerator(cpu=True, **settings)
    assert backward_is_plain(accelerator) is plain
    stepper = Stepper(accelerator, torch.nn.Linear(2, 1), torch.optim.SGD(torch.nn.Linear(2, 1).parameters()), None, 1)
    assert (stepper.backward is torch.Tensor.backward) is plain


def adam_run(cls, steps=7, **settings):
    """A small model trained `steps` steps with a schedule, stepped without a closure."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    optimizer = cls(model.parameters(), **{"lr": 0.05, **settings})
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    x, y = torch.randn(32, 6, generator=torch.Generator().manual_seed(1)), torch.arange(32) % 3
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        schedule.step()
    return model, optimizer


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
@pytest.mark.parametrize("settings", [{}, {"weight_decay": 0.01}])
def test_the_direct_adam_update_gives_torchs_weights_to_the_bit(name, settings, monkeypatch):
    import torch.optim.adam as adam_module

    from common.train.leans import direct_adam_missing

    assert direct_adam_missing() is None
    stock = getattr(torch.optim, name)
    public_model, public = adam_run(stock, fused=True, **settings)
    through_torch = []
    update = adam_module._fused_adam
    monkeypatch.setattr(adam_module, "_fused_adam", lambda *a, **k: through_torch.append(1) or update(*a, **k))
    with compiler_unloaded():
        model, optimizer = adam_run(eager_optimizer_class(stock), fused=True, **settings)
    assert len(through_torch) == 1  # the first step makes the state; the other six are direct
    for key, value in public_model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert_same_state(optimizer.state_dict()["state"], public.state_dict()["state"])


def test_the_direct_adam_update_leaves_to_torch_what_it_does_not_cover():
    from common.train.leans import direct_adam_update

    cases = [{"fused": True, "amsgrad": True}, {"fused": True, "maximize": True}, {"foreach": True},
             {"fused": True, "lr": torch.tensor(0.01)}]
    for settings in cases:
        model, optimizer = adam_run(torch.optim.Adam, steps=1, **settings)
        model(torch.ones(1, 6)).sum().backward()
        assert not direct_adam_update(optimizer), settings
    model, optimizer = adam_run(torch.optim.Adam, steps=1, fused=True)
    model(torch.ones(1, 6)).sum().backward()
    model[0].bias.grad = None  # a parameter without a gradient: torch skips it
    assert not direct_adam_update(optimizer)
    fresh = torch.optim.Adam(torch.nn.Linear(2, 1).parameters(), fused=True)  # no state yet: torch makes it
    assert not direct_adam_update(fresh)
    assert fresh.state == {}


def test_an_engine_that_steps_its_own_optimizer_is_never_passed_by():
    """DeepSpeed's and Megatron-LM's wrappers step nothing themselves: their engines do."""
    from accelerate.utils import DistributedType
    from accelerate.utils.deepspeed import DeepSpeedOptimizerWrapper

    from common.train.leans import step_is_plain

    accelerator = Accelerator(cpu=True)
    inner = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
    assert not step_is_plain(accelerator, DeepSpeedOptimizerWrapper(inner), 1)
    engine = type("Engine", (), {"scaler": None, "gradient_accumulation_steps": 1,
                                 "distributed_type": DistributedType.DEEPSPEED})()
    assert not step_is_plain(engine, accelerator.prepare(torch.optim.SGD(torch.nn.Linear(2, 1).parameters())), 1)


@pytest.mark.parametrize("accum", [1, 3])
def test_the_optimizer_is_stepped_directly_only_where_accelerate_would_do_just_that(accum):
    from common.train.leans import direct_step_missing

    assert direct_step_missing() is None
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=accum)
    model = torch.nn.Linear(2, 1)
    model, optimizer = accelerator.prepare(model, torch.optim.SGD(model.parameters(), lr=0.1))
    stepper = Stepper(accelerator, model, optimizer, None, accum)
    assert stepper.optimizer_step == (optimizer.optimizer.step if accum == 1 else optimizer.step)
