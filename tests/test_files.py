"""Files written atomically (common/files.py): a crash or a kill mid-write leaves the earlier file or
folder, and the next reader or writer puts back what a kill left hidden."""
import numpy as np
import pytest

from common.data.dataset import load_dataset
from common.errors import UserError


def test_a_kill_between_the_two_renames_leaves_the_earlier_data_set(tmp_path, small_cls):
    """atomic_folder moves the earlier folder aside, then the new one in: a kill in between
    leaves only the aside copy, which the next write puts back before anything else."""
    import shutil

    from common.files import restore_or_clear_leftovers

    final = tmp_path / "cls_data"
    shutil.copytree(small_cls, tmp_path / ".cls_data.123.old.part")  # the state such a kill leaves
    (tmp_path / ".cls_data.abc.part").mkdir()                       # and a half-filled stage
    restore_or_clear_leftovers(final)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cls_data"]
    np.testing.assert_array_equal(load_dataset(final).X_train, load_dataset(small_cls).X_train)


def test_a_reader_puts_back_a_data_set_that_a_killed_swap_left_hidden(tmp_path, small_cls):
    import shutil

    shutil.copytree(small_cls, tmp_path / ".cls_data.123.old.part")  # a kill between the two renames
    data = load_dataset(tmp_path / "cls_data")  # what train.py and infer.py do first
    np.testing.assert_array_equal(data.X_train, load_dataset(small_cls).X_train)
    assert (tmp_path / "cls_data").is_dir() and not list(tmp_path.glob("*.part"))


def test_a_reader_leaves_a_swap_to_the_writer_at_work(tmp_path, small_cls):
    import shutil

    from common.files import exclusive_lock, folder_lock_file

    shutil.copytree(small_cls, tmp_path / ".cls_data.123.old.part")
    with exclusive_lock(folder_lock_file(tmp_path / "cls_data")) as holder:  # a writer between its renames
        assert holder is None
        with pytest.raises(UserError, match="not found"):
            load_dataset(tmp_path / "cls_data")
        assert (tmp_path / ".cls_data.123.old.part").is_dir()
