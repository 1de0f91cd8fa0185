"""The scripts as a user runs them, each in a process of its own: exit code 2 and one line on
stderr for a bad input, inference with pickle forbidden, train.py without scikit-learn."""
import json
import os
import subprocess
import sys

import numpy as np

from builders import FORBID_PICKLE, ROOT, assert_user_error, read_csv_rows, run_script, script_env, train

HEADER = "a,b,label\n"


def test_each_script_exits_2_with_one_line(small_cls, tmp_path):
    (tmp_path / "t.csv").write_text(HEADER + "1,2,x\n3,4,y\n")
    # A pandas that says when it is imported: pyarrow, which read the table, would import it (0.4 s).
    (tmp_path / "site" / "pandas").mkdir(parents=True)
    (tmp_path / "site" / "pandas" / "__init__.py").write_text(
        f"open({str(tmp_path / 'pandas_imported')!r}, 'w').close()\nraise ImportError('not the real one')\n")
    env = script_env(PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path / "site"), os.environ.get("PYTHONPATH")])))
    assert_user_error(run_script("make_data.py", "--csv", str(tmp_path / "t.csv"), "--target", "kind", "--out-dir",
                                 str(tmp_path), check=False, env=env), "no target column 'kind'")
    assert not (tmp_path / "pandas_imported").exists()
    assert_user_error(run_script("train.py", "--data", str(small_cls), "--ckpt-dir", str(tmp_path / "run"),
                                 "--epochs", "0", check=False), "--epochs", "positive")
    assert not (tmp_path / "run").exists()
    assert_user_error(run_script("infer.py", "--ckpt-dir", str(tmp_path), check=False), "config.json", "not found")


def test_inference_runs_with_pickle_forbidden_and_without_scikit_learn(small_model, small_cls, tmp_path):
    np.save(tmp_path / "rows.npy", np.ones((3, 10)))
    run = 'runpy.run_path("infer.py", run_name="__main__")'
    code = FORBID_PICKLE.replace(run, f"try:\n    {run}\nfinally:\n    print('sklearn' in sys.modules)")
    for args in (["--metrics-json", str(tmp_path / "m.json")],
                 ["--input", str(tmp_path / "rows.npy"), "--output", str(tmp_path / "p.npz")]):
        proc = subprocess.run([sys.executable, "-c", code, "--ckpt-dir", str(small_model), "--data",
                               str(small_cls), *args], cwd=ROOT, capture_output=True, text=True, env=script_env())
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().splitlines()[-1] == "False"  # the figures are numpy's, scikit-learn's to the bit
    assert np.sum(json.loads((tmp_path / "m.json").read_text())["confusion_matrix"]) == 1201
    with np.load(tmp_path / "p.npz", allow_pickle=False) as preds:
        assert preds["proba"].shape == (3, 3)


def test_train_never_imports_scikit_learn_or_the_compiler(small_cls, tmp_path):
    """What a one-process run does not use, it does not import: scikit-learn, and torch's compiler
    stack (~1 s), which an optimizer imports on its first call unless common/train/leans.py's
    lean 5 holds."""
    code = ("import sys, runpy; sys.argv = ['train.py'] + sys.argv[1:]\n"
            "try:\n    runpy.run_path('train.py', run_name='__main__')\n"
            "finally:\n    print(sorted({m.split('.')[0] if m.startswith('sklearn') else m for m in sys.modules\n"
            "                  if m.startswith('sklearn') or m in ('torch._dynamo', 'torch._inductor', 'sympy')}))")
    proc = subprocess.run([sys.executable, "-c", code, "--data", str(small_cls), "--ckpt-dir", str(tmp_path),
                           "--epochs", "2", "--checkpoint-every", "1"], cwd=ROOT, capture_output=True, text=True,
                          env=script_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_a_model_with_categories_predicts_with_pickle_forbidden(people_set, tmp_path):
    """Vocabularies and fill values travel as JSON: nothing is unpickled at prediction time."""
    tmp, path = people_set
    train("--data", tmp / "people", "--ckpt-dir", tmp_path, "--epochs", "2")
    proc = subprocess.run([sys.executable, "-c", FORBID_PICKLE, "--ckpt-dir", str(tmp_path), "--input", str(path),
                           "--output", str(tmp_path / "p.csv")], cwd=ROOT, capture_output=True, text=True,
                          env=script_env())
    assert proc.returncode == 0, proc.stderr
    assert len(read_csv_rows(tmp_path / "p.csv")) == 600
