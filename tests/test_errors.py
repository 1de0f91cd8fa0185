"""Bad input: one line naming the problem and the fix, a non-zero exit, no traceback."""
import pytest

from conftest import assert_user_error, run_script


def test_missing_data_file(tmp_path):
    proc = run_script("train.py", "--data", str(tmp_path / "nope.npz"), "--ckpt-dir", str(tmp_path), check=False)
    assert_user_error(proc, "not found", "make_data.py")


@pytest.mark.parametrize("flag", ["--epochs", "--batch-size"])
@pytest.mark.parametrize("value", ["0", "-3"])
def test_non_positive_settings(small_cls, tmp_path, flag, value):
    for name in ("model.safetensors", "config.json", "metrics.jsonl"):
        (tmp_path / name).write_text("an earlier run's")
    proc = run_script("train.py", "--data", str(small_cls), "--ckpt-dir", str(tmp_path), flag, value, check=False)
    assert_user_error(proc, flag, "positive")
    for name in ("model.safetensors", "config.json", "metrics.jsonl"):
        assert (tmp_path / name).read_text() == "an earlier run's"


def test_infer_without_a_model(tmp_path):
    proc = run_script("infer.py", "--ckpt-dir", str(tmp_path), check=False)
    assert_user_error(proc, "config.json", "not found")


def test_data_of_another_task(small_cls, reg_data, tmp_path):
    run_script("train.py", "--data", str(reg_data), "--ckpt-dir", str(tmp_path), "--epochs", "1")
    before = (tmp_path / "model.safetensors").read_bytes()
    proc = run_script("infer.py", "--ckpt-dir", str(tmp_path), "--data", str(small_cls), check=False)
    assert_user_error(proc, "classification", "regression")
    assert (tmp_path / "model.safetensors").read_bytes() == before


def test_corrupted_weights(small_cls, tmp_path):
    run_script("train.py", "--data", str(small_cls), "--ckpt-dir", str(tmp_path), "--epochs", "1")
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 40)
    assert_user_error(run_script("infer.py", "--ckpt-dir", str(tmp_path), check=False), "unreadable")


def test_prediction_input_lacking_a_feature(small_cls, tmp_path):
    run_script("train.py", "--data", str(small_cls), "--ckpt-dir", str(tmp_path), "--epochs", "1")
    (tmp_path / "rows.csv").write_text("x0,x1\n1,2\n")
    proc = run_script("infer.py", "--ckpt-dir", str(tmp_path), "--input", str(tmp_path / "rows.csv"), check=False)
    assert_user_error(proc, "x2")


def test_non_numeric_prediction_input(small_cls, tmp_path):
    run_script("train.py", "--data", str(small_cls), "--ckpt-dir", str(tmp_path), "--epochs", "1")
    header = ",".join(f"x{i}" for i in range(10))
    (tmp_path / "rows.csv").write_text(f"{header}\n{','.join(['1'] * 10)}\n{','.join(['1'] * 9)},abc\n")
    proc = run_script("infer.py", "--ckpt-dir", str(tmp_path), "--input", str(tmp_path / "rows.csv"), check=False)
    assert_user_error(proc, "x9", "row 2")
