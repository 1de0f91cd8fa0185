"""The run folder (--ckpt-dir, common/train/run_folder.py): what a run writes there (metrics.jsonl,
TensorBoard logs through Accelerate's trackers, the progress bar on the console), and an earlier
run left as it was when a new one cannot start or cannot finish."""
import pytest
from builders import read_metrics, train, user_error

import train as train_script


def test_tensorboard_gets_every_evaluation(small_cls, tmp_path, capsys):
    pytest.importorskip("tensorboard")  # in requirements.txt; skipped only where it was left out
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train("--data", small_cls, "--ckpt-dir", tmp_path, "--epochs", "5", "--eval-every", "2",
          "--log-with", "tensorboard")
    out = capsys.readouterr().out
    events = EventAccumulator(str(tmp_path / "logs"))
    events.Reload()
    records = read_metrics(tmp_path)
    accuracy = events.Scalars("accuracy")
    assert [e.step for e in accuracy] == [r["epoch"] for r in records] == [0, 2, 4]
    assert [round(e.value, 5) for e in accuracy] == [round(r["accuracy"], 5) for r in records]
    assert "test_loss" in events.Tags()["scalars"]
    assert "epoch 5/5" in out and "loss" in out and "left" in out


@pytest.mark.parametrize("flag,value", [("--epochs", "0"), ("--batch-size", "-3"), ("--hidden", "0")])
def test_non_positive_settings_leave_an_earlier_run_alone(small_cls, tmp_path, flag, value):
    for name in ("model.safetensors", "config.json", "metrics.jsonl"):
        (tmp_path / name).write_text("an earlier run's")
    message = user_error(train_script.main, "--data", small_cls, "--ckpt-dir", tmp_path, flag, value)
    assert flag in message and "positive" in message
    for name in ("model.safetensors", "config.json", "metrics.jsonl"):
        assert (tmp_path / name).read_text() == "an earlier run's"
