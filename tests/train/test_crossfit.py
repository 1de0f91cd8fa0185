"""Cross-fitting (common/train/crossfit.py): the folds a table gets, what picks its best weights,
each batch's training loss under the folds and the out-of-fold outputs validation scores."""
import pytest
import torch

from common.model import ModelSpec, build_model
from common.train.crossfit import CrossFit, monitor, out_of_fold, out_of_fold_in_order, table_folds


def test_each_member_trains_on_the_rows_outside_its_fold():
    losses = torch.tensor([[1.0, 2.0, 4.0], [8.0, 16.0, 32.0]])  # [rows, members]
    fold = torch.tensor([0, 2])
    # Row 0 trains members 1 and 2, row 1 members 0 and 1; each row's loss is the mean of its two.
    assert CrossFit(3, 0.0).training_loss(losses, fold) == pytest.approx((2 + 4 + 8 + 16) / 2)
    # One member and a validation fold: the validation rows (fold 0) train nothing, the others train it.
    holdout = CrossFit(1, 0.1).training_loss(torch.tensor([[1.0], [5.0]]), torch.tensor([0, -1]))
    assert holdout == pytest.approx(5.0)
    assert CrossFit(0, 0.0).training_loss(losses, None) == pytest.approx(losses.sum() / 3)  # every member, every row


def test_out_of_fold_outputs_are_each_rows_own_member():
    net = build_model(ModelSpec(2, (4,), 3, "relu", members=3))
    X = torch.randn(6, 2)
    fold = torch.tensor([2, 0, 1, 0, 2, 1])
    every = net(X)
    parts = out_of_fold(net, X, fold, members=3)
    assert sorted(torch.cat([rows for rows, _ in parts]).tolist()) == list(range(6))  # every row once
    for member, (rows, out) in enumerate(parts):
        assert (fold[rows] == member).all()
        torch.testing.assert_close(out, every[rows, member])
    in_order = out_of_fold_in_order(net, X, fold, members=3)
    torch.testing.assert_close(in_order, every[torch.arange(6), fold])


def test_the_fold_rule_and_the_monitor():
    assert table_folds(800, has_val=False, most=5, max_rows=30_000) == 5
    assert table_folds(3, has_val=False, most=5, max_rows=30_000) == 3    # never more folds than rows
    assert table_folds(50_000, has_val=False, most=5, max_rows=30_000) == 1  # one validation fold
    assert table_folds(800, has_val=True, most=5, max_rows=30_000) == 0    # the data set's own split validates
    assert monitor("classification", CrossFit(5, 0.0), is_recipe=False, has_val=False, has_test=True) == "val_f1_macro"
    assert monitor("regression", CrossFit(1, 0.1), is_recipe=False, has_val=False, has_test=True) == "val_loss"
    # the recipes keep the loss
    assert monitor("classification", CrossFit(0, 0.0), is_recipe=True, has_val=True, has_test=True) == "val_loss"
    assert monitor("classification", CrossFit(0, 0.0), is_recipe=True, has_val=False, has_test=True) == "test_loss"
    # no rows held out
    assert monitor("classification", CrossFit(0, 0.0), is_recipe=True, has_val=False, has_test=False) == "train_loss"


def test_on_plentiful_data_the_validation_fold_keeps_its_rows_and_the_rest_train():
    from common.data.splits import fold_ids
    from common.train.crossfit import holdout_share

    assert holdout_share(100_000, 0.1, 25_000) == 0.1  # a tenth, up to 250,000 rows ...
    share = holdout_share(1_000_000, 0.1, 25_000)
    assert share == 0.025  # ... then about 25,000 rows
    validated = (fold_ids(None, 1, share, seed=3, n=1_000_000) == 0).sum()
    assert validated == 25_000
    assert "validated on 2.5% of the training rows" in CrossFit(1, share).describe(1)
    # One row in a whole number of rows (here 1 in 11): the share fold_ids validates, no more, no less
    assert (fold_ids(None, 1, holdout_share(260_000, 0.1, 25_000), seed=3, n=260_000) == 0).sum() == 260_000 // 11
    assert "validated on 10% of the training rows" in CrossFit(1, 0.1).describe(1)
