"""Data sets on disk: the folder that make_data.py writes and train.py and infer.py read.

A data set is a folder `<out-dir>/<stem>/` holding one uncompressed `.npy` file per array
(X_train, y_train, X_val, y_val, X_test, y_test: the model's inputs, already preprocessed) and
`dataset.json`: the task, input names, class labels, the fitted preprocessing steps
and the target's modelling (common/steps.py); its schema is common/data/description.py.
The JSON is what training and inference need to know, readable without pickle. The arrays are
memory-mapped, never read whole: a process touches only the rows it gathers, and every process
on a machine shares one page-cached copy. Reading a data set needs numpy only (neither
scikit-learn nor pyarrow).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from common.data.description import DatasetDescription
from common.data.roles import ColumnRole
from common.errors import ProcessError, UserError
from common.files import atomic_folder, map_npy, read_json, repair_interrupted_swap, write_json_file
from common.steps import Preprocessor, TargetStep

DATASET_FILE = "dataset.json"
SPLITS = ("train", "val", "test")
ARRAYS = tuple(f"{a}_{s}" for s in SPLITS for a in "Xy")
TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq")


@dataclasses.dataclass
class TabularData:
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    description: DatasetDescription
    X_val: np.ndarray | None = None  # None: no validation rows
    y_val: np.ndarray | None = None
    identity: str = "in memory"       # of its content: the arrays and the parsed description (load_dataset)

    def __post_init__(self) -> None:
        if self.X_val is None or self.y_val is None:
            self.X_val, self.y_val = self.X_train[:0], self.y_train[:0]

    @property
    def task(self) -> str:
        return self.description.task

    @property
    def num_outputs(self) -> int:
        """Classes for classification, target columns for regression: the model's output width."""
        if self.task == "classification":
            return len(self.description.class_labels or [])
        return self.y_train.shape[1]

    @property
    def preprocessor(self) -> Preprocessor:
        return self.description.preprocess

    @property
    def is_recipe(self) -> bool:
        """The seed's synthetic data: trained with the recipe's exact settings."""
        return self.description.is_recipe

    @property
    def n_val(self) -> int:
        return 0 if self.X_val is None else len(self.X_val)

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        return getattr(self, f"X_{name}"), getattr(self, f"y_{name}")


def dataset_meta(task: str, pre: Preprocessor, class_labels: list[Any] | None, target: TargetStep | None,
                 sizes: dict[str, int], roles: list[ColumnRole], source: dict[str, Any]) -> DatasetDescription:
    """dataset.json: what training and inference need to know of a data set, and where it came from."""
    return DatasetDescription(task, class_labels, pre, target, int(sizes["train"]), int(sizes["val"]),
                              int(sizes["test"]), list(roles), source)


FINGERPRINT_CHUNKS, FINGERPRINT_CHUNK = 16, 1 << 20


def content_identity(path: str | Path, meta: dict[str, Any]) -> str:
    """What makes a data set the same data: its arrays (size and 16 sampled 1 MiB pieces each)
    and its parsed description (`meta`: the JSON as read, not the schema's rewrite of it, so that
    the identity a checkpoint recorded holds for a file any version wrote). Not its path, not
    other files in its folder, not how its JSON is laid out: a moved folder, a scratch copy or a
    re-indented dataset.json is the same data."""
    import hashlib
    import json

    path = Path(path)
    digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for file in sorted(p for p in path.iterdir() if p.is_file() and p.name != DATASET_FILE
                       and is_dataset_file(p.name)):
        digest.update(f"{file.name}:{file.stat().st_size}".encode())
        _hash_sampled_bytes(file, digest)
    return digest.hexdigest()[:16]


def _hash_sampled_bytes(path: Path, digest: Any) -> None:
    size = path.stat().st_size
    with open(path, "rb") as fh:
        if size <= FINGERPRINT_CHUNKS * FINGERPRINT_CHUNK:
            digest.update(fh.read())
        else:
            for i in range(FINGERPRINT_CHUNKS):
                fh.seek(i * (size - FINGERPRINT_CHUNK) // (FINGERPRINT_CHUNKS - 1))
                digest.update(fh.read(FINGERPRINT_CHUNK))


def meta_path(folder: str | Path) -> Path:
    """The description of a data set folder."""
    return Path(folder) / DATASET_FILE


def dataset_folder(out_dir: str | Path, stem: str) -> Path:
    return Path(out_dir) / stem


def recorded_source(folder: str | Path) -> str | None:
    """The table a data set folder was made from, as its dataset.json records it (an absolute
    path, or how a table given in memory was described); None where the folder holds no data set
    that can be read."""
    if not meta_path(folder).is_file():
        return None
    try:
        source = read_description(folder)[0].source.get("csv")
    except UserError:  # damaged or of another version: whatever it was, it is not this table
        return None
    return source if isinstance(source, str) else None


def is_dataset_file(name: str) -> bool:
    """The files a data set folder holds (what atomic_folder may replace)."""
    return name == DATASET_FILE or name in {f"{a}.npy" for a in ARRAYS} or name in {f"rows_{s}.npy" for s in SPLITS}


def save_dataset(data: TabularData, folder: str | Path) -> None:
    """Every array as its own .npy file, and the JSON, swapped in together (atomic_folder)."""
    with atomic_folder(folder, is_dataset_file) as stage:
        for name in ARRAYS:
            np.save(stage / f"{name}.npy", np.ascontiguousarray(getattr(data, name)), allow_pickle=False)
        write_json_file(stage / DATASET_FILE, data.description.to_json())


def read_description(path: str | Path) -> tuple[DatasetDescription, dict[str, Any]]:
    """A data set's description, checked, and the JSON it was read from (what content_identity hashes)."""
    raw = read_json(meta_path(path), "data set description")
    return DatasetDescription.read(raw, meta_path(path)), raw


def load_dataset(path: str | Path) -> TabularData:
    path = Path(path)
    repair_interrupted_swap(path)  # a make_data.py killed mid-swap left the earlier data set hidden
    if path.suffix.lower() in TABLE_SUFFIXES:
        raise UserError(f"{path} is a table, not a data set: run `python make_data.py --csv {path} "
                        "--target COLUMN` first and pass the folder it writes")
    if path.is_dir():
        if not (path / DATASET_FILE).exists() and (path / "config.json").is_file():  # common/model_folder.CONFIG_FILE
            raise UserError(f"{path} is a model folder (train.py's), not a data set: pass the folder make_data.py "
                            "wrote")
        description, meta = read_description(path)
        arrays = {name: map_npy(path / f"{name}.npy") for name in ARRAYS}
    elif path.suffix.lower() == ".npz" and path.is_file():
        raise UserError(f"{path} is a data set of an older version's single-file form: remake it with make_data.py")
    elif path.suffix.lower() == ".npz" and path.with_suffix("").is_dir():
        raise UserError(f"data set {path} not found: make_data.py writes a folder, pass --data {path.with_suffix('')}")
    else:
        raise UserError(f"data set {path} not found: run make_data.py first, or pass --data the folder it wrote")
    data = TabularData(arrays["X_train"], arrays["y_train"], arrays["X_test"], arrays["y_test"], description,
                       arrays["X_val"], arrays["y_val"], content_identity(path, meta))
    check_dataset(data, path)
    return data


def check_dataset(data: TabularData, path: str | Path) -> None:
    """The arrays agree with the description: width, lengths (those dataset.json records, and the
    source rows of a table's splits), and targets of the task's kind (class codes for
    classification, float columns for regression)."""
    width = len(data.description.feature_names)
    for split in SPLITS:
        X, y = data.split(split)
        if X.ndim != 2 or X.shape[1] != width:
            raise UserError(f"{path}: X_{split} has shape {X.shape}, expected (rows, {width}): regenerate the data set")
        if X.dtype != np.float32:  # what make_data.py writes, and the only kind the model multiplies
            raise UserError(f"{path}: X_{split} holds {X.dtype}, not float32: regenerate the data set with "
                            "make_data.py")
        if len(X) != len(y):
            raise UserError(f"{path}: features and targets of the {split} split differ in length: "
                            "regenerate the data set")
        recorded = getattr(data.description, f"n_{split}")
        if len(X) != recorded:
            raise UserError(f"{path}: X_{split}.npy holds {len(X)} rows but {DATASET_FILE} says {recorded}: "
                            "regenerate the data set with make_data.py")
        rows = Path(path) / f"rows_{split}.npy"  # a table's source row of each data set row
        if rows.exists() and len(map_npy(rows)) != len(X):
            raise UserError(f"{path}: {rows.name} holds {len(map_npy(rows))} rows but X_{split}.npy {len(X)}: "
                            "regenerate the data set with make_data.py")
        problem = target_problem(y, data.task)
        if problem:
            raise UserError(f"{path}: y_{split} {problem} but {meta_path(path)} says {data.task}: "
                            "regenerate the data set with make_data.py")
    if len(data.X_train) == 0:
        raise UserError(f"{path}: the training split is empty: use more rows")


def target_problem(y: np.ndarray, task: str) -> str | None:
    """What is wrong with targets for the task, as make_data.py writes them: class codes as int64,
    target columns as float32 (what the losses take)."""
    if task == "classification" and (y.ndim != 1 or y.dtype != np.int64):
        return f"holds {y.dtype} of shape {y.shape}, not class codes"
    if task == "regression" and (y.ndim != 2 or y.shape[1] != 1 or y.dtype != np.float32):
        return f"holds {y.dtype} of shape {y.shape}, not one float32 target column"
    return None


@dataclasses.dataclass(frozen=True)
class RowCheck:
    """What the rows of a data set must hold, checked on each block as it is read (not in a pass
    of its own over a split that may be larger than memory): finite inputs, and class ids among
    the labels (finite targets for regression). A data set damaged after make_data.py wrote it
    is one line, not NaN losses or an index error deep in the loss."""
    where: str             # e.g. "the train split of data/cls_data"
    num_classes: int = 0   # 0: regression

    def __call__(self, X: np.ndarray, y: np.ndarray) -> None:
        if not np.isfinite(X).all():
            self._fail("NaN or infinite inputs")
        if self.num_classes and len(y) and (y.min() < 0 or y.max() >= self.num_classes):
            self._fail(f"class ids outside 0..{self.num_classes - 1}, the labels it describes")
        if not self.num_classes and not np.isfinite(y).all():
            self._fail("NaN or infinite targets")

    def _fail(self, what: str) -> None:
        raise ProcessError(f"{self.where} holds {what}: regenerate the data set with make_data.py")
