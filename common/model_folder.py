"""The model folder that train.py writes and infer.py reads: file names and the conventions
the weights and config.json share. No torch and no data code: both sides import it."""
from __future__ import annotations

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
# A categorical column's code for a level unseen in training (or too rare to learn): its
# embedding row starts at zero, so such a level adds nothing the model did not learn.
UNKNOWN_CODE = 0
