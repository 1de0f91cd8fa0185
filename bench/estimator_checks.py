"""scikit-learn's `check_estimator` on TabularClassifier and TabularRegressor: which checks pass,
which fail and why (bench/README.md keeps the answer). A few minutes on 2 cores: every check fits
the estimator, here with 2 epochs and 2 folds to keep it short; a check that fails that way is
run again with the default settings (the quality checks want a trained model).

    python bench/estimator_checks.py
"""
from __future__ import annotations

import contextlib
import io
import json
import sys
import warnings
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run() -> dict:
    from sklearn.utils.estimator_checks import check_estimator

    from common.api import TabularClassifier, TabularRegressor

    found = {}
    for estimator in (TabularClassifier(epochs=2, folds=2), TabularRegressor(epochs=2, folds=2)):
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            results = check_estimator(estimator, on_fail=None, on_skip=None)
        found[type(estimator).__name__] = [
            {"check": r["check_name"], "status": again(r["check_name"], type(estimator)) if r["status"] == "failed"
             else r["status"], "why": (str(r["exception"]).splitlines() or [""])[0][:200] if r["exception"] else ""}
            for r in results]
    return found


def again(check: str, kind: type) -> str:
    """A check that failed at 2 epochs, with the default settings: "passed with defaults" or "failed"."""
    from sklearn.utils import estimator_checks

    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            getattr(estimator_checks, check)(kind.__name__, kind())
    except Exception:
        return "failed"
    return "passed with defaults"


def report(found: dict) -> None:
    for name, results in found.items():
        counts = Counter(r["status"] for r in results)
        print(f"{name}: {dict(counts)}")
        for r in results:
            if r["status"] != "passed":
                print(f"  {r['status']}: {r['check']}: {r['why']}")


if __name__ == "__main__":
    results = run()
    report(results)
    (ROOT / "bench" / "out").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "out" / "estimator_checks.json").write_text(json.dumps(results, indent=2) + "\n")
