"""bf16 mixed precision from the accelerate config, on the CPU."""
import json

from conftest import launch, read_metrics


def test_bf16_on_cpu_reaches_fp32_accuracy(recipe_cls, tmp_path):
    args = ["--data", str(recipe_cls), "--epochs", "4", "--eval-every", "4"]
    launch("cpu", *args, "--ckpt-dir", str(tmp_path / "fp32"))
    launch("cpu_bf16", *args, "--ckpt-dir", str(tmp_path / "bf16"))
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["mixed_precision"] == "bf16"
    fp32, bf16 = read_metrics(tmp_path / "fp32")[-1], read_metrics(tmp_path / "bf16")[-1]
    assert bf16["accuracy"] >= 0.9
    assert abs(bf16["accuracy"] - fp32["accuracy"]) <= 0.01
    assert bf16["test_loss"] != fp32["test_loss"]  # autocast did change the arithmetic
