"""Where train.py leans on Accelerate's and torch's internals for speed: each lean listed, guarded
and tested.

On a model as small as the recipe's, Accelerate's per-step bookkeeping costs as much as the
arithmetic, and torch's compiler stack, imported by the first optimizer though nothing is
compiled, costs as much as importing torch. Nine shortcuts bring both down. None is public
API, so each is checked before use; where a release has moved the internal, the run takes the
public path (slower, same results) and, for all but the fifth and seventh (which live in the
optimizer's class, built before there is a console to say it on), says so once.
tests/train/test_leans.py fails when an upgrade moves any of them, so we learn it from CI
rather than from users.

1. `lomo_cache` -- `AcceleratedOptimizer.step` calls `accelerate.optimizer.is_lomo_available()`
   twice per step, and each call searches the import path (~25 us). Whether a package is
   installed cannot change during a run, so the answer is cached.
   Public path: leave the check uncached.
2. `epoch_signal` -- each epoch's batches pass through a `DataLoaderStateMixin` holding a
   `GradientState()`, as Accelerate's own loaders do, so that `accelerator.accumulate` sees
   where each epoch ends: an accumulation group then never spans two epochs, and a run resumed
   at an epoch boundary matches an uninterrupted one.
   Public path: group the batches ourselves, with `accelerator.no_sync(model)` inside a group.
3. `skip_accumulate` -- with --grad-accum 1 there is nothing to accumulate, yet `accumulate()`
   costs ~30 us a step; skipping it relies on `accelerator.sync_gradients` staying True
   when `accumulate()` is never entered.
   Public path: enter `accumulate()` every step.
4. `zero_through_model` -- `AcceleratedOptimizer.zero_grad` inspects the wrapped optimizer's
   signature on every call, and `model.zero_grad` walks the module tree for its parameters
   (~50 us a step between them). Setting each of the model's parameters' `.grad` to None, as
   `zero_grad(set_to_none=True)` does, is the same work when the optimizer holds exactly the
   model's parameters, which is checked.
   Public path: `optimizer.zero_grad(set_to_none=True)`.
5. `compiler_unloaded` -- torch marks an optimizer's methods as never to be compiled through
   `torch._disable_dynamo`, which imports `torch._dynamo`, with sympy and the rest of the
   compiler stack (~1 s), on the first call, and `step()` imports it on every call to put a
   graph break around the update. Nothing in a run compiles, so for the run's length
   each marked function is given itself as its cached "disabled" form (the cache
   `_disable_dynamo` keeps on the function; removed again after the run), and the optimizer is
   an eager subclass whose `step` runs the same update under the same grad mode, without the
   graph break: the same arithmetic, the same weights to the bit. Accelerate's `unwrap_model`
   imports the compiler to ask whether the model was compiled; while the compiler is not
   loaded nothing can have been, so the model is unwrapped from DDP directly. (DDP's own
   constructor imports the compiler: a run of several processes pays it there, once.) The
   eager `step` is also marked as already hooked, so that torch does not wrap it in its
   profiler label and hook loops (~35 us a step); where a step hook is registered it takes
   torch's hooked path all the same.
   Public path: torch's own optimizer class, and the import.
6. `direct_backward` -- `accelerator.backward` divides the loss by the accumulation steps
   before `loss.backward()` where nothing else (DeepSpeed, Megatron-LM, a gradient scaler,
   LOMO) takes over: with one step that is a division by 1 and its node in the graph (~25 us
   a step, the same gradients to the bit). Where all of that holds, `loss.backward()` is called
   directly; the shape of `Accelerator.backward` is checked.
   Public path: `accelerator.backward(loss)`.
7. `direct_adam` -- torch's fused Adam and AdamW (what make_optimizer asks for) end in two
   kernel calls, `torch._foreach_add_` on the step counts and `torch._fused_adam_` (or
   `_fused_adamw_`), but reach them through per-step Python that gathers the lists of
   parameters, gradients and moments, groups them by device and dtype and checks each one
   (~70 us a step, on the recipe's model three times the kernels). Where one group holds
   parameters of one device and dtype, every one with a gradient and with its state already
   made by torch's first step, and none of amsgrad, maximize, capturable, differentiable, a
   tensor learning rate or a gradient scaler is in play, the eager `step` of lean 5 makes the
   two calls itself: the same kernels on the same tensors, the same weights to the bit. The
   shape of torch's `_fused_adam` is checked.
   Public path: torch's `step` (lean 5's, or torch's own class).
8. `direct_step` -- `AcceleratedOptimizer.step` comes down to the wrapped optimizer's `step()`
   where no gradient scaler, XLA or LOMO optimizer is in play and the gradients are synced
   (~30 us a step of checks, about a tenth of the recipe's step once the step is written out,
   see common/train/hand_step.py). DeepSpeed's and Megatron-LM's wrappers, whose engines step
   the optimizer, are never passed by. With one batch per optimizer step every step is synced, and
   where all of that holds the Stepper calls the wrapped optimizer's `step()` itself; the
   shape of `AcceleratedOptimizer.step` is checked.
   Public path: `optimizer.step()` through Accelerate's wrapper.
9. `aten_derivatives` -- the step written out by hand (common/train/hand_step.py) takes ReLU's,
   Sigmoid's and Tanh's derivatives from ATen's own backward kernels (`threshold_backward`,
   `sigmoid_backward`, `tanh_backward` in `torch.ops.aten`, what autograd itself calls): the
   public spellings (a comparison and a multiply) cost several times more on small tensors.
   Each is looked up when the run starts; where one is gone, a model with that activation
   takes autograd's step.
   Public path: autograd's step (the same figures, not the same bits: hand_step.py says why).
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import sys
from collections.abc import Callable, Iterator
from typing import Any

LEANS = ("lomo_cache", "epoch_signal", "skip_accumulate", "zero_through_model", "direct_backward",
         "direct_step")  # the Stepper's
COMPILER = "torch._dynamo"
DISABLED_CACHE = "__dynamo_disable"  # where torch._compile._disable_dynamo caches a function's disabled form
NEVER_COMPILED = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")  # torch.optim.Optimizer's


def lomo_check_missing() -> str | None:
    """None where lean 1 applies, else why not."""
    try:
        import accelerate.optimizer as accelerate_optimizer
    except ImportError as err:
        return f"accelerate.optimizer cannot be imported ({err})"
    check = getattr(accelerate_optimizer, "is_lomo_available", None)
    if not callable(check):
        return "accelerate.optimizer.is_lomo_available is gone"
    step = getattr(getattr(accelerate_optimizer, "AcceleratedOptimizer", None), "step", None)
    try:
        source = inspect.getsource(step) if step is not None else ""
    except (OSError, TypeError):  # an install without source files: the check cannot be seen, leave it
        return "AcceleratedOptimizer.step's source is not available to check"
    if "is_lomo_available" not in source:
        return "AcceleratedOptimizer.step no longer calls is_lomo_available"
    return None


def epoch_signal_missing() -> str | None:
    """None where lean 2 applies, else why not."""
    try:
        from accelerate.data_loader import DataLoaderStateMixin
        from accelerate.state import GradientState
    except ImportError as err:
        return f"Accelerate's DataLoaderStateMixin or GradientState cannot be imported ({err})"
    needs = {DataLoaderStateMixin: ("begin", "end", "reset"),
             GradientState: ("_add_dataloader", "_remove_dataloader", "end_of_dataloader")}
    for cls, names in needs.items():
        lost = [n for n in names if not hasattr(cls, n)]
        if lost:
            return f"{cls.__name__} lacks {lost}"
    return None


def cache_lomo_check() -> None:
    import accelerate.optimizer as accelerate_optimizer

    check = accelerate_optimizer.is_lomo_available
    if not hasattr(check, "cache_info"):
        accelerate_optimizer.is_lomo_available = functools.cache(check)


@functools.cache
def epoch_signal_class() -> type:
    """A marker Accelerate's GradientState takes for one of its own loaders, so that
    `accumulate()` sees where each epoch ends."""
    from accelerate.data_loader import DataLoaderStateMixin
    from accelerate.state import GradientState

    class EpochSignal(DataLoaderStateMixin):
        def __init__(self) -> None:
            self.gradient_state = GradientState()

        def around(self, batches: Iterator[Any], length: int) -> Iterator[Any]:
            self.begin()
            try:
                for step, batch in enumerate(batches):
                    self.end_of_dataloader = step == length - 1
                    yield batch
            finally:
                self.end()

    return EpochSignal


def never_compiled_functions() -> list[Callable[..., Any]]:
    """The functions under torch's never-compile marks that a run calls (lean 5)."""
    from torch.optim import Optimizer

    return [inspect.unwrap(getattr(Optimizer, name)) for name in NEVER_COMPILED]


@functools.cache
def compiler_lean_missing() -> str | None:
    """None where lean 5 applies, else why not."""
    try:
        import torch._compile
        import torch.optim.optimizer as optimizer_module

        marks = inspect.getsource(torch._compile._disable_dynamo)
        step_guard = inspect.getsource(optimizer_module._use_grad_for_differentiable)
        functions = never_compiled_functions()
    except (ImportError, AttributeError, OSError, TypeError) as err:
        return f"torch's never-compile marks are not where they were ({err})"
    if DISABLED_CACHE not in marks:
        return f"torch._disable_dynamo no longer caches on {DISABLED_CACHE}"
    if "set_grad_enabled" not in step_guard or any(not inspect.isfunction(f) for f in functions):
        return "torch's optimizer step or never-compile marks changed shape"
    hooks = ("profile_hook_step", "_patch_step_function")
    if not all(hasattr(torch.optim.Optimizer, name) for name in hooks) or not all(
            hasattr(optimizer_module, f"_global_optimizer_{when}_hooks") for when in ("pre", "post")):
        return "torch's optimizer step hooks are not where they were"
    if '"hooked"' not in inspect.getsource(torch.optim.Optimizer._patch_step_function):
        return "torch no longer looks for a step marked as hooked"
    return None


@contextlib.contextmanager
def compiler_unloaded() -> Iterator[None]:
    """For the run's length, torch's never-compile marks call the functions as they are, without
    importing the compiler (lean 5). A process that has the compiler loaded already keeps
    torch's path: it compiles, or has, and the import is paid."""
    if COMPILER in sys.modules or compiler_lean_missing():
        yield
        return
    seeded = [f for f in never_compiled_functions() if DISABLED_CACHE not in vars(f)]
    for function in seeded:
        setattr(function, DISABLED_CACHE, function)
    try:
        yield
    finally:
        for function in seeded:
            if vars(function).get(DISABLED_CACHE) is function:
                delattr(function, DISABLED_CACHE)


@functools.cache
def eager_optimizer_class(cls: Any) -> Any:
    """`cls` with a `step` that runs torch's update under the grad mode torch's own wrapper sets,
    without its compiler graph break and the import that comes with it, and without torch's
    profiler wrapper where no step hook is registered (lean 5)."""
    import torch
    import torch.optim.optimizer as optimizer_module

    update = inspect.unwrap(cls.step)
    direct = direct_adam_update if issubclass(cls, torch.optim.Adam) and direct_adam_missing() is None else None

    def eager(self: Any, closure: Any = None) -> Any:
        with torch.set_grad_enabled(self.defaults["differentiable"]):
            return update(self, closure)

    hooked = torch.optim.Optimizer.profile_hook_step(eager)  # torch's path, for a step with hooks

    def step(self: Any, closure: Any = None) -> Any:
        if (self._optimizer_step_pre_hooks or self._optimizer_step_post_hooks
                or optimizer_module._global_optimizer_pre_hooks or optimizer_module._global_optimizer_post_hooks):
            return hooked(self, closure)
        if closure is None and direct is not None and direct(self):
            return None
        return eager(self, closure)

    step.hooked = True  # type: ignore[attr-defined]  # what torch's Optimizer.__init__ looks for before wrapping
    return type(cls.__name__, (cls,), {"step": step, "__module__": __name__, "__doc__": cls.__doc__})


@functools.cache
def direct_adam_missing() -> str | None:
    """None where lean 7 applies (torch's fused Adam update is still the two kernel calls it
    makes), else why not."""
    try:
        import torch
        import torch.optim.adam as adam_module

        source = inspect.getsource(adam_module._fused_adam)
    except (ImportError, AttributeError, OSError, TypeError) as err:
        return f"torch's fused Adam update is not where it was ({err})"
    calls = ("torch._foreach_add_(device_state_steps, 1)", "torch._fused_adam_", "torch._fused_adamw_")
    if not all(call in source for call in calls) or not all(
            hasattr(torch, name) for name in ("_foreach_add_", "_fused_adam_", "_fused_adamw_")):
        return "torch's fused Adam update no longer makes the kernel calls it made"
    return None


FUSED_ONLY = ("amsgrad", "maximize", "capturable", "differentiable")  # settings lean 7 leaves to torch


def direct_adam_update(optimizer: Any) -> bool:
    """Lean 7: torch's fused Adam or AdamW update as its two kernel calls; False (nothing done)
    where torch's own step must run."""
    import torch

    if len(optimizer.param_groups) != 1 or getattr(optimizer, "grad_scale", None) is not None \
            or getattr(optimizer, "found_inf", None) is not None:
        return False
    group = optimizer.param_groups[0]
    if not group["fused"] or any(group[name] for name in FUSED_ONLY) or torch.is_tensor(group["lr"]) \
            or any(torch.is_tensor(beta) for beta in group["betas"]):
        return False
    params, states = group["params"], optimizer.state
    if not params:
        return False
    first = params[0]
    grads, moments, squares, steps = [], [], [], []
    for p in params:
        state = states.get(p)
        if p.grad is None or not state or p.device != first.device or p.dtype != first.dtype \
                or p.grad.is_sparse or torch.is_complex(p):
            return False
        grads.append(p.grad)
        moments.append(state["exp_avg"])
        squares.append(state["exp_avg_sq"])
        steps.append(state["step"])
    beta1, beta2 = group["betas"]
    kernel = torch._fused_adamw_ if group.get("decoupled_weight_decay") else torch._fused_adam_
    with torch.no_grad():
        torch._foreach_add_(steps, 1)
        kernel(params, grads, moments, squares, [], steps, amsgrad=False, lr=group["lr"], beta1=beta1,
               beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"], maximize=False,
               grad_scale=None, found_inf=None)
    return True


def direct_backward_missing() -> str | None:
    """None where lean 6 can apply (Accelerate's backward still has the shape it relies on), else why not."""
    try:
        from accelerate import Accelerator

        source = inspect.getsource(Accelerator.backward)
    except (ImportError, AttributeError, OSError, TypeError) as err:
        return f"Accelerator.backward's source is not available to check ({err})"
    if "loss = loss / self.gradient_accumulation_steps" not in source or "loss.backward(**kwargs)" not in source:
        return "Accelerator.backward no longer divides by the accumulation steps before loss.backward()"
    return None


def direct_step_missing() -> str | None:
    """None where lean 8 can apply (Accelerate's optimizer step still has the shape it relies on), else why not."""
    try:
        from accelerate.optimizer import AcceleratedOptimizer

        source = inspect.getsource(AcceleratedOptimizer.step)
    except (ImportError, AttributeError, OSError, TypeError) as err:
        return f"AcceleratedOptimizer.step's source is not available to check ({err})"
    shape = ("if self.gradient_state.sync_gradients:", "if self.scaler is not None:", "self.optimizer.step(closure)")
    if not all(line in source for line in shape):
        return "AcceleratedOptimizer.step no longer comes down to the wrapped optimizer's step"
    return None


def step_is_plain(accelerator: Any, optimizer: Any, grad_accum: int) -> bool:
    """Whether `optimizer.step()` through Accelerate's wrapper comes down to the wrapped
    optimizer's `step()` at every step of this run (lean 8): Accelerate's own wrapper (not
    DeepSpeed's or Megatron-LM's, whose engines step the optimizer themselves), one batch per
    step, and no gradient scaler, XLA or LOMO."""
    from accelerate.optimizer import AcceleratedOptimizer
    from accelerate.utils import DistributedType

    # What leaves the backward pass plain (lean 6) leaves the step plain too, but for XLA.
    return (grad_accum == 1 and type(optimizer).step is AcceleratedOptimizer.step and backward_is_plain(accelerator)
            and accelerator.distributed_type != DistributedType.XLA)


ATEN_DERIVATIVES = {"relu": "threshold_backward", "sigmoid": "sigmoid_backward", "tanh": "tanh_backward"}


def aten_derivative(activation: str) -> Callable[[Any, Any], Any] | None:
    """Lean 9: the activation's derivative as ATen's backward kernel, (gradient, the activation's
    output) -> gradient; None where this torch lacks the kernel."""
    import torch

    try:
        kernel = getattr(torch.ops.aten, ATEN_DERIVATIVES[activation])
    except (AttributeError, RuntimeError):
        return None
    if activation == "relu":  # zero where the output is at or below the threshold 0
        return lambda grad, out: kernel(grad, out, 0)
    return kernel


def backward_is_plain(accelerator: Any) -> bool:
    """Whether `accelerator.backward(loss)` comes down to `loss.backward()` in this run: one
    accumulation step, and nothing that takes the backward pass over (lean 6)."""
    from accelerate.utils import DistributedType

    return (accelerator.gradient_accumulation_steps == 1 and getattr(accelerator, "scaler", None) is None
            and not getattr(accelerator, "has_lomo_optimizer", False)
            and accelerator.distributed_type not in (DistributedType.DEEPSPEED, DistributedType.MEGATRON_LM))


def unwrapped_model(accelerator: Any, model: Any) -> Any:
    """`accelerator.unwrap_model(model)`, without the compiler import its check for a compiled
    model makes: while the compiler is not loaded nothing was compiled (lean 5)."""
    if COMPILER in sys.modules:
        return accelerator.unwrap_model(model)
    import torch

    wrappers = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    return model.module if isinstance(model, wrappers) else model
