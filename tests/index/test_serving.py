"""The serving pointer on real folders: one file for generation and champion, legacy workspaces,
damage, the writer lock, and pruning that spares what serves or is about to."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from brainrank.index.errors import BrainrankError
from brainrank.index.serving import ServingState, read_state
from brainrank.index.workspace import Workspace


def fake_generation(ws: Workspace, number: int, store_version: int = 1, **fields) -> None:
    folder = ws.generation_dir(number)
    folder.mkdir(parents=True)
    manifest = {"generation": number, "store_version": store_version, **fields}
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture
def ws(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ws.create()
    return ws


def test_activate_moves_the_generation_and_keeps_the_champion(ws):
    for n in (1, 2):
        fake_generation(ws, n)
    change = {"time": "t", "action": "promote", "version": "v0001", "previous": None}
    with ws.writer_lock():
        ws.set_serving(1, "v0001", change)
        ws.activate(2)
    state = ws.serving_state()
    assert (state.generation, state.champion, state.change) == (2, "v0001", change)
    assert ws.current_generation() == 2 and not state.legacy
    assert [p.name for p in ws.root.iterdir() if p.is_file() and p.suffix != ".lock"] == ["SERVING"]


def test_a_legacy_workspace_is_read_then_migrated_by_the_next_write(ws):
    for n in (1, 2):
        fake_generation(ws, n)
    (ws.indexes_dir / "CURRENT").write_text("gen-000001\n")
    (ws.models_dir / "CHAMPION").write_text("v0004\n")
    state = ws.serving_state()
    assert (state.generation, state.champion, state.legacy) == (1, "v0004", True)
    assert ws.serving_generation(1) == 1
    with ws.writer_lock():
        ws.activate(2)
    assert ws.serving_state() == ServingState(2, "v0004", None)
    assert not (ws.indexes_dir / "CURRENT").exists() and not (ws.models_dir / "CHAMPION").exists()


def test_legacy_pointer_to_a_missing_generation_says_reindex(ws):
    (ws.indexes_dir / "CURRENT").write_text("gen-000007\n")
    with pytest.raises(BrainrankError, match=r"CURRENT names generation 7.*brainrank reindex"):
        ws.current_generation()
    (ws.indexes_dir / "CURRENT").write_text("garbage\n")
    with pytest.raises(BrainrankError, match=r"CURRENT names 'garbage'.*brainrank reindex"):
        ws.serving_state()


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text[: len(text) // 2],  # truncated
        lambda text: "",  # zeroed
        lambda text: text.replace('"generation": 2', '"generation": 1'),  # same size, other pair
        lambda text: text.replace('"v0002"', '"v0003"'),
        lambda text: "[1, 2]",
    ],
)
def test_a_damaged_pointer_is_one_line_naming_the_file_and_the_repair(ws, damage):
    for n in (1, 2):
        fake_generation(ws, n)
    with ws.writer_lock():
        ws.set_serving(2, "v0002")
    ws.serving_file.write_text(damage(ws.serving_file.read_text()))
    with pytest.raises(BrainrankError) as caught:
        ws.serving_state()
    message = str(caught.value)
    assert "\n" not in message and str(ws.serving_file) in message
    assert "brainrank reindex" in message
    ws.serving_file.unlink()  # without a pointer the newest index serves, with no champion
    assert ws.serving_generation(1) == 2 and read_state(ws.root).champion is None


def test_the_pointer_moves_only_under_the_writer_lock(ws, tmp_path):
    fake_generation(ws, 1)
    with pytest.raises(RuntimeError, match="writer lock"):
        ws.activate(1)
    with pytest.raises(RuntimeError, match="writer lock"):
        ws.set_serving(1, None)
    assert not ws.serving_file.exists()
    with ws.writer_lock(), pytest.raises(BrainrankError, match="generation 5 is missing"):
        ws.set_serving(5, "v0001")


def test_pruning_spares_the_served_and_the_pinned_generations(ws):
    for n in range(1, 8):
        fake_generation(ws, n)
    with ws.writer_lock():
        ws.set_serving(2, "v0001")
    with ws.pin(3), ws.writer_lock():
        assert ws.prune(keep=3) == [1, 4]
    assert ws.generations() == [2, 3, 5, 6, 7]
    assert not list((ws.indexes_dir / ".pins").iterdir())  # the pin left with its block
    with ws.writer_lock():
        assert ws.prune(keep=3) == [3]


def test_a_killed_pinner_no_longer_protects_its_generation(ws):
    for n in range(1, 6):
        fake_generation(ws, n)
    script = (
        "import sys, os\n"
        "from brainrank.index.workspace import Workspace\n"
        f"ws = Workspace({str(ws.root)!r})\n"
        "with ws.pin(1):\n"
        "    print('pinned', flush=True)\n"
        "    sys.stdin.readline()\n"
        "    os._exit(9)  # dies holding the pin, like a SIGKILL: no cleanup runs\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "pinned"
        with ws.writer_lock():
            ws.set_serving(5, None)
            assert ws.prune(keep=4) == []  # generation 1 is pinned by a live process
            proc.stdin.write("go\n")
            proc.stdin.flush()
            proc.wait(timeout=30)
            assert ws.prune(keep=4) == [1]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert not list((ws.indexes_dir / ".pins").glob("*.lock"))
