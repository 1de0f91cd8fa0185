"""The best evaluation so far and its weights (common/train/early_stopping.py), and early stopping on
it."""
import torch


def test_the_best_macro_f1_is_kept_and_a_best_first_evaluation_is_flagged():
    from common.train.early_stopping import BestTracker

    best = BestTracker(0, "val_f1_macro", keep_best=True)
    model = torch.nn.Linear(1, 1)
    for epoch, f1 in ((0, 0.7), (3, 0.6), (6, 0.65)):
        best.update({"epoch": epoch, "val_f1_macro": f1}, model)
    assert best.best_was_first() and best.best_value() == 0.7 and best.weights is not None
    best.update({"epoch": 9, "val_f1_macro": 0.75}, model)  # higher is better for F1
    assert best.epoch == 9 and not best.best_was_first()
