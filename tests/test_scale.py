"""Data larger than memory: memory-mapped data sets, chunked gathering, bounded evaluation."""
import json

import numpy as np
import pytest
import torch

from common import batching
from common.dataset import load_dataset
from conftest import train


def weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("shuffle", ["rows", "blocks"])
def test_chunked_gathering_gives_the_weights_of_one_gather_per_epoch(small_val, tmp_path, shuffle):
    """Chunks bound memory only: a chunk of 37 rows trains bit for bit like the whole split at once."""
    args = ["--data", small_val, "--epochs", "2", "--batch-size", "64", "--shuffle", shuffle]
    train(*args, "--ckpt-dir", tmp_path / "whole")
    train(*args, "--ckpt-dir", tmp_path / "chunked", "--chunk-rows", "37")
    whole, chunked = weights(tmp_path / "whole"), weights(tmp_path / "chunked")
    assert all(torch.equal(whole[k], chunked[k]) for k in whole)
    config = json.loads((tmp_path / "chunked" / "config.json").read_text())
    assert config["training"]["shuffle"] == shuffle and config["training"]["chunk_rows"] == 37


def test_the_data_set_is_memory_mapped_not_read(small_cls):
    data = load_dataset(small_cls)
    for name in ("X_train", "y_train", "X_val", "X_test"):
        assert isinstance(getattr(data, name), np.memmap)
        assert not getattr(data, name).flags.writeable  # a run can never change its data


def test_auto_shuffle_switches_to_blocks_above_the_threshold(small_cls, tmp_path, monkeypatch):
    monkeypatch.setattr(batching, "ROW_SHUFFLE_MAX", 1000)
    train("--data", small_cls, "--ckpt-dir", tmp_path, "--epochs", "1")
    assert json.loads((tmp_path / "config.json").read_text())["training"]["shuffle"] == "blocks"


def test_evaluation_reads_in_chunks_and_counts_every_row(small_cls, tmp_path, monkeypatch):
    from common import loop

    monkeypatch.setattr(loop, "EVAL_CHUNK", 100)
    train("--data", small_cls, "--ckpt-dir", tmp_path, "--epochs", "1")
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["test_n"] == len(load_dataset(small_cls).y_test) > 100
