"""Write-then-rename helpers: the old copy survives every failure and nothing temporary is left."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from brainrank.index.atomic import (
    atomic_directory,
    atomic_file,
    replace_directory,
    write_text_atomic,
)


def test_a_file_is_replaced_only_when_the_block_succeeds(tmp_path):
    path = tmp_path / "sub" / "CURRENT"
    write_text_atomic(path, "gen-000001\n")
    with pytest.raises(RuntimeError), atomic_file(path) as fh:
        fh.write("gen-0000")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "gen-000001\n"
    with atomic_file(path, "wb") as fh:
        fh.write(b"gen-000002\n")
    assert path.read_bytes() == b"gen-000002\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["CURRENT"]


def test_a_directory_replaces_the_old_one_only_when_the_block_succeeds(tmp_path):
    final = tmp_path / "model"
    with atomic_directory(final) as staged:
        (staged / "weights").write_text("1")
    with pytest.raises(RuntimeError), atomic_directory(final) as staged:
        (staged / "weights").write_text("half")
        raise RuntimeError("killed mid-write")
    assert (final / "weights").read_text() == "1"
    with atomic_directory(final) as staged:
        (staged / "weights").write_text("2")
    assert sorted(p.name for p in final.iterdir()) == ["weights"]
    assert (final / "weights").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    # Created like any mkdir (umask), not with mkdtemp's owner-only 0700.
    umask = os.umask(0)
    os.umask(umask)
    assert final.stat().st_mode & 0o777 == 0o777 & ~umask


def test_a_failed_rename_puts_the_old_directory_back(tmp_path, monkeypatch):
    final = tmp_path / "model"
    final.mkdir()
    (final / "weights").write_text("old")
    staged = tmp_path / "staged"
    staged.mkdir()
    real_replace = os.replace

    def replace(src, dst):
        if Path(src) == staged:
            raise OSError("disk on fire")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="disk on fire"):
        replace_directory(staged, final)
    monkeypatch.undo()
    assert (final / "weights").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "staged"]


def test_replace_directory_can_refuse_to_overwrite(tmp_path):
    (tmp_path / "v0001").mkdir()
    staged = tmp_path / "staged"
    staged.mkdir()
    with pytest.raises(FileExistsError):
        replace_directory(staged, tmp_path / "v0001", overwrite=False)
    replace_directory(staged, tmp_path / "v0002", overwrite=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v0001", "v0002"]
