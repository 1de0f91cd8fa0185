"""TensorBoard logging through Accelerate's trackers, and the console's progress bar."""
import pytest
from builders import read_metrics, train


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
