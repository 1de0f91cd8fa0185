"""The run record (config.json, common/train/run_record.py): the device a run trained on, spelled one
way."""
from __future__ import annotations

import pytest
import torch

from builders import read_config
from common.train.run_record import device_name


@pytest.mark.parametrize("device,name", [("cpu", "cpu"), ("cpu:0", "cpu"), (torch.device("cpu", 1), "cpu"),
                                         ("cuda:1", "cuda:1"), ("cuda", "cuda"), ("mps", "mps")])
def test_one_spelling_of_the_device(device, name):
    assert device_name(device) == name


def test_the_record_says_cpu(small_model):
    assert read_config(small_model)["device"] == "cpu"
