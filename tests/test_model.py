"""The network (common/model.py): built from a plain description, the ensemble of members and the
categorical embeddings, and weights that fit it or are refused in one line."""
import dataclasses

import pytest
import torch

import train as train_script
from builders import train, train_args, user_error
from common.data.preprocess import embedding_size
from common.errors import UserError
from common.files import atomic_path, load_weights, write_weights_file
from common.model import EnsembleNet, ModelSpec, TabularNet, build_model, combine_members, load_state


def test_recipe_mlp_shape():
    model = build_model(ModelSpec(10, (20,), 3, "relu"))
    assert [tuple(p.shape) for p in model.parameters()] == [(20, 10), (20,), (3, 20), (3,)]
    assert isinstance(model[1], torch.nn.ReLU)


def test_no_hidden_layer_is_a_linear_model():
    model = build_model(ModelSpec(5, (), 1, "relu"))
    assert len(model) == 1 and isinstance(model[0], torch.nn.Linear)


def save_weights(path, state_dict):
    with atomic_path(path) as tmp:
        write_weights_file(tmp, state_dict)


def test_safetensors_reload_predicts_like_the_model_in_memory(tmp_path):
    torch.manual_seed(0)
    spec = ModelSpec(10, (16, 8), 3, "gelu")
    model = build_model(spec)
    save_weights(tmp_path / "m.safetensors", model.state_dict())
    clone = build_model(spec)
    load_state(clone, load_weights(tmp_path / "m.safetensors"), "m")
    x = torch.randn(64, 10)
    assert torch.equal(model(x), clone(x))


def test_weights_of_another_shape_are_a_user_error(tmp_path):
    save_weights(tmp_path / "m.safetensors", build_model(ModelSpec(10, (20,), 3, "relu")).state_dict())
    with pytest.raises(UserError, match="do not match"):
        load_state(build_model(ModelSpec(10, (21,), 3, "relu")), load_weights(tmp_path / "m.safetensors"), "m")


def test_truncated_weights_are_a_user_error(tmp_path):
    path = tmp_path / "m.safetensors"
    save_weights(path, build_model(ModelSpec(4, (), 1, "relu")).state_dict())
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(UserError, match="unreadable"):
        load_weights(path)


def test_the_ensemble_averages_probabilities_and_each_member_trains_apart():
    spec = ModelSpec(3, (8,), 4, "relu", ((5, 2),), members=3, periodic=(4, 2))
    model = build_model(spec)
    assert isinstance(model, EnsembleNet)
    x = torch.tensor([[0.1, -2.0, 1.0, 3.0], [0.0, 0.5, -1.0, 0.0]])
    out = model(x)
    assert out.shape == (2, 3, 4)
    combined = combine_members(out, "classification")
    torch.testing.assert_close(combined.softmax(-1), out.softmax(-1).mean(1))
    torch.testing.assert_close(combine_members(out, "regression"), out.mean(1))
    torch.testing.assert_close(combine_members(out, "regression", log_link=True).exp(), out.exp().mean(1))
    assert not torch.allclose(out[:, 0], out[:, 1])  # members start apart
    torch.testing.assert_close(model(x, member=1)[:, 0], out[:, 1])  # one member alone: scoring out of fold
    # A member's loss reaches its own weights only.
    out[:, 1].sum().backward()
    assert model.weights[0].grad[0].abs().sum() == 0 and model.weights[0].grad[1].abs().sum() > 0


def test_the_model_embeds_categories_and_stays_a_plain_mlp_without_them():
    spec = ModelSpec(2, (8,), 2, "relu", categorical=((5, 3), (3, 2)))
    model = build_model(spec)
    assert isinstance(model, TabularNet)
    assert tuple(model.mlp[0].weight.shape) == (8, 2 + 3 + 2)
    x = torch.tensor([[0.5, -1.0, 4.0, 0.0], [0.1, 0.2, 1.0, 2.0]])
    assert model(x).shape == (2, 2)
    plain = build_model(dataclasses.replace(spec, categorical=()))
    assert isinstance(plain, torch.nn.Sequential) and list(plain.state_dict()) == ["0.weight", "0.bias",
                                                                                  "2.weight", "2.bias"]
    assert embedding_size(3) == 3 and embedding_size(10_001) == 278


def test_init_weights_of_another_shape_name_the_settings_to_change(small_cls, tmp_path):
    train(*train_args(small_cls, tmp_path / "a", "--epochs", "1", "--hidden", "8"))
    message = user_error(train_script.main, *train_args(small_cls, tmp_path / "b", "--epochs", "1",
                                                        "--init-from", tmp_path / "a" / "model.safetensors"))
    assert "do not match the model (0.weight (20, 10) here, (8, 10) there; 0.bias (20,) here, (8,) there;" in message
    assert "--hidden, --folds and --data" in message and len(message) < 400  # a few tensors, not every shape
    # The folder itself will do, as everywhere else a model is named.
    train(*train_args(small_cls, tmp_path / "c", "--epochs", "1", "--hidden", "8", "--init-from", tmp_path / "a"))
    assert (tmp_path / "c" / "model.safetensors").is_file()


@pytest.mark.parametrize("spec", [
    ModelSpec(10, (20,), 3, "relu"),                                               # the recipe's MLP
    ModelSpec(10, (), 3, "relu", ((5, 3),)),                                       # linear, one embedding
    ModelSpec(5, (8,), 2, "relu", ((50, 8),), members=1, periodic=(16, 3)),
    ModelSpec(10, (32, 32), 3, "relu", ((50, 8), (7, 4)), members=4, periodic=(16, 3)),
])
def test_the_parameter_count_is_the_built_models(spec):
    """What the plan's memory check (run_plan.check_fits) counts before anything is built."""
    assert spec.parameter_count == sum(p.numel() for p in build_model(spec).parameters())


def test_a_shape_mismatch_shows_each_kind_of_difference_among_the_first():
    from common.model import shape_differences

    said = shape_differences({"a": (1,), "b": (2,), "c": (3,), "d": (4,)}, {"a": (9,), "x": (1,), "y": (2,)})
    assert said == "a (1,) here, (9,) there; b missing; x not in the model, and 3 more"


@pytest.mark.parametrize("classes,ulps", [(2, 1), (3, 1), (7, 1), (13, 16)])
def test_class_probabilities_are_a_rows_own_whatever_rows_share_the_call(classes, ulps):
    """The softmax runs along the rows, where torch's kernel treats the last few rows of a call
    apart: a row's probabilities must not depend on which rows came with it, and they are the
    row-wise softmax's to a unit in the last place (up to 8 classes; a few units past them)."""
    import numpy as np

    from common.model import class_probabilities

    out = (np.random.default_rng(classes).standard_normal((3000, classes)) * 5).astype(np.float32)
    whole = class_probabilities(out)
    for rows in (1, 2, 5, 31, 33, 100, 1023):
        for start in (0, 17, len(out) - rows):
            assert np.array_equal(class_probabilities(out[start:start + rows]), whole[start:start + rows])
    rowwise = torch.softmax(torch.from_numpy(out).double(), dim=1).numpy()
    assert np.all(np.abs(whole - rowwise) <= ulps * np.spacing(rowwise))
    assert np.array_equal(whole.argmax(axis=1), rowwise.argmax(axis=1))
