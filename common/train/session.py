"""One training run, from settings to a committed model folder: what train.py runs, and what the
Python API's `fit` (common/api.py) runs in-process. One loop, written once against
`accelerate.Accelerator`: the config file alone decides the hardware.

    start the processes -> load the data set -> resolve the plan -> the Accelerator
    -> build, resume, epochs (evaluate, keep the best, checkpoint), stop -> assess -> commit
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from common.config import TrainConfig
from common.console import TrainingDisplay
from common.data.dataset import TabularData, load_dataset
from common.decision import ThresholdFit, decision_in_words
from common.errors import Terminated, UserError
from common.figures import run_painter, stop_early
from common.files import load_weights, make_folder
from common.model import build_model, intra_op_threads, load_state
from common.train.assessment import fitted_decision, scored_rows, test_by_decision, val_by_decision
from common.train.early_stopping import BestTracker, Legs
from common.train.heartbeat import lost_peers, stop_heartbeat
from common.train.leans import compiler_unloaded
from common.train.optim import make_optimizer, make_scheduler, restart_cosine
from common.train.process_group import (
    least_free_memory,
    local_process_count,
    make_accelerator,
    require_one_data_set,
    seconds_since_start,
    start_processes,
)
from common.train.run_context import RANDOM_INIT, find_context
from common.train.run_folder import TRACKER_PROJECT, RunFolder, tracker_threads_quiet, tracker_writes
from common.train.run_plan import TrainPlan, make_plan
from common.train.run_record import run_record, scalar_settings
from common.train.run_report import RunReport
from common.train.stop_signal import StopSignal
from common.train.trainer import Trainer, check_finite

if TYPE_CHECKING:
    import torch



def run_training(cfg: TrainConfig, bad_arguments: UserError | None = None) -> Path:
    """Train as `cfg` says and commit the model folder; returns it. `bad_arguments`: a command
    line that did not parse, reported once the process group can say which process reports."""
    state = start_processes(cfg.timeout)
    if bad_arguments:
        raise bad_arguments
    data = load_dataset(cfg.data)
    try:
        memory = least_free_memory(state)  # the first collective: a peer that failed to load stops it here
        require_one_data_set(cfg.data, data.identity, state)
    except RuntimeError as err:
        raise lost_peers(err, cfg.timeout) from None
    context = find_context(cfg, state.num_processes, local_process_count(state), memory)
    plan = make_plan(cfg, data, context)
    accelerator = make_accelerator(plan)
    with tracker_threads_quiet() if plan.run.log_with else contextlib.nullcontext():
        return trained(plan, data, accelerator)


def trained(plan: TrainPlan, data: TabularData, accelerator: Any) -> Path:
    """The run, from its first step to the trackers' end; the model folder it wrote."""
    try:
        train(plan, data, accelerator)
    except RuntimeError as err:
        raise lost_peers(err, plan.run.timeout) from None
    # The DDP model must be gone before the process group is: a DDP reducer outliving its gloo
    # group until interpreter exit aborts the process now and then ("terminate called without
    # an active exception"). train() has returned, so only the accelerator still holds it.
    accelerator.free_memory()
    stop_heartbeat()  # before the barrier: no beat in flight once any process may exit
    try:
        accelerator.wait_for_everyone()
    except RuntimeError as err:  # a process gone after the commit (a signal to it alone): no --resume to give
        if not isinstance(lost_peers(err, plan.run.timeout), UserError):
            raise
        lost = UserError(f"another process of the run ended before this one ({str(err).splitlines()[0][:160]}); the "
                         f"model in {plan.run.ckpt_dir} had been written, whole, before it")
        lost.says_what_was_written = True  # said here for the API too, which has no run_cli to add it
        raise lost from None
    with tracker_writes(plan.run.ckpt_dir):  # the trackers' last writes
        accelerator.end_training()
    return Path(plan.run.ckpt_dir)


class Built(NamedTuple):
    """A run's model, optimizer and scheduler as accelerator.prepare made them, and torch's own
    scheduler besides."""
    model: Any
    optimizer: Any
    scheduler: Any  # prepared: Accelerate's wrapper, which passes none of torch's attributes on
    schedule: torch.optim.lr_scheduler.LRScheduler | None  # torch's inside it, whose attributes a new leg sets


def build(plan: TrainPlan, accelerator: Any) -> Built:
    from accelerate.utils import set_seed

    set_seed(plan.seed)  # the same initial weights on every process and every run
    model = build_model(plan.model)
    if plan.init != RANDOM_INIT:
        load_state(model, load_weights(plan.init), plan.init,
                   fix="give --hidden, --folds and --data that build the model these weights came from")
    optimizer = make_optimizer(plan.optim, model.parameters())
    schedule = make_scheduler(plan, optimizer)
    # a None scheduler passes through
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, schedule,
                                                      device_placement=placements(accelerator, 3))
    return Built(model, optimizer, scheduler, schedule)


def placements(accelerator: Any, count: int) -> list[bool] | None:
    """Where each prepared object goes, said outright: left unsaid, Accelerate imports torch's
    DTensor stack (~0.6 s, sympy with it) to ask whether a model as plain as ours is sharded.
    DeepSpeed, Megatron-LM and FSDP place their own."""
    from accelerate.utils import DistributedType

    own = (DistributedType.DEEPSPEED, DistributedType.MEGATRON_LM, DistributedType.FSDP)
    return None if accelerator.distributed_type in own else [accelerator.device_placement] * count


def train(plan: TrainPlan, data: TabularData, accelerator: Any) -> None:
    with intra_op_threads(plan.run.threads), compiler_unloaded(), RunFolder(plan, accelerator) as folder, \
            StopSignal(accelerator) as stop, painter(plan, accelerator) as pictures:
        built = build(plan, accelerator)
        trainer = Trainer(accelerator, built.model, built.optimizer, built.scheduler, data, plan)
        legs = Legs(plan.loop.epochs, plan.loop.extend_epochs)
        # An ensemble keeps its best evaluation's weights, chosen on rows held out for it: never on
        # the test split, whose figures would then be chosen ones, nor by the training loss (an
        # epoch's running mean over changing weights), which says nothing of any one epoch's.
        best = BestTracker(plan.loop.patience, plan.loop.monitor,
                           keep_best=plan.model.members > 0 and plan.loop.monitor not in ("train_loss", "test_loss"),
                           min_patience=plan.loop.min_patience, legs=legs)
        start = folder.resume(trainer, best)
        accelerator.print(plan.describe())
        if plan.run.log_with:
            with tracker_writes(plan.run.ckpt_dir):
                if accelerator.is_main_process:  # a file or a link to nowhere in its place, said as such
                    make_folder(Path(plan.run.ckpt_dir) / TRACKER_PROJECT)
                accelerator.init_trackers(TRACKER_PROJECT, config=scalar_settings(plan.as_dict()))
        if start.epoch >= legs.end or best.stopped:
            accelerator.print(f"The run in {plan.run.ckpt_dir} had finished: nothing left to train")
        startup = round(seconds_since_start(), 3)  # a small table's time is start-up
        folder.start_clock()
        epochs_run = epoch = start.epoch
        title = f"{plan.task} on {plan.num_processes} process(es), {accelerator.device}"
        try:
            with TrainingDisplay(title, legs.end, start.epoch, accelerator.is_main_process) as display:
                while epoch < legs.end and not best.stopped:  # not stopped: a run resumed after an early stop
                    train_loss = trainer.run_epoch(epoch, start.first_step(epoch), stop)
                    if train_loss is None:  # a signal, mid-epoch
                        raise folder.stopped(stop, trainer)
                    epochs_run = epoch + 1
                    check_finite(train_loss, epoch)
                    display.epoch_done(train_loss)
                    if plan.loop.evaluates(epoch, legs.end):
                        record = trainer.evaluate(epoch, train_loss)
                        check_finite(record[plan.loop.monitor], epoch)
                        display.add(record)
                        folder.add_record(record)
                        best.update(record, trainer.net)
                    if epochs_run == legs.end:
                        begin_leg(plan, best, built.schedule, display, accelerator)
                    folder.checkpoint_if_due(epoch)  # after a leg has begun: a resumed run goes on with it
                    if stop.agreed(0, boundary=True):  # the last epoch too: a resume then only saves
                        raise folder.stopped(stop, trainer)
                    epoch += 1
        except KeyboardInterrupt:  # a second Ctrl-C, which does not wait for the step to end
            raise folder.interrupted(trainer.epoch) from None
        try:
            stop.finish()
            report_stop(plan.loop.monitor, best, accelerator)
            outcome = best.outcome(epochs_run, startup, folder.training_seconds())
            weights = best.final_weights(trainer.net)
            # The last look at the model is the main process's alone: elsewhere no rows, no decision.
            rows = scored_rows(plan, data, trainer.folds) if accelerator.is_main_process else None
            decision = fitted_decision(plan, rows, weights)
            report_decision(decision, plan.run.decision, data, accelerator)
            if accelerator.is_main_process:
                outcome.test_by_decision = test_by_decision(plan, data, weights, decision)
                outcome.val_by_decision = val_by_decision(plan, data, weights, decision, rows)
            model_record = run_record(plan, data, accelerator, outcome, decision)
            report = RunReport.made(plan, data, rows, weights, model_record, folder.records, pictures) \
                if accelerator.is_main_process else None
            folder.commit(weights, model_record, report)
        except (KeyboardInterrupt, Terminated) as err:
            if folder.committed:  # run_cli says that the model had been written
                raise
            raise folder.stopped_after_training(err) from None


def begin_leg(plan: TrainPlan, best: BestTracker, schedule: torch.optim.lr_scheduler.LRScheduler | None,
              display: TrainingDisplay, accelerator: Any) -> None:
    """At the end of the epochs planned so far: another leg where the validation figure was still
    improving (early_stopping.Legs), its cosine restarted; every process decides alike, on the
    same reduced figures."""
    legs, epochs = best.legs, best.next_leg()
    if not epochs:
        return
    from torch.optim.lr_scheduler import CosineAnnealingLR

    assert isinstance(schedule, CosineAnnealingLR)  # legs follow a cosine only (run_plan.effective_extension)
    restart_cosine(schedule, legs.peak, epochs * plan.batches.optimizer_steps // plan.loop.epochs)
    display.extend(legs.end)
    accelerator.print(f"The best {plan.loop.monitor} came late (epoch {best.epoch}): training on to epoch {legs.end}, "
                      f"the learning rate from {legs.peak:g} of its peak (at most {plan.loop.extend_epochs} in all)")


def report_decision(decision: ThresholdFit | None, asked: str, data: TabularData, accelerator: Any) -> None:
    words = decision_in_words(decision, asked, data.description.class_labels or [])
    if words:
        accelerator.print(f"Decision: {words}")


def painter(plan: TrainPlan, accelerator: Any) -> Any:
    """The main process's Painter, started with the run (or before, by train.py) so that
    matplotlib is ready at its end; elsewhere none, and one started early is stopped."""
    if accelerator.is_main_process and plan.run.pictures:
        return run_painter()
    stop_early()
    return contextlib.nullcontext()


def report_stop(monitor: str, best: BestTracker, accelerator: Any) -> None:
    if best.stopped:
        accelerator.print(f"Early stop after epoch {best.last['epoch']}: best {monitor} "
                          f"{best.best_value():.4f} at epoch {best.epoch}")
    if best.weights is not None:
        accelerator.print(f"Kept the weights of epoch {best.epoch}, the best {monitor} ({best.best_value():.4f})")
    if best.best_was_first():
        accelerator.print(f"Warning: no evaluation after the first beat its {monitor}: the kept weights barely "
                          "trained; try a lower --lr, or more rows (--folds gives each member more of them)")
