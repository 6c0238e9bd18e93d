"""index.preload: what it reads, and that it reads files through where madvise cannot."""

from __future__ import annotations

import numpy as np
import pytest

from brainrank.index import preload as preload_module
from brainrank.index.preload import _populate, preload


@pytest.fixture
def files(tmp_path):
    big, small, empty = tmp_path / "big.npy", tmp_path / "small.json", tmp_path / "empty"
    big.write_bytes(np.random.default_rng(0).bytes(20 << 20))  # several read blocks
    small.write_text('{"a": 1}')
    empty.write_bytes(b"")
    return big, small, empty, tmp_path / "missing"


@pytest.mark.parametrize("wait", [True, False])
def test_preload_counts_the_bytes_of_the_files_there(files, wait):
    big, small, empty, missing = files
    assert preload([big, small, empty, missing], wait=wait) == big.stat().st_size + 8
    assert preload([]) == 0


def test_without_madvise_each_file_is_read_through_to_its_end(files, monkeypatch):
    big, small, *_ = files
    size = big.stat().st_size
    assert _populate(big, size) in (0, size)  # 0 where the kernel populated the mapping
    monkeypatch.setattr(preload_module, "_MADV_POPULATE_READ", None)
    assert _populate(big, size) == size
    assert _populate(small, 8) == 8
    assert preload([big, small]) == size + 8


def test_a_file_gone_before_it_is_read_is_a_warning(files, caplog):
    *_, missing = files
    assert _populate(missing, 100) == 0
    assert "could not preload" in caplog.text
