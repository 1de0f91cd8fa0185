"""LightGBM as a user runs it, one fresh process beside the three commands (bench/quality.py
--timing): read train.csv, fit with its defaults (text columns as pandas `category`, the
training rows' levels), predict heldout.csv, write its predictions to lightgbm_preds.csv.

    python bench/lightgbm_process.py FOLDER TARGET classification|regression

pandas and lightgbm are benchmark-only extras (bench/requirements.txt). The few lines of
bench/quality.py's baseline it repeats are repeated so that the process imports what a user's
script would, and nothing of the benchmark.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    folder, target, task = argv if argv is not None else sys.argv[1:]
    import lightgbm
    import pandas as pd
    from pandas.api.types import is_numeric_dtype

    train, held = pd.read_csv(f"{folder}/train.csv"), pd.read_csv(f"{folder}/heldout.csv")
    y = train.pop(target)
    for column in train.columns:
        if not is_numeric_dtype(train[column]):
            levels = pd.CategoricalDtype(sorted(train[column].dropna().unique()))
            train[column], held[column] = train[column].astype(levels), held[column].astype(levels)
    model = (lightgbm.LGBMClassifier if task == "classification" else lightgbm.LGBMRegressor)(verbose=-1)
    model.fit(train, y)
    pd.DataFrame({"prediction": model.predict(held)}).to_csv(f"{folder}/lightgbm_preds.csv", index=False)


if __name__ == "__main__":
    main()
