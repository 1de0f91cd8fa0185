"""Where train.py leans on Accelerate's internals for speed: each lean listed, guarded and tested.

On a model as small as the recipe's, Accelerate's per-step bookkeeping costs as much as the
arithmetic. Four shortcuts bring its overhead down to a few percent. None is public API, so
each is checked before use; where Accelerate has moved the internal, the run takes the
public path (slower, same results) and says so once. tests/train/test_accelerate_leans.py fails when an
upgrade moves any of them, so we learn it from CI rather than from users.

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
   signature on every call; `model.zero_grad(set_to_none=True)` does the same work when the
   optimizer holds exactly the model's parameters, which is checked.
   Public path: `optimizer.zero_grad(set_to_none=True)`.
"""
from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator
from typing import Any

LEANS = ("lomo_cache", "epoch_signal", "skip_accumulate", "zero_through_model")


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


