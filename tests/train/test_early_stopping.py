"""The best evaluation so far and its weights (common/train/early_stopping.py), and early stopping on
it."""
import numpy as np
import pytest
import torch

from builders import read_config, read_metrics, train, train_args
from common.data.dataset import load_dataset
from common.model_folder import load_model_dir
from common.serve.predict import model_outputs


def test_the_best_macro_f1_is_kept_and_a_best_first_evaluation_is_flagged():
    from common.train.early_stopping import BestTracker

    best = BestTracker(0, "val_f1_macro", keep_best=True)
    model = torch.nn.Linear(1, 1)
    for epoch, f1 in ((0, 0.7), (3, 0.6), (6, 0.65)):
        best.update({"epoch": epoch, "val_f1_macro": f1}, model)
    assert best.best_was_first() and best.best_value() == 0.7 and best.weights is not None
    best.update({"epoch": 9, "val_f1_macro": 0.75}, model)  # higher is better for F1
    assert best.epoch == 9 and not best.best_was_first()


def evaluations_until_stopped(history, patience, min_patience):
    """How many evaluations of `history` (val losses) a BestTracker takes before it stops."""
    from common.train.early_stopping import BestTracker

    best = BestTracker(patience, "val_loss", min_patience=min_patience)
    for i, loss in enumerate(history):
        if best.update({"epoch": i, "val_loss": loss}, torch.nn.Linear(1, 1)):
            return i + 1
    return len(history)


def flat_after(found_at):
    """Validation losses falling to a best at evaluation `found_at`, none better after it."""
    return [1.0 - 0.01 * i for i in range(found_at + 1)] + [2.0] * 40


def test_a_best_found_early_is_waited_on_as_long_as_it_took_to_find():
    from common.train.early_stopping import BestTracker

    # Found at the 3rd evaluation: 8 more (the least), not 16.
    assert evaluations_until_stopped(flat_after(2), 16, 8) == 3 + 8
    # Found at the 12th: 12 more.
    assert evaluations_until_stopped(flat_after(11), 16, 8) == 12 + 12
    # Found at the 30th: the whole patience, never more.
    assert evaluations_until_stopped(flat_after(29), 16, 8) == 30 + 16
    # Without a minimum, or with one at the patience, the patience alone.
    assert evaluations_until_stopped(flat_after(2), 16, 0) == 3 + 16
    assert evaluations_until_stopped(flat_after(2), 4, 8) == 3 + 4
    # A state saved before evaluations were counted: the patience, not a guess.
    best = BestTracker(16, "val_loss", min_patience=8)
    best.load_state_dict({"loss": 0.5, "epoch": 2, "bad_evals": 3, "weights": None, "record": {}, "last": {},
                          "stopped": False})
    assert best.waiting_limit() == 16
    # A plateau from the first evaluation, then a better one: the count starts again from it.
    plateau = [1.0] * 7 + [0.9] + [2.0] * 40
    assert evaluations_until_stopped(plateau, 16, 8) == 8 + 8


def test_early_stopping_keeps_the_best_weights(small_val, tmp_path):
    # A large learning rate makes the validation loss wander, so patience runs out early.
    train(*train_args(small_val, tmp_path, "--epochs", "60", "--eval-every", "1", "--patience", "3",
                      "--lr", "0.3", "--batch-size", "64"))
    records = read_metrics(tmp_path)
    losses = [r["val_loss"] for r in records]
    best = int(np.argmin(losses))
    config = read_config(tmp_path)
    assert len(records) < 60                       # it stopped early ...
    assert len(records) - 1 - best == 3            # ... after exactly `patience` evaluations without progress
    assert config["outcome"]["best"]["epoch"] == records[best]["epoch"] and config["outcome"]["weights"] == "best"
    assert config["outcome"]["final_metrics"] == records[best]  # the saved weights' figures, not the last epoch's
    # The saved weights are the best epoch's: they reproduce its validation and test losses.
    data = load_dataset(small_val)
    record, model = load_model_dir(tmp_path)
    for split in ("val", "test"):
        X, y = data.split(split)
        logits = torch.from_numpy(model_outputs(model, X, 4096, record))
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(np.array(y))).item()
        assert loss == pytest.approx(records[best][f"{split}_loss"], rel=1e-5)


def test_a_leg_follows_only_a_best_in_the_last_quarter_and_halves_each_time():
    from common.train.early_stopping import Legs

    legs = Legs(20, 40)
    assert legs.next_leg(14) == 0 and legs.end == 20  # the best before the last quarter (epochs 15-19): done
    assert legs.next_leg(15) == 10 and (legs.start, legs.end, legs.peak) == (20, 30, 0.5)
    assert legs.next_leg(27) == 0  # a leg of 10: its last quarter is its last 2 epochs
    assert legs.next_leg(28) == 5 and (legs.end, legs.peak) == (35, 0.25)
    assert legs.next_leg(34) == 3 and legs.end == 38  # half of 5, rounded up
    assert legs.next_leg(37) == 2 and legs.end == 40  # up to the limit ...
    assert legs.next_leg(39) == 0  # ... and never past it
    assert legs.added == [10, 5, 3, 2] and Legs(20, 40).added == []
    assert [Legs.reach(e) for e in (3, 4, 19)] == [5, 6, 39]  # 3+2; 4+2; 19+10+5+3+2
    short = Legs(20, 21)
    assert short.next_leg(19) == 0  # a single epoch is no leg
    assert Legs(20, 0).next_leg(19) == 0  # no legs asked for
    restored = Legs(20, 40)
    restored.load_state_dict(legs.state_dict())
    assert (restored.start, restored.end, restored.peak, restored.added) == (legs.start, legs.end, legs.peak,
                                                                              legs.added)


def test_patience_waits_out_a_leg_and_the_legs_travel_in_the_trackers_state():
    from common.train.early_stopping import BestTracker, Legs

    net = torch.nn.Linear(2, 1)
    best = BestTracker(patience=3, legs=Legs(4, 12))
    for epoch, loss in enumerate([1.0, 0.9, 0.8, 0.7]):
        best.update({"epoch": epoch, "val_loss": loss}, net)
    assert best.next_leg() == 2
    # The raised rate of a leg's first epochs costs more than `patience` evaluations: no stop.
    for epoch, loss in zip(range(4, 9), [0.9, 0.85, 0.8, 0.75, 0.72], strict=True):
        assert not best.update({"epoch": epoch, "val_loss": loss}, net)
    state = best.state_dict()
    again = BestTracker(patience=3, legs=Legs(4, 12))
    again.load_state_dict(state)
    assert again.legs.state_dict() == [4, 6, 1] and again.epoch == 3
    older = BestTracker(patience=3, legs=Legs(4, 12))
    older.load_state_dict({k: v for k, v in state.items() if k != "legs"})  # saved before legs
    assert older.legs.state_dict() == [0, 4, 0]


def test_no_leg_begins_after_an_early_stop():
    from common.train.early_stopping import BestTracker, Legs

    net = torch.nn.Linear(2, 1)
    best = BestTracker(patience=1, legs=Legs(8, 16))
    for epoch, loss in enumerate([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.45]):
        best.update({"epoch": epoch, "val_loss": loss}, net)
    assert best.stopped and best.epoch == 6  # its best in the last quarter, and patience out
    assert best.next_leg() == 0 and best.legs.end == 8
