"""bf16 mixed precision from the accelerate config, on the CPU."""
from builders import launch, read_config, read_metrics


def test_bf16_on_cpu_reaches_fp32_accuracy(cls_run, recipe_cls, tmp_path):
    """The same 5 epochs as the fp32 run of cls_run (6 epochs, evaluated at 0, 2, 4, 5)."""
    launch("cpu_bf16", "--data", str(recipe_cls), "--ckpt-dir", str(tmp_path), "--epochs", "5", "--eval-every", "2")
    assert read_config(tmp_path)["mixed_precision"] == "bf16"
    fp32 = {r["epoch"]: r for r in read_metrics(cls_run[0])}[4]
    bf16 = read_metrics(tmp_path)[-1]
    assert bf16["epoch"] == 4 and bf16["accuracy"] >= 0.9
    assert abs(bf16["accuracy"] - fp32["accuracy"]) <= 0.01
    assert bf16["test_loss"] != fp32["test_loss"]  # autocast did change the arithmetic
