"""Benchmark section 0, whole processes (run through bench/bench.py): what a user waits for when
each command starts the interpreter afresh.

- start-up: `python train.py --epochs 1` on the recipe's data set, wall time (median of 3), and
  the seconds its imports take (`-X importtime`, each module's own time summed);
- per epoch with start-up removed: the recipe run with E and E + EXTRA_EPOCHS epochs (train.py's
  E long enough that its picture process never holds up the end), the
  difference over EXTRA_EPOCHS, for train.py, for the seed's own loop (its classification recipe
  as written: DataLoader, Adam, loss.item() per step, evaluation every 5 epochs) and for
  scikit-learn's MLPClassifier on the same data, each a fresh process.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BASE_EPOCHS, EXTRA_EPOCHS = 2, 20
# train.py draws its pictures in a process started with the run (importing matplotlib, ~0.7 s):
# a run shorter than that waits for it, a longer one does not. Both of its runs are longer.
OURS_BASE_EPOCHS = 40

# The seed's classification recipe (steps 1-4), its epochs from the command line; its metrics
# every 5 epochs through scikit-learn, as it prints them.
SEED_LOOP = """
import sys
import torch, torch.nn as nn, torch.nn.functional as F
from sklearn import datasets, metrics, model_selection
from sklearn.preprocessing import StandardScaler
from torch.utils.data import TensorDataset, DataLoader
X, y = datasets.make_classification(n_samples=100_000, n_features=10, n_informative=5, n_redundant=2,
                                    n_classes=3, n_clusters_per_class=1, flip_y=0.05)
X_train, X_test, y_train, y_test = model_selection.train_test_split(X, y, test_size=0.2)
scaler = StandardScaler()
X_train, X_test = scaler.fit_transform(X_train), scaler.transform(X_test)
class MyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(10, 20), nn.Linear(20, 3)
    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))
net = MyNet()
criterion, optimizer = nn.CrossEntropyLoss(), torch.optim.Adam(net.parameters(), lr=1e-3)
loader = DataLoader(TensorDataset(torch.tensor(X_train, dtype=torch.float32), torch.tensor(y_train)),
                    batch_size=1024, shuffle=True)
X_test_t, y_test_t = torch.tensor(X_test, dtype=torch.float32), torch.tensor(y_test)
for epoch in range(int(sys.argv[1])):
    net.train()
    running, n = 0.0, 0
    for xb, yb in loader:
        optimizer.zero_grad()
        loss = criterion(net(xb), yb)
        loss.backward()
        optimizer.step()
        running += loss.item() * xb.size(0)
        n += xb.size(0)
    if epoch % 5 == 0:
        net.eval()
        with torch.no_grad():
            pred = net(X_test_t).argmax(dim=1).numpy()
        metrics.precision_score(y_test, pred, average="macro", zero_division=0)
        metrics.recall_score(y_test, pred, average="macro", zero_division=0)
"""

SKLEARN_MLP = """
import sys, warnings
from sklearn import datasets, model_selection
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
X, y = datasets.make_classification(n_samples=100_000, n_features=10, n_informative=5, n_redundant=2,
                                    n_classes=3, n_clusters_per_class=1, flip_y=0.05)
X_train, X_test, y_train, y_test = model_selection.train_test_split(X, y, test_size=0.2)
X_train = StandardScaler().fit_transform(X_train)
epochs = int(sys.argv[1])
clf = MLPClassifier(hidden_layer_sizes=(20,), batch_size=1024, max_iter=epochs, n_iter_no_change=epochs + 1, tol=0.0)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    clf.fit(X_train, y_train)
"""


def wall(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


# What a run that does not compile must never import: torch's compiler stack (with sympy).
COMPILER_MODULES = ("torch._dynamo", "torch._inductor")


def imports(cmd: list[str], cwd: Path) -> tuple[float, set[str]]:
    """From `-X importtime` (microseconds on stderr): each imported module's own time summed, and
    the modules' names."""
    done = subprocess.run([sys.executable, "-X", "importtime", *cmd], cwd=cwd, check=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rows = [line.removeprefix("import time:").split("|") for line in done.stderr.splitlines()
            if line.startswith("import time:")]
    timed = [(int(own), name.strip()) for own, _, name in rows if own.strip().isdigit()]
    return sum(own for own, _ in timed) / 1e6, {name for _, name in timed}


def per_epoch(run: Any, base: int = BASE_EPOCHS, pairs: int = 1) -> float:
    """Seconds per epoch, start-up removed: two runs that differ only in epochs (the median over
    `pairs` such pairs, where the epochs are short beside the start-up's noise)."""
    return statistics.median((run(base + EXTRA_EPOCHS) - run(base)) / EXTRA_EPOCHS for _ in range(pairs))


def whole_processes(tmp: Path) -> dict[str, Any]:
    python = sys.executable
    data = tmp / "processes"
    subprocess.run([python, "make_data.py", "--out-dir", str(data)], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    recipe = ["train.py", "--data", str(data / "cls_data"), "--ckpt-dir", str(tmp / "processes_run")]
    for path, text in (("seed_loop.py", SEED_LOOP), ("sklearn_mlp.py", SKLEARN_MLP)):
        (tmp / path).write_text(text)
    import_s, modules = imports([*recipe, "--epochs", "1"], ROOT)
    return {
        "train_epochs_1_s": statistics.median(wall([python, *recipe, "--epochs", "1"], ROOT) for _ in range(3)),
        "train_imports_s": import_s,
        "compiler_imported": any(name in modules for name in COMPILER_MODULES),
        # train.py's 20 extra epochs take about as long as its start-up varies (±0.3 s): five pairs.
        "ours_epoch_s": per_epoch(lambda e: wall([python, *recipe, "--epochs", str(e)], ROOT), OURS_BASE_EPOCHS, 5),
        "seed_epoch_s": per_epoch(lambda e: wall([python, str(tmp / "seed_loop.py"), str(e)], ROOT)),
        "sklearn_epoch_s": per_epoch(lambda e: wall([python, str(tmp / "sklearn_mlp.py"), str(e)], ROOT)),
    }


def report(result: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    t = Table(title=f"0. whole processes, the classification recipe (per epoch: {BASE_EPOCHS} against "
                    f"{BASE_EPOCHS + EXTRA_EPOCHS} epochs, train.py's {OURS_BASE_EPOCHS} against "
                    f"{OURS_BASE_EPOCHS + EXTRA_EPOCHS}; start-up removed)", title_justify="left")
    for col in ("figure", "seconds", "ours / this"):
        t.add_column(col, justify="right")
    t.add_row("python train.py --epochs 1, wall (median of 3)", f"{result['train_epochs_1_s']:.2f}", "")
    t.add_row("  of which imports (-X importtime)", f"{result['train_imports_s']:.2f}", "")
    t.add_row("  torch's compiler stack imported", "yes" if result["compiler_imported"] else "no", "")
    ours = result["ours_epoch_s"]
    for name, key in (("train.py, per epoch", "ours_epoch_s"), ("the seed's loop, per epoch", "seed_epoch_s"),
                      ("scikit-learn MLPClassifier, per epoch", "sklearn_epoch_s")):
        t.add_row(name, f"{result[key]:.4f}", f"{ours / result[key]:.3f}")
    console.print(t)
