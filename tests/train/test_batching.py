"""Whole-batch iteration over the training split (common/train/batching.py): every row once an
epoch on every process count, the order from the seed alone, chunks and blocks that bound memory
and change no result."""
import json

import numpy as np
import pytest
import torch

from builders import train, user_error
from common.data.dataset import load_dataset
from common.train import batching
from common.train.batching import (
    EpochOrder,
    RowSource,
    ShardedBatches,
    epoch_permutation,
    local_shard,
    optimizer_steps_per_epoch,
    shard_bounds,
    steps_per_epoch,
)
from common.train.trainer import ends_accumulation_group, loss_scale


def batches(X, y, batch, procs, rank, split, seed, **kwargs):
    """The batches a process of an N-process run iterates, sized as the run plan sizes them."""
    global_batch = batch if split else batch * procs
    return ShardedBatches(RowSource(X.numpy(), y.numpy(), "cpu"), global_batch, steps_per_epoch(len(X), global_batch),
                          procs, rank, seed, **kwargs)


def all_rows_of_epoch(n, batch, procs, split, epoch, seed=3, **kwargs):
    """Row ids seen by each process in one epoch, and each process's step count."""
    X = torch.arange(n, dtype=torch.float32).unsqueeze(1)
    y = torch.arange(n)
    seen, steps = [], []
    for rank in range(procs):
        epoch_batches = list(batches(X, y, batch, procs, rank, split, seed, **kwargs).epoch(epoch))
        steps.append(len(epoch_batches))
        seen.append(torch.cat([b[1] for b in epoch_batches]).tolist())
    return seen, steps


@pytest.mark.parametrize("shuffle", ["rows", "blocks"])
@pytest.mark.parametrize("n,batch,procs,split,chunk", [(1000, 64, 1, False, 1 << 20), (1001, 64, 2, False, 100),
                                                       (1001, 64, 3, True, 1), (7, 4, 3, True, 3),
                                                       (4802, 1024, 2, False, 2000), (9001, 512, 2, False, 700)])
def test_every_row_exactly_once_per_epoch_and_equal_steps(n, batch, procs, split, chunk, shuffle):
    seen, steps = all_rows_of_epoch(n, batch, procs, split, epoch=0, shuffle=shuffle, chunk_rows=chunk)
    flat = sorted(r for rows in seen for r in rows)
    assert flat == list(range(n))  # no row dropped, none padded or repeated
    assert len(set(steps)) == 1     # every process runs the same number of steps: DDP never hangs


def test_order_changes_between_epochs_and_repeats_from_the_seed():
    a0, _ = all_rows_of_epoch(500, 32, 1, False, epoch=0)
    a1, _ = all_rows_of_epoch(500, 32, 1, False, epoch=1)
    again, _ = all_rows_of_epoch(500, 32, 1, False, epoch=0)
    assert a0 != a1
    assert a0 == again
    assert not np.array_equal(epoch_permutation(500, 1, 0), epoch_permutation(500, 2, 0))


@pytest.mark.parametrize("shuffle", ["rows", "blocks"])
def test_the_order_does_not_depend_on_the_chunk_size(shuffle):
    """Chunks bound memory only: every chunk size feeds the same rows in the same order."""
    X = torch.arange(9001, dtype=torch.float32).unsqueeze(1)
    y = torch.arange(9001)
    whole = torch.cat([b[1] for b in batches(X, y, 100, 1, 0, False, 7, shuffle=shuffle).epoch(3)])
    for chunk in (1, 150, 999, 5000):
        chunked = torch.cat([b[1] for b in batches(X, y, 100, 1, 0, False, 7, shuffle=shuffle, chunk_rows=chunk)
                             .epoch(3)])
        assert torch.equal(chunked, whole)


def test_block_order_mixes_blocks_and_costs_no_full_permutation(monkeypatch):
    import common.train.batching as batching

    monkeypatch.setattr(batching, "BLOCK_ROWS", 10)
    monkeypatch.setattr(batching, "WINDOW_BLOCKS", 4)
    order = EpochOrder(1005, 1, 0, "blocks")
    assert order.full is None and len(order.blocks) == 101
    rows = order.take(0, 1005)
    assert sorted(rows.tolist()) == list(range(1005))
    first_window = rows[:40] // 10
    assert len(set(first_window.tolist())) == 4  # rows of four blocks, shuffled together
    assert not np.array_equal(rows, EpochOrder(1005, 1, 1, "blocks").take(0, 1005))
    assert np.array_equal(rows, EpochOrder(1005, 1, 0, "blocks").take(0, 1005))
    assert np.array_equal(np.concatenate([order.take(a, a + 33) for a in range(0, 1005, 33)]), rows)


def test_global_batches_match_one_process_when_split():
    """With split batches, the union of the processes' chunks at each step is the 1-process batch."""
    X = torch.arange(1001, dtype=torch.float32).unsqueeze(1)
    y = torch.arange(1001)
    single = [set(b[1].tolist()) for b in batches(X, y, 100, 1, 0, True, 5).epoch(2)]
    parts = [list(batches(X, y, 100, 2, r, True, 5).epoch(2)) for r in range(2)]
    for step, expected in enumerate(single):
        assert set(parts[0][step][1].tolist()) | set(parts[1][step][1].tolist()) == expected
        assert parts[0][step][2] == parts[1][step][2] == len(expected)


def test_loss_scale_gives_the_exact_global_mean():
    """DDP averages gradients over processes; the scale makes that the mean over the global batch."""
    torch.manual_seed(0)
    w = torch.randn(3, requires_grad=True)
    X = torch.randn(11, 3)
    full = (X @ w).pow(2).mean()
    (g_full,) = torch.autograd.grad(full, w)
    grads = []
    for rank in range(3):
        part = X[slice(*shard_bounds(11, 3, rank))]
        (g,) = torch.autograd.grad((part @ w).pow(2).sum() * loss_scale(3, 11), w)
        grads.append(g)
    torch.testing.assert_close(torch.stack(grads).mean(0), g_full)


def test_eval_shards_cover_the_set_once():
    covered = []
    for rank in range(4):
        s = local_shard(1201, 4, rank)
        covered.extend(range(s.start, s.stop))
    assert covered == list(range(1201))


@pytest.mark.parametrize("steps,accum,ends", [(5, 1, [True] * 5), (5, 2, [False, True, False, True, True]),
                                              (5, 3, [False, False, True, False, True]), (2, 4, [False, True])])
def test_accumulation_groups_end_with_the_epoch(steps, accum, ends):
    assert [ends_accumulation_group(s, steps, accum) for s in range(steps)] == ends
    assert optimizer_steps_per_epoch(steps, accum) == sum(ends)


def test_each_step_knows_the_rows_of_its_accumulation_group():
    """4802 rows in global batches of 1000, groups of 3: [1000 x 3], then [1000, 802]."""
    rows = RowSource(np.zeros((4802, 1), np.float32), np.zeros(4802, np.int64), "cpu")
    plan = ShardedBatches(rows, 1000, steps_per_epoch(4802, 1000), 2, 0, 0, grad_accum=3)
    assert [plan.group_rows(step, 4802) for step in range(5)] == [3000, 3000, 3000, 1802, 1802]
    assert [rows for _, _, rows in plan.epoch(0)] == [3000, 3000, 3000, 1802, 1802]


def weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("shuffle", ["rows", "blocks"])
def test_chunked_gathering_gives_the_weights_of_one_gather_per_epoch(small_val, tmp_path, shuffle, monkeypatch):
    """Chunks bound memory only: a chunk of 37 rows, read in file order as from a split too large
    for the page cache, trains bit for bit like the whole split gathered at once."""
    args = ["--data", small_val, "--epochs", "2", "--batch-size", "64", "--shuffle", shuffle]
    train(*args, "--ckpt-dir", tmp_path / "whole")
    monkeypatch.setattr(batching, "SORTED_READS_FRACTION", 0.0)
    train(*args, "--ckpt-dir", tmp_path / "chunked", "--chunk-rows", "37")
    whole, chunked = weights(tmp_path / "whole"), weights(tmp_path / "chunked")
    assert all(torch.equal(whole[k], chunked[k]) for k in whole)
    config = json.loads((tmp_path / "chunked" / "config.json").read_text())
    assert config["training"]["shuffle"] == shuffle and config["training"]["chunk_rows"] == 37


def test_auto_shuffle_switches_to_blocks_above_the_threshold(small_cls, tmp_path, monkeypatch):
    monkeypatch.setattr(batching, "ROW_SHUFFLE_MAX", 1000)
    train("--data", small_cls, "--ckpt-dir", tmp_path, "--epochs", "1")
    assert json.loads((tmp_path / "config.json").read_text())["training"]["shuffle"] == "blocks"


def test_a_resident_copy_and_the_mapped_file_give_the_same_batches(small_cls, monkeypatch):
    """The GPU's fast path (a copy kept on the device), direct gathers from the mapped file, and
    sorted reads (a split too large for the page cache) hand out the same rows; on this machine
    all live in host memory, which is all the comparison needs."""
    data = load_dataset(small_cls)
    kept, mapped = (batching.RowSource(data.X_train, data.y_train, "cpu", resident) for resident in (True, False))
    monkeypatch.setattr(batching, "SORTED_READS_FRACTION", 0.0)
    from_disk = batching.RowSource(data.X_train, data.y_train, "cpu")
    assert from_disk.sorted_reads and not mapped.sorted_reads
    idx = np.random.default_rng(0).permutation(len(data.X_train))[:1000]
    for source in (mapped, from_disk):
        for a, b in zip(kept.gather(idx), source.gather(idx), strict=True):
            assert torch.equal(a, b)
        for a, b in zip(kept.slice(100, 300), source.slice(100, 300), strict=True):
            assert torch.equal(a, b)
    assert torch.equal(from_disk.gather(idx)[0], torch.from_numpy(np.asarray(data.X_train)[idx]))


def test_a_block_order_of_other_geometry_is_not_resumed(small_cls, tmp_path, monkeypatch):
    import train as train_script

    args = ["--data", small_cls, "--ckpt-dir", tmp_path, "--shuffle", "blocks", "--checkpoint-every", "1"]
    train(*args, "--epochs", "1")
    monkeypatch.setattr(batching, "BLOCK_ROWS", 1024)
    message = user_error(train_script.main, *args, "--epochs", "2", "--resume")
    assert "order_geometry: '4096x256' -> '1024x256'" in message
