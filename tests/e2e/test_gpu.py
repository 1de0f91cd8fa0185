"""GPU runs: skipped on machines without CUDA (CI has none)."""
import json

import pytest
import torch

from builders import launch, read_metrics

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("config,extra", [("single_gpu", ()), ("multi_gpu_bf16", ("--num_processes", "1"))])
def test_gpu_configs_train_the_recipe(recipe_cls, tmp_path, config, extra):
    launch(config, "--data", str(recipe_cls), "--ckpt-dir", str(tmp_path), "--epochs", "6", launcher_args=extra)
    assert json.loads((tmp_path / "config.json").read_text())["device"].startswith("cuda")
    assert read_metrics(tmp_path)[-1]["accuracy"] >= 0.9
