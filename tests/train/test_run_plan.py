"""The run plan: every setting resolved once, checked, and compared default-deny on --resume."""
import dataclasses
import types
import typing

import pytest
import torch

import train as train_script
from builders import make_data, read_config, train, train_args, user_error
from common.config import RECIPES, TrainConfig, parse_config
from common.data.dataset import load_dataset
from common.errors import UserError
from common.train.defaults import table_settings
from common.train.optim import make_optimizer, make_scheduler
from common.train.run_context import find_context
from common.train.run_plan import (
    RUN_ONLY,
    SMALL_STEP_MACS,
    TrainPlan,
    check_resumable,
    cpu_threads,
    make_plan,
    plan_differences,
)


def plan_for(data, *argv, processes=1, local=None, cores=None):
    cfg = parse_config(TrainConfig, list(argv))
    context = find_context(cfg, processes, local or processes)
    if cores is not None:
        context = dataclasses.replace(context, cores=cores)
    return make_plan(cfg, data, context)


@pytest.fixture(scope="module")
def cls_data(small_cls):
    return load_dataset(small_cls)


@pytest.fixture(scope="module")
def reg(reg_data):
    return load_dataset(reg_data)


def test_no_setting_is_left_optional():
    for name, hint in typing.get_type_hints(TrainPlan).items():
        args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else ()
        assert type(None) not in args, f"{name} may be None"


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_unset_settings_take_the_recipes_values(cls_data, reg, task):
    data = cls_data if task == "classification" else reg
    plan = plan_for(data)
    settings = plan.as_dict()
    for name in ("epochs", "batch_size", "lr", "optimizer", "eval_every"):
        assert settings[name] == RECIPES[task][name]
    assert plan.model.hidden == tuple(RECIPES[task]["hidden"])
    assert plan.model.in_features == data.X_train.shape[1]


def test_given_settings_win_over_the_recipe(cls_data):
    plan = plan_for(cls_data, "--epochs", "7", "--hidden", "8", "4", "--optimizer", "sgd", "--lr", "0.5")
    assert (plan.loop.epochs, plan.model.hidden, plan.optim.optimizer, plan.optim.lr) == (7, (8, 4), "sgd", 0.5)
    assert plan_for(cls_data, "--hidden").model.hidden == ()  # an empty list means a linear model


@pytest.mark.parametrize("argv,processes,global_batch,steps", [
    (["--batch-size", "1000"], 1, 1000, 5),          # 4802 training rows
    (["--batch-size", "1000"], 2, 2000, 3),          # each process takes whole batches
    (["--batch-size", "1000", "--split-batches"], 2, 1000, 5),
    (["--batch-size", "4802"], 1, 4802, 1),
])
def test_global_batch_and_steps_are_derived_once(cls_data, argv, processes, global_batch, steps):
    plan = plan_for(cls_data, *argv, "--grad-accum", "2", "--epochs", "3", processes=processes)
    assert (plan.batches.global_batch, plan.batches.steps_per_epoch) == (global_batch, steps)
    assert plan.batches.optimizer_steps == 3 * -(-steps // 2)  # groups never span epochs


@pytest.mark.parametrize("argv,words", [
    (["--epochs", "0"], ["--epochs", "positive"]),
    (["--batch-size", "-3"], ["--batch-size", "positive"]),
    (["--eval-every", "0"], ["--eval-every"]),
    (["--grad-accum", "0"], ["--grad-accum"]),
    (["--keep-checkpoints", "0"], ["--keep-checkpoints"]),
    (["--patience", "-1"], ["--patience"]),
    (["--threads", "-2"], ["--threads"]),
    (["--lr", "0"], ["--lr", "positive"]),
    (["--hidden", "16", "0"], ["--hidden", "positive"]),
    (["--hidden", "-4"], ["--hidden", "positive"]),
    (["--log-with", "nosuchtracker"], ["nosuchtracker", "tensorboard"]),
])
def test_bad_settings_are_one_line_errors(cls_data, argv, words):
    with pytest.raises(UserError) as info:
        plan_for(cls_data, *argv)
    for word in words:
        assert word in str(info.value)


def test_a_tracker_whose_package_is_missing_names_the_package(cls_data, monkeypatch):
    import accelerate.tracking

    monkeypatch.setattr(accelerate.tracking, "get_available_trackers", lambda: [])
    with pytest.raises(UserError, match="pip install tensorboard"):
        plan_for(cls_data, "--log-with", "tensorboard")


def test_more_processes_than_rows_or_than_a_split_batch(cls_data):
    with pytest.raises(UserError, match="only 4802 training rows"):
        plan_for(cls_data, processes=5000)
    with pytest.raises(UserError, match="--split-batches needs --batch-size >= 4"):
        plan_for(cls_data, "--split-batches", "--batch-size", "3", processes=4)


def test_threads(cls_data):
    assert plan_for(cls_data, "--threads", "3").run.threads == 3
    assert plan_for(cls_data).run.threads == 1  # the recipe's step is far too small for a second thread
    big = SMALL_STEP_MACS * 1000
    assert cpu_threads(0, 2, 16, big) == 8  # the machine's cores shared by its processes
    assert cpu_threads(0, 3, 16, big) == 5
    assert cpu_threads(0, 4, 2, big) == 1   # never fewer than one
    assert cpu_threads(0, 1, 16, SMALL_STEP_MACS - 1) == 1
    assert cpu_threads(6, 4, 2, big) == 6   # as asked
    wide = ("--hidden", "4096", "4096", "--batch-size", "4096")
    assert plan_for(cls_data, *wide, local=2, cores=16).run.threads == 8
    assert plan_for(cls_data, *wide, processes=4, cores=16).run.threads == 4


def test_resume_compares_every_field_but_the_run_only_ones(cls_data):
    plan = plan_for(cls_data).as_dict()
    assert plan.keys() > RUN_ONLY
    for name in RUN_ONLY:
        assert plan_differences(plan, {**plan, name: "changed"}) == []
    for name in plan.keys() - RUN_ONLY:
        assert plan_differences(plan, {**plan, name: "changed"}) == [f"{name}: {plan[name]!r} -> 'changed'"]
    # A setting added in a later version is protected without anyone listing it ...
    assert plan_differences(plan, {**plan, "new_setting": 1}) == ["new_setting: '(absent)' -> 1"]
    # ... and one a checkpoint has but this version lacks, too.
    assert plan_differences({**plan, "old_setting": 1}, plan) == ["old_setting: 1 -> '(absent)'"]


def test_step_schedule_divides_by_ten_at_half_and_three_quarters(cls_data):
    plan = plan_for(cls_data, "--lr-schedule", "step", "--epochs", "8", "--batch-size", "1200", "--lr", "1")
    assert plan.batches.optimizer_steps == 8 * 5
    optimizer = make_optimizer(dataclasses.replace(plan.optim, optimizer="sgd"), torch.nn.Linear(2, 1).parameters())
    scheduler = make_scheduler(plan, optimizer)
    rates = []
    for _ in range(plan.batches.optimizer_steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[:20] == [1.0] * 20
    assert rates[20:30] == pytest.approx([0.1] * 10)
    assert rates[30:] == pytest.approx([0.01] * 10)


def test_cosine_schedule_spans_the_whole_run(cls_data):
    plan = plan_for(cls_data, "--lr-schedule", "cosine", "--epochs", "4", "--batch-size", "1200", "--lr", "1")
    optimizer = make_optimizer(dataclasses.replace(plan.optim, optimizer="sgd"), torch.nn.Linear(2, 1).parameters())
    scheduler = make_scheduler(plan, optimizer)
    for _ in range(plan.batches.optimizer_steps):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_the_plan_is_frozen(cls_data):
    """Frozen all the way down: a list among the fields (the --hidden sizes, the trackers) could still
    change in place after --resume compared the plan. Equal settings and data: an equal plan."""
    plan = plan_for(cls_data, "--hidden", "8", "4")
    assert hash(plan) == hash(plan_for(cls_data, "--hidden", "8", "4"))  # TypeError for a list field
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.loop.epochs = 3  # type: ignore[misc]


@pytest.mark.parametrize("argv,words", [
    (["--lr", "nan"], ["--lr must be a positive number", "nan"]),
    (["--lr", "inf"], ["--lr must be a positive number"]),
    (["--seed", "-1"], ["--seed", "-1"]),
    (["--seed", str(2**32)], ["--seed"]),
    (["--init-from", "/nonexistent/model.safetensors"], ["--init-from", "no such file"]),
    (["--checkpoint-every", "-2"], ["--checkpoint-every must be 0 (off)"]),
])
def test_values_torch_or_numpy_would_reject_are_one_line_errors(cls_data, argv, words):
    with pytest.raises(UserError) as info:
        plan_for(cls_data, *argv)
    assert all(word in str(info.value) for word in words), str(info.value)


def test_class_weights_need_classes(reg):
    with pytest.raises(UserError, match="--class-weight balanced weighs classes"):
        plan_for(reg, "--class-weight", "balanced")


def test_a_checkpoint_without_the_data_sets_identity_is_refused_as_other_data(cls_data, tmp_path):
    plan = plan_for(cls_data)
    older = {k: v for k, v in plan.as_dict().items() if k != "data_identity"}
    assert plan_differences(older, plan.as_dict()) == [f"data_identity: '(absent)' -> {plan.data_identity!r}"]
    with pytest.raises(UserError, match="cannot resume .* on other data"):
        check_resumable(older, plan, str(tmp_path))
    # The previous version's checkpoints also recorded a hash of the files: no longer compared.
    assert plan_differences({**plan.as_dict(), "data_fingerprint": "123:abc"}, plan.as_dict()) == []


def test_a_small_table_cross_fits_and_a_large_one_keeps_one_validation_fold():
    small, large = table_settings(800, False, "classification", {}), table_settings(200_000, False, "regression", {})
    assert small["folds"] == 5 and small["class_weight"] == "none" and small["label_smoothing"] > 0
    assert large["folds"] == 1 and large["label_smoothing"] == 0
    assert table_settings(800, True, "classification", {})["folds"] == 0  # a validation split of its own
    assert table_settings(3, False, "classification", {})["folds"] == 3   # never more folds than rows


@pytest.mark.parametrize("rows,epochs", [(250_000, 8), (500_000, 4), (1_000_000, 2), (3_000_000, 1), (30_000_000, 1)])
def test_millions_of_rows_plan_epochs_within_the_row_budget_not_the_small_tables_least(rows, epochs):
    """8 epochs of 3M rows (24M row passes, 8-11 minutes here) for a best at the first or third:
    past the budget's reach (2M row passes) it wins over the least epochs; at most as many again in legs."""
    planned = table_settings(rows, False, "regression", {})
    assert planned["epochs"] == epochs and planned["extend_epochs"] == (16 if epochs == 8 else 2 * epochs)


def test_the_plan_resolves_the_folds_from_the_data(crossfit_run):
    cfg = parse_config(TrainConfig, ["--data", str(crossfit_run / "people"), "--ckpt-dir", str(crossfit_run / "x")])
    data = load_dataset(crossfit_run / "people")
    plan = make_plan(cfg, data, find_context(cfg, 1, 1))
    assert (plan.crossfit.folds, plan.model.members, plan.loop.monitor) == (5, 5, "val_f1_macro")
    assert plan.model.members == 5 and "5-fold cross-fitting" in plan.describe()


def test_patience_needs_validation_rows(small_cls, tmp_path):
    message = user_error(train_script.main, *train_args(small_cls, tmp_path, "--patience", "3"))
    assert "--val-size" in message and not tmp_path.joinpath("metrics.jsonl").exists()


def test_threads_setting_reaches_torch_and_the_record_and_is_given_back(small_cls, tmp_path, monkeypatch):
    import torch

    from common.train.trainer import Trainer

    seen, run_epoch = [], Trainer.run_epoch

    def noting(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return run_epoch(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "run_epoch", noting)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train("--data", small_cls, "--ckpt-dir", tmp_path, "--epochs", "1", "--threads", "2")
        assert seen == [2] and read_config(tmp_path)["training"]["threads"] == 2
        assert torch.get_num_threads() == 1  # a Python caller's process keeps its own setting
    finally:
        torch.set_num_threads(before)


def test_a_checkpoint_of_the_previous_plan_layout_compares_equal(cls_data):
    """The previous version's checkpoints recorded the embeddings' sizes as `embeddings` and a hash
    of the data set's files as `data_fingerprint`: the same plan still compares equal."""
    plan = plan_for(cls_data).as_dict()
    previous = {("embeddings" if k == "categorical" else k): v for k, v in plan.items()}
    assert plan_differences({**previous, "data_fingerprint": "123:abc"}, plan) == []
    changed = plan_differences({**previous, "embeddings": [[5, 4]]}, plan)
    assert changed == [f"categorical: [[5, 4]] -> {plan['categorical']!r}"]


def test_a_table_stops_sooner_after_an_early_best_and_an_older_checkpoint_resumes_as_it_ran(people_set, cls_data):
    table = plan_for(load_dataset(people_set[0] / "people"))
    assert (table.loop.patience, table.loop.min_patience) == (16, 8)
    assert "(or as many as the best took, at least 8)" in table.describe()
    assert plan_for(cls_data).loop.min_patience == 0  # the recipes: their patience alone (none)
    people = load_dataset(people_set[0] / "people")
    assert plan_for(people, "--min-patience", "0").loop.min_patience == 0
    # Where it cannot shorten the patience it is recorded as 0, what the run does ...
    assert plan_for(people, "--patience", "6").loop.min_patience == 0
    assert plan_for(people, "--patience", "0").loop.min_patience == 0
    # ... and given without a patience to shorten, it is refused in one line.
    with pytest.raises(UserError, match=r"^--min-patience 5 shortens the wait of --patience, and --patience is 0"):
        plan_for(people, "--patience", "0", "--min-patience", "5")
    with pytest.raises(UserError, match=r"^--min-patience 8 is not below --patience 4"):
        plan_for(people, "--patience", "4", "--min-patience", "8")
    # A checkpoint saved before the setting existed ran without it: it resumes with --min-patience 0,
    # and is refused by name otherwise.
    saved = {k: v for k, v in table.as_dict().items() if k != "min_patience"}
    assert plan_differences(saved, {**saved, "min_patience": 0}) == []
    assert plan_differences(saved, table.as_dict()) == ["min_patience: 0 -> 8"]


def test_what_help_says_a_table_gets_is_what_a_tables_plan_has(people_set):
    from common.config import TABLE_DEFAULTS, table_default_text

    plan = plan_for(load_dataset(people_set[0] / "people")).as_dict()
    for name in ("lr", "optimizer", "hidden", "weight_decay", "dropout", "patience", "min_patience", "lr_schedule",
                 "class_weight"):
        value = TABLE_DEFAULTS[name]
        shown = " ".join(map(str, value)) if isinstance(value, list) else str(value)
        assert plan[name] == value and table_default_text(name) == f"{shown} on other tables", name


def test_folds_0_on_a_table_without_validation_names_folds_not_a_patience_never_given(people_set):
    data = load_dataset(people_set[0] / "people")
    with pytest.raises(UserError) as info:
        plan_for(data, "--folds", "0")
    assert str(info.value).startswith("--folds 0") and "--patience 0" in str(info.value)
    assert plan_for(data, "--folds", "0", "--patience", "0").crossfit.folds == 0
    with pytest.raises(UserError, match="^--patience needs validation rows"):
        plan_for(data, "--folds", "0", "--patience", "4")


def test_a_data_set_with_no_rows_held_out_trains_on_every_row_and_keeps_its_best_training_loss(tmp_path):
    make_data("--n-samples", "400", "--test-size", "0", "--out-dir", tmp_path)  # the recipe's data, all training
    data = load_dataset(tmp_path / "cls_data")
    assert len(data.X_test) == 0 and data.n_val == 0
    assert plan_for(data).loop.monitor == "train_loss"
    train(*train_args(tmp_path / "cls_data", tmp_path / "run", "--epochs", "2", "--eval-every", "1"))
    assert read_config(tmp_path / "run")["outcome"]["best"]["monitor"] == "train_loss"


def test_a_table_trained_on_every_row_keeps_its_last_weights_and_says_it_has_no_figures(people_set, tmp_path,
                                                                                         capsys):
    """--folds 0 on a table without validation or test rows: the training loss, an epoch's running
    mean over changing weights, picks no epoch; the card and infer.py say there is nothing held out."""
    import infer as infer_script

    train(*train_args(people_set[0] / "people", tmp_path, "--folds", "0", "--patience", "0", "--epochs", "3"))
    outcome = read_config(tmp_path)["outcome"]
    assert outcome["weights"] == "last" and outcome["epochs_run"] == 3
    assert "None: every row of the data set trained the model" in (tmp_path / "README.md").read_text()
    assert "no row was held out from it" in user_error(infer_script.main, "--ckpt-dir", tmp_path)
    infer_script.main(["--ckpt-dir", str(tmp_path), "--input", str(people_set[1]), "--output", str(tmp_path / "p.csv")])
    said = capsys.readouterr().out
    assert "it held no row out, so none are" in said and "figures are on its card" not in said


def test_a_threshold_needs_rows_the_model_never_trained_on(people_set):
    data = load_dataset(people_set[0] / "people")  # two classes, no validation split
    assert plan_for(data).run.decision == "threshold"  # fitted out of fold
    assert plan_for(data, "--folds", "0", "--patience", "0").run.decision == "argmax"  # nothing held out
    with pytest.raises(UserError, match="^--decision threshold is fitted on rows the model never trained on"):
        plan_for(data, "--folds", "0", "--patience", "0", "--decision", "threshold")


def test_a_tables_planned_epochs_may_go_on_to_twice_as_many_and_a_length_given_is_run(people_set, cls_data):
    """A table of 10k rows plans 40 epochs (2M member-rows) of the 75 its optimizer steps ask for,
    a small one its steps' epochs, a large one the 8 at least: each may go on to twice as many
    where its best comes late (at most 300 in all)."""
    assert [(s["epochs"], s["extend_epochs"]) for s in (
        table_settings(10_000, False, "classification", {}), table_settings(800, False, "classification", {}),
        table_settings(200_000, False, "regression", {}), table_settings(100, False, "classification", {}))] \
        == [(40, 80), (120, 240), (8, 16), (300, 300)]
    assert table_settings(10_000, False, "classification", {"epochs": 30})["extend_epochs"] == 0
    assert table_settings(10_000, False, "classification", {"extend_epochs": 50})["extend_epochs"] == 50
    people = load_dataset(people_set[0] / "people")
    given = plan_for(people, "--epochs", "4", "--extend-epochs", "9")
    # 4 epochs, then legs of 2: no further than 6, and the plan records what the run can do
    assert given.loop.extend_epochs == 6 and "4 epochs (on to 6 while the best comes late)" in given.describe()
    planned = plan_for(people)
    assert planned.loop.extend_epochs == min(300, 2 * planned.loop.epochs) > planned.loop.epochs
    assert plan_for(people, "--epochs", "5").loop.extend_epochs == 0
    assert plan_for(people, "--lr-schedule", "constant").loop.extend_epochs == 0  # no cosine to restart
    assert plan_for(cls_data).loop.extend_epochs == 0  # the recipes run their epochs


@pytest.mark.parametrize("argv,words", [
    (["--epochs", "9", "--extend-epochs", "9"], "--extend-epochs 9: it is not above --epochs 9"),
    (["--extend-epochs", "5"], "--extend-epochs 5: it is not above the 158 planned epochs"),
    (["--epochs", "4", "--extend-epochs", "9", "--lr-schedule", "constant"],
     "--extend-epochs 9: it trains on in legs of a cosine schedule, and --lr-schedule is constant"),
    (["--epochs", "4", "--extend-epochs", "9", "--folds", "0", "--patience", "0"],
     "--extend-epochs 9: it follows the validation figure, and there are no validation rows"),
])
def test_a_leg_that_cannot_run_is_refused_in_one_line(people_set, argv, words):
    with pytest.raises(UserError) as info:
        plan_for(load_dataset(people_set[0] / "people"), *argv)
    assert str(info.value).startswith(words) and "\n" not in str(info.value)


def test_a_checkpoint_saved_before_legs_resumes_without_them_and_is_refused_by_name_otherwise(people_set):
    plan = plan_for(load_dataset(people_set[0] / "people"))
    table = plan.as_dict()
    saved = {k: v for k, v in table.items() if k != "extend_epochs"}
    assert plan_differences(saved, {**table, "extend_epochs": 0}) == []
    assert plan_differences(saved, table) == [f"extend_epochs: 0 -> {table['extend_epochs']}"]
    # The refusal says which flags give the checkpoint's settings ...
    with pytest.raises(UserError) as info:
        check_resumable({**saved, "split_batches": True}, plan, "ckpt/epoch_000003")
    assert str(info.value).endswith("rerun with the checkpoint's settings (--extend-epochs 0 --split-batches)")
    # ... and a count of processes, under the launch that gives it.
    with pytest.raises(UserError) as info:
        check_resumable({**table, "num_processes": 2}, plan, "ckpt/epoch_000003")
    assert str(info.value).endswith("rerun with the checkpoint's settings (under `accelerate launch --num_processes "
                                    "2`)"), str(info.value)
    # ... and where no flag can (a fold an earlier version sized otherwise), to start afresh.
    with pytest.raises(UserError, match=r"an earlier version sized its run otherwise \(holdout: 0.1 -> 0.0\).*"
                                        r"start afresh \(drop --resume\)$"):
        check_resumable({**table, "holdout": 0.1}, plan, "ckpt/epoch_000003")


def test_a_model_far_beyond_the_free_memory_is_refused_before_it_is_built(cls_data):
    """--hidden 100000000: its weights granted, then touched, woke the OOM killer (exit 137, no word)."""
    cfg = parse_config(TrainConfig, ["--hidden", "100000000"])
    context = dataclasses.replace(find_context(cfg, 1, 1), memory=24 * 10**9)
    with pytest.raises(UserError, match=r"^the model would need about [\d,.]+ GB .* far beyond the 24.0 GB free"):
        make_plan(cfg, cls_data, context)
    small = parse_config(TrainConfig, ["--hidden", "1000"])
    assert make_plan(small, cls_data, dataclasses.replace(context, memory=10**8)).model.hidden == (1000,)
    assert make_plan(cfg, cls_data, dataclasses.replace(context, memory=None))  # a GPU's, or unknown: not judged
    planned = make_plan(small, cls_data, context)
    need = planned.model.training_bytes(planned.batches.batch_size, 1 if planned.optim.optimizer == "sgd" else 2)
    alone = dataclasses.replace(context, memory=need)  # within twice the free memory for one process ...
    assert make_plan(small, cls_data, alone)
    with pytest.raises(UserError, match="far beyond"):  # ... not for four on the machine, each with its copy
        make_plan(small, cls_data, dataclasses.replace(alone, local_processes=4))
