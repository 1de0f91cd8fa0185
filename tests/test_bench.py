"""The fast data path computes what the recipe's DataLoader loop computes; the benchmark runs."""
import json

import pytest
import torch

import bench


def test_results_match_the_dataloader_loop_in_distribution():
    torch.set_num_threads(1)
    data = bench.recipe_data()
    ours = [bench.our_loop(data, epochs=4, accelerate=flag)[1] for flag in (True, False)]
    _, reference = bench.dataloader_loop(data, epochs=4)
    assert ours[0] == ours[1]  # Accelerate changes nothing numerically on one process
    assert reference > 0.85
    assert ours[0] == pytest.approx(reference, abs=0.02)


def test_benchmark_reports_every_section(tmp_path):
    out = tmp_path / "bench.json"
    bench.main(["--epochs", "2", "--sizes", "2000", "--infer-rows", "3000", "--no-ddp", "--no-tables",
                "--out", str(out)])
    results = json.loads(out.read_text())
    assert set(results["peers"]) == {"ours", "plain_fast_path", "dataloader", "sklearn_mlp"}
    assert all(r["epoch_ms"] > 0 and 0 <= r["accuracy"] <= 1 for r in results["peers"].values())
    assert [r["rows"] for r in results["scaling"]] == [2000]
    assert set(results["inference"]) == {"npz", "csv"}


def test_table_sections(tmp_path):
    import tables

    path = tmp_path / "t.parquet"
    tables.write_numeric_table(path, 500)
    reading = tables.ingest_worker(f"{path},{tmp_path / 'out'}", bench.peak_rss_mb)
    assert reading["seconds"] > 0 and reading["peak_rss_mb"] > 0
    (row,) = tables.quality(tmp_path, [], shipped=())
    assert row["task"] == "classification" and row["figure"] == "macro-F1"
    assert 0.3 < row["ours"] <= 1 and 0.3 < row["sklearn_mlp"] <= 1 and 0.3 < row["sklearn_hgb"] <= 1
