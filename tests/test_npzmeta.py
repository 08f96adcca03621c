"""Numbers read from an NPZ without numpy (a reconstruction's time and cost history), checked
against numpy's own reading of the same files."""

import numpy as np
import pytest

from runner.npzmeta import NpzEntryError, npz_keys, read_npz_number


@pytest.mark.parametrize("value", [np.float64(3.25), np.float32(-1.5), np.int64(7), np.int32(3),
                                   np.array([5.0, 4.0, 2.25]), np.array([1, 2], dtype=">f4"),
                                   np.arange(1000.0)])
@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_a_number_or_the_last_of_a_list_is_what_numpy_reads(tmp_path, value, save):
    path = tmp_path / "r.npz"
    save(path, x=value)
    with np.load(path) as npz:
        expected = float(np.atleast_1d(npz["x"])[-1])
    assert read_npz_number(path, "x") == expected


def test_absent_empty_and_non_numbers(tmp_path):
    path = tmp_path / "r.npz"
    np.savez(path, empty=np.zeros(0), image=np.zeros((2, 2)), text=np.array("LSQML"),
             objects=np.array([{"a": 1}], dtype=object))
    assert read_npz_number(path, "missing") is None
    assert read_npz_number(path, "empty") is None
    assert npz_keys(path) == {"empty", "image", "text", "objects"}
    for key in ("image", "text", "objects"):  # never unpickled, never guessed
        with pytest.raises(NpzEntryError):
            read_npz_number(path, key)


def test_a_file_cut_short_is_not_an_npz(tmp_path):
    path = tmp_path / "r.npz"
    np.savez(path, x=np.arange(100.0))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(NpzEntryError):
        npz_keys(path)
