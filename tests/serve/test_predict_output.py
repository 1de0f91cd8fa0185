"""What infer.py says and writes around the predictions themselves: blanks it filled, CSV quoting,
and a table it cannot read by column name."""
from __future__ import annotations

import numpy as np

import infer as infer_script
from builders import read_csv_rows, user_error, write_rows

HEADER = ",".join(f"x{i}" for i in range(10))


def test_blanks_where_training_had_none_are_counted_once(small_model, tmp_path, capsys):
    """x0 and x3 had no blanks in training: the fill is said, one line each, summed over batches."""
    rows = [[("" if (i % 3 == 0 and j == 0) or (i == 5 and j == 3) else "0.5") for j in range(10)] for i in range(30)]
    rows[7][0] = "NA"
    write_rows(tmp_path / "rows.csv", rows)
    capsys.readouterr()
    infer_script.main(["--ckpt-dir", str(small_model), "--input", str(tmp_path / "rows.csv"),
                       "--output", str(tmp_path / "p.csv"), "--batch-size", "4"])
    out = capsys.readouterr().out
    notes = [line for line in out.splitlines() if "blank cell" in line]
    assert len(notes) == 2, out
    assert "'x0' had 11 blank cell(s)" in notes[0] and "'x3' had 1 blank cell(s)" in notes[1]
    assert len(read_csv_rows(tmp_path / "p.csv")) == 30


def test_an_arrays_batches_with_and_without_blanks_predict_as_the_same_rows_of_a_csv(small_model, tmp_path, capsys):
    """An .npy batch without blanks is standardised as one block, one with a blank column by
    column: both give the bits the same rows give from a CSV file, and the blank is said."""
    from common.model_folder import load_record

    assert load_record(small_model).preprocess.plainly_standardised  # the block's way is taken
    X = np.random.default_rng(0).standard_normal((40, 10)) * 3 + 1
    X[25, 3] = np.nan  # in the second of three batches
    np.save(tmp_path / "rows.npy", X)
    write_rows(tmp_path / "rows.csv", [["" if np.isnan(v) else repr(float(v)) for v in row] for row in X])
    capsys.readouterr()
    for source in ("rows.npy", "rows.csv"):
        infer_script.main(["--ckpt-dir", str(small_model), "--input", str(tmp_path / source),
                           "--output", str(tmp_path / f"{source}.npz"), "--batch-size", "16"])
        assert "'x3' had 1 blank cell(s)" in capsys.readouterr().out
    array, table = (np.load(tmp_path / f"{source}.npz") for source in ("rows.npy", "rows.csv"))
    assert array.files == table.files and all(np.array_equal(array[k], table[k]) for k in array.files)


def test_a_table_without_blanks_gets_no_note(small_model, tmp_path, capsys):
    write_rows(tmp_path / "rows.csv", [["1"] * 10] * 3)
    capsys.readouterr()
    infer_script.main(["--ckpt-dir", str(small_model), "--input", str(tmp_path / "rows.csv"),
                       "--output", str(tmp_path / "p.csv")])
    assert "blank cell" not in capsys.readouterr().out


def test_csv_output_quotes_only_where_needed(small_model, tmp_path):
    ids = ["133", "a,b", 'say "hi"', "plain"]
    write_rows(tmp_path / "rows.csv", [[ident] + ["0.1"] * 10 for ident in ids], id_column="ID")
    infer_script.main(["--ckpt-dir", str(small_model), "--input", str(tmp_path / "rows.csv"),
                       "--output", str(tmp_path / "p.csv")])
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "ID,prediction,proba_0,proba_1,proba_2"
    assert lines[1].startswith("133,") and lines[2].startswith('"a,b",') and lines[3].startswith('"say ""hi""",')
    assert [r["ID"] for r in read_csv_rows(tmp_path / "p.csv")] == ids  # text ids round-trip


def test_a_duplicate_column_name_is_one_line(small_model, tmp_path):
    write_rows(tmp_path / "rows.csv", [["1"] * 11] * 3, header=HEADER + ",x2")
    message = user_error(infer_script.main, "--ckpt-dir", small_model, "--input", tmp_path / "rows.csv",
                         "--output", tmp_path / "p.csv")
    assert "more than one column named ['x2']" in message and "rename" in message
    assert not (tmp_path / "p.csv").exists()
