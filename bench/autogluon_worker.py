"""AutoGluon on one of bench/quality.py's splits, run by the interpreter of a virtual environment
of its own (AutoGluon's requirements are not the suite's):

    python -m venv ~/agvenv
    ~/agvenv/bin/pip install "autogluon.tabular[lightgbm,catboost,xgboost]==1.6.3" torch==2.13.0
    python bench/quality.py --autogluon-python ~/agvenv/bin/python

Reads FOLDER/train.csv and FOLDER/heldout.csv, fits `TabularPredictor(label=TARGET,
eval_metric=...)` with its default preset (medium_quality) and a wall-clock limit, writes the
held-out predictions to FOLDER/autogluon.csv and prints the seconds.

    python bench/autogluon_worker.py FOLDER TARGET TASK TIME_LIMIT_S
"""
from __future__ import annotations

import sys
import tempfile
import time


def main(folder: str, target: str, task: str, time_limit: str) -> None:
    import pandas as pd
    from autogluon.tabular import TabularPredictor

    train = pd.read_csv(f"{folder}/train.csv")
    held = pd.read_csv(f"{folder}/heldout.csv")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as models:
        # The benchmark's task, not AutoGluon's guess: a count of goals is a regression here.
        predictor = TabularPredictor(label=target, eval_metric="f1_macro" if task == "classification" else "r2",
                                     problem_type=None if task == "classification" else "regression",
                                     path=models, verbosity=0)
        predictor.fit(train, time_limit=float(time_limit))
        pd.DataFrame({"prediction": predictor.predict(held)}).to_csv(f"{folder}/autogluon.csv", index=False)
    print(time.perf_counter() - start)


if __name__ == "__main__":
    main(*sys.argv[1:5])
