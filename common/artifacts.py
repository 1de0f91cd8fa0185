"""Everything that touches file formats: JSON, npz and safetensors, written atomically.

A write goes to a temporary file in the same folder and is renamed over the target,
so a crash mid-write leaves the previous good file in place, never half a file.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

if TYPE_CHECKING:
    import torch

from common.errors import UserError

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success, fsync and rename it over `target`."""
    final = Path(target)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a model folder is meant to be shared
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")


def read_json(path: str | os.PathLike, what: str) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} not found: check the path")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{what} {path} is not valid JSON ({err}): regenerate it") from None


def append_jsonl(path: str | os.PathLike, record: dict[str, Any]) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def truncate_metrics(path: str | os.PathLike, last_epoch: int) -> None:
    """Keep the records up to `last_epoch`: a resumed run writes the later ones again, once."""
    path = Path(path)
    lines = path.read_text().splitlines() if path.is_file() else []
    kept = [line for line in lines if line.strip() and json.loads(line)["epoch"] <= last_epoch]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in kept))


def save_weights(path: str | os.PathLike, state_dict: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file  # torch is imported where weights are, not by make_data.py

    # contiguous() + clone(): safetensors refuses views and tensors that share memory.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise UserError(f"model weights {path} not found: train a model first or pass --ckpt-dir")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise UserError(f"model weights {path} are unreadable ({err}): retrain or restore the file") from None


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    # Uncompressed: float features barely compress, and compressing a million rows takes seconds.
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **cast(dict[str, Any], arrays))  # numpy's stubs type **kwds as options


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"data file {path} not found: run make_data.py first or pass --data")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError) as err:
        raise UserError(f"data file {path} is unreadable ({err}): regenerate it with make_data.py") from None
