"""The settings (common/config.py): one dataclass per script, parsed from its command line, each
setting with its help text and its bound."""
import dataclasses

import pytest

from common.config import RECIPES, InferConfig, MakeDataConfig, TrainConfig, build_parser, flag_name, parse_config
from common.errors import UserError


@pytest.mark.parametrize("cls", [MakeDataConfig, TrainConfig, InferConfig])
def test_help_lists_every_setting(cls):
    text = build_parser(cls).format_help()
    unwrapped = "".join(text.split())  # argparse wraps the help to the terminal's width
    for f in dataclasses.fields(cls):
        assert "--" + f.name.replace("_", "-") in text
        help_text = f.metadata.get("help", "")
        assert help_text and "".join(help_text.split()) in unwrapped, f"{f.name} has no help text of its own"


@pytest.mark.parametrize("cls", [MakeDataConfig, TrainConfig, InferConfig])
def test_help_says_what_0_means_once_where_it_means_something_of_its_own(cls):
    """--chunk-rows said "(default: 0)", and no word of what 0 did."""
    helps = {a.dest: a.help for a in build_parser(cls)._actions}
    for f in dataclasses.fields(cls):
        if "zero" in f.metadata:
            assert helps[f.name].endswith(f"; 0: {f.metadata['zero']})") and helps[f.name].count("0:") == 1, f.name


@pytest.mark.parametrize("cls", [MakeDataConfig, TrainConfig, InferConfig])
def test_a_setting_given_no_text_is_refused_as_it_is_parsed(cls):
    """`--ckpt-dir "$RUN"` with RUN unset trained into the current folder; `--csv ''` made the recipe's data."""
    for f in dataclasses.fields(cls):
        if f.type in ("str", "str | None") and not f.metadata.get("character"):
            with pytest.raises(UserError, match=f"^{flag_name(f.name)} was given no text"):
                parse_config(cls, [flag_name(f.name), " "])


def test_help_shows_the_recipes_values_from_the_one_table():
    text = " ".join(build_parser(TrainConfig).format_help().split())
    c, r = RECIPES["classification"], RECIPES["regression"]
    sized = "; sized from the data for other tables"
    assert f"(default: {c['epochs']} / {r['epochs']} (classification / regression recipes{sized}))" in text
    assert f"(default: {c['hidden'][0]} / none (classification / regression recipes; 128 128 on other tables))" in text
    assert "(default: 0 / 0 (classification / regression recipes; 16 on other tables); 0: off)" in text  # --patience
    assert "(default: 0 / 0 (classification / regression recipes; 8 on other tables); 0: off, always --patience)" \
        in text  # --min-patience
    assert "recipes; other tables: 5 up to 30,000 training rows, else 1, and 0 where the data set has a " \
           "validation split); 0: every training row trains, validated on the validation split)" in text
    text = " ".join(build_parser(MakeDataConfig).format_help().split())
    assert f"(default: {c['n_samples']} / {r['n_samples']} (classification / regression recipes))" in text


def test_defaults_are_left_for_the_recipe():
    cfg = parse_config(TrainConfig, [])
    assert cfg.epochs is None and cfg.hidden is None and cfg.split_batches is False and cfg.log_with == []


def test_flags_parse_to_their_types():
    cfg = parse_config(TrainConfig, ["--epochs", "7", "--lr", "0.5", "--hidden", "8", "4", "--split-batches",
                                     "--activation", "tanh", "--optimizer", "sgd", "--log-with", "tensorboard",
                                     "wandb"])
    assert (cfg.epochs, cfg.lr, cfg.hidden, cfg.split_batches) == (7, 0.5, [8, 4], True)
    assert (cfg.activation, cfg.optimizer, cfg.log_with) == ("tanh", "sgd", ["tensorboard", "wandb"])


def test_bad_values_are_one_line_user_errors():
    with pytest.raises(UserError, match=r"argument --activation: invalid choice: 'softmax'.*\(see --help\)"):
        parse_config(TrainConfig, ["--activation", "softmax"])
    with pytest.raises(UserError, match="argument --epochs: invalid int value: 'x'"):
        parse_config(TrainConfig, ["--epochs", "x"])


def test_make_data_flags_follow_the_generator():
    cfg = parse_config(MakeDataConfig, ["--n-samples", "10007", "--task", "regression", "--noise", "0.001"])
    assert (cfg.n_samples, cfg.task, cfg.noise) == (10007, "regression", 0.001)


def test_a_repeated_list_flag_adds_and_a_given_one_replaces_the_default():
    assert parse_config(MakeDataConfig, ["--drop", "a", "--drop", "b", "c"]).drop == ["a", "b", "c"]
    assert parse_config(TrainConfig, ["--log-with", "tensorboard"]).log_with == ["tensorboard"]
    assert parse_config(TrainConfig, ["--hidden", "8", "--hidden", "4"]).hidden == [8, 4]
    assert parse_config(TrainConfig, []).hidden is None
    assert parse_config(TrainConfig, ["--hidden"]).hidden == []  # given empty: a linear model


@pytest.mark.parametrize("cls", [TrainConfig, MakeDataConfig, InferConfig])
def test_every_bounded_setting_is_checked_as_it_is_parsed(cls):
    bounded = [f for f in dataclasses.fields(cls) if "minimum" in f.metadata]
    assert bounded
    for f in bounded:
        flag = "--" + f.name.replace("_", "-")
        low = f.metadata["minimum"] - 1
        with pytest.raises(UserError, match=f"^{flag} must be (a positive integer|0 \\(.+\\) or positive|at least "
                                            f"{low + 1}), got {low}$"):
            parse_config(cls, [flag, str(low)])
        parse_config(cls, [flag, str(f.metadata["minimum"])])  # the bound itself is fine


def test_integer_settings_a_user_can_get_wrong_are_bounded():
    """Refused as they are parsed: what the user sees, whatever declares the bound."""
    for name in ("epochs", "batch_size", "eval_every", "patience", "grad_accum", "keep_checkpoints", "timeout",
                 "checkpoint_every", "threads", "chunk_rows"):
        with pytest.raises(UserError, match=f"^{flag_name(name)} must be .*, got -1$"):
            parse_config(TrainConfig, [flag_name(name), "-1"])


@pytest.mark.parametrize("cls", [TrainConfig, MakeDataConfig])
@pytest.mark.parametrize("seed", [-5, 2**32])
def test_a_seed_the_generators_refuse_is_refused_as_it_is_parsed(cls, seed):
    """numpy's generator took -5 with a traceback of its own (make_data.py)."""
    with pytest.raises(UserError, match=rf"^--seed must lie in \[0, 2\*\*32\), got {seed}$"):
        parse_config(cls, ["--seed", str(seed)])
    assert parse_config(cls, ["--seed", str(2**32 - 1)]).seed == 2**32 - 1



def test_threads_past_any_machines_cores_are_refused_as_they_are_parsed():
    """100,000 crashed libgomp (a segfault); 20,000 ended in its own line; 5,000 crawled."""
    from common.config import MAX_THREADS

    with pytest.raises(UserError, match=f"^--threads must be at most {MAX_THREADS}, got 100000$"):
        parse_config(TrainConfig, ["--threads", "100000"])
    assert parse_config(TrainConfig, ["--threads", str(MAX_THREADS)]).threads == MAX_THREADS


@pytest.mark.parametrize("cls", [MakeDataConfig, InferConfig])
@pytest.mark.parametrize("sep", ["ab", ""])
def test_a_delimiter_of_other_than_one_character_is_refused_as_it_is_parsed(cls, sep):
    """csv's reader ended in a TypeError traceback for 'ab'; '' passed unnoticed."""
    with pytest.raises(UserError, match=rf"^--sep must be one character .*, got '{sep}'$"):
        parse_config(cls, ["--sep", sep])
    assert parse_config(cls, ["--sep", "\t"]).sep == "\t"
