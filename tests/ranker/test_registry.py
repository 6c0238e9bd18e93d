"""Model registry on real folders: numbering, champion pointer, archives, kills and races."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from datetime import timedelta
from pathlib import Path

import pytest

from brainrank.index.errors import BrainrankError, InputError
from brainrank.ranker.registry.registry import Registry
from tests.conftest import REPO

FEATURES = ["bm25", "dense_cosine", "title_match"]


def write_model(tmp: Path, payload: bytes = b"weights", bundled: bool = False) -> None:
    """What a trainer does: opaque ranker files first, model.json last."""
    (tmp / "ranker").mkdir()
    (tmp / "ranker" / "weights.bin").write_bytes(payload)
    (tmp / "ranker" / "config.json").write_text('{"layers": [8, 4]}')
    (tmp / "baseline.json").write_text(json.dumps({"bm25": {"mean": 1.5}}))
    if bundled:
        (tmp / "encoder").mkdir()
        (tmp / "encoder" / "model.safetensors").write_bytes(b"enc")
    meta = {
        "feature_schema": {"version": 1, "names": FEATURES},
        "encoder": {"name": "all-MiniLM-L6-v2", "fingerprint": "abc123", "bundled": bundled},
        "config": {"lr": 0.01},
        "training": {"queries": 3, "judged_pairs": 30, "clicks_used": 0, "seconds": 0.1},
        "metrics": {"nDCG@10": 0.5},
    }
    (tmp / "model.json").write_text(json.dumps(meta))


def make(reg: Registry, parent: str | None = None, **kwargs):
    with reg.new_version(parent=parent) as tmp:
        write_model(tmp, **kwargs)
    return reg.last_committed


@pytest.fixture
def reg(tmp_path):
    return Registry(tmp_path / "ws" / "models")


def tree(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_versions_are_numbered_and_listed_oldest_first(reg):
    v1 = make(reg)
    v2 = make(reg, parent="v1", payload=b"second")
    mv = reg.commit(_begin_and_write(reg))
    assert [v.version for v in reg.versions()] == ["v0001", "v0002", "v0003"]
    assert (v1.version, v2.parent, mv.version) == ("v0001", "v0001", "v0003")
    assert v2.path == reg.versions_dir / "v0002"
    assert (v2.path / "ranker" / "weights.bin").read_bytes() == b"second"
    on_disk = json.loads((v2.path / "model.json").read_text())
    assert on_disk["version"] == "v0002" and on_disk["parent"] == "v0001"
    assert v2.created.tzinfo is not None and v2.created.utcoffset() == timedelta(0)
    assert v2.feature_names == FEATURES and v2.metrics == {"nDCG@10": 0.5}
    assert v2.encoder_fingerprint == "abc123" and v2.bundled_encoder is None
    assert not list(reg.staging_dir.iterdir())


def _begin_and_write(reg: Registry) -> Path:
    tmp = reg.begin()
    write_model(tmp)
    return tmp


def test_bundled_encoder_path(reg):
    mv = make(reg, bundled=True)
    assert mv.bundled_encoder == mv.path / "encoder"
    assert (mv.bundled_encoder / "model.safetensors").read_bytes() == b"enc"


def test_with_no_champion_the_error_says_what_to_run(reg):
    with pytest.raises(InputError, match="no learned model yet: train one with `brainrank train"):
        reg.get("champion")  # nothing trained: promoting is not an option
    make(reg)  # trained, but not promoted (it lost, or --no-promote)
    with pytest.raises(InputError, match="promote one with `brainrank models promote VERSION`"):
        reg.get("champion")


def test_get_accepts_aliases_and_lists_known_versions(reg):
    for _ in range(3):
        make(reg)
    for alias in ("v2", "2", "v0002", " V2 "):
        assert reg.get(alias).version == "v0002"
    with pytest.raises(InputError, match="no model has been promoted"):
        reg.get("champion")
    reg.promote("3")
    assert reg.get("champion").version == "v0003"
    with pytest.raises(InputError, match="known versions: v0001, v0002, v0003"):
        reg.get("v9")
    with pytest.raises(InputError, match="'latest-ish'"):
        reg.get("latest-ish")


def test_missing_model_json_fails_commit_and_leaves_nothing(reg):
    with pytest.raises(BrainrankError, match="no model.json"), reg.new_version() as tmp:
        (tmp / "ranker").mkdir()
    with pytest.raises(RuntimeError), reg.new_version() as tmp:
        write_model(tmp)
        raise RuntimeError("training diverged")
    assert reg.versions() == [] and not list(reg.versions_dir.iterdir())
    assert not list(reg.staging_dir.iterdir())
    assert make(reg).version == "v0001"


def test_model_json_without_feature_schema_is_refused(reg):
    with pytest.raises(InputError, match="feature_schema"), reg.new_version() as tmp:
        (tmp / "model.json").write_text('{"metrics": {}}')
    assert reg.versions() == []


def test_folder_without_model_json_is_invisible_and_its_number_is_skipped(reg):
    make(reg)
    (reg.versions_dir / "v0002" / "ranker").mkdir(parents=True)
    assert [v.version for v in reg.versions()] == ["v0001"]
    with pytest.raises(InputError, match="unknown model version"):
        reg.get("v2")
    assert make(reg).version == "v0003"


def test_corrupt_model_json_is_skipped_with_a_problem(reg):
    make(reg)
    bad = make(reg)
    (bad.path / "model.json").write_text("{not json")
    assert [v.version for v in reg.versions()] == ["v0001"]
    assert len(reg.problems) == 1 and "v0002" in reg.problems[0]
    with pytest.raises(BrainrankError, match="v0002 is corrupt"):
        reg.get("v2")


def test_promote_rollback_and_history(reg):
    for _ in range(3):
        make(reg)
    assert reg.champion() is None
    with pytest.raises(BrainrankError, match="no earlier champion"):
        reg.rollback()
    for v in ("v1", "v2", "v3"):
        reg.promote(v)
    pointer = json.loads(reg.workspace.serving_file.read_text())
    assert (pointer["champion"], pointer["generation"]) == ("v0003", None)
    assert reg.rollback().version == "v0002"
    assert reg.rollback().version == "v0001"
    with pytest.raises(BrainrankError, match="no earlier champion"):
        reg.rollback()
    assert reg.champion().version == "v0001"
    lines = [json.loads(x) for x in reg.history_file.read_text().splitlines()]
    steps = [(e["action"], e["version"], e["previous"]) for e in lines]
    assert steps == [
        ("promote", "v0001", None),
        ("promote", "v0002", "v0001"),
        ("promote", "v0003", "v0002"),
        ("rollback", "v0002", "v0003"),
        ("rollback", "v0001", "v0002"),
    ]
    assert all(e["time"].endswith("+00:00") for e in lines)
    reg.promote("v1")  # already champion: no new line
    assert len(reg.history_file.read_text().splitlines()) == 5


def test_torn_history_line_does_not_break_promotion(reg):
    make(reg)
    make(reg)
    reg.promote("v1")
    with reg.history_file.open("a") as fh:
        fh.write('{"time": "2024-')  # a writer killed mid-line
    reg.promote("v2")
    assert reg.history()[-1]["version"] == "v0002" and len(reg.problems) == 1
    with reg.history_file.open("ab") as fh:
        fh.write(b"\xff\xfe not UTF-8\n")  # a damaged byte is one skipped line, not a crash
    assert reg.history()[-1]["version"] == "v0002"
    assert len(reg.problems) == 2 and ":4: not a JSON object" in reg.problems[-1]
    assert reg.rollback().version == "v0001"


def test_champion_pointing_at_missing_version_says_how_to_fix(reg):
    make(reg)
    (reg.models_dir / "CHAMPION").write_text("v0009\n")  # a workspace from before SERVING
    with pytest.raises(BrainrankError, match="CHAMPION names model 'v0009'.*models promote"):
        reg.champion()
    assert reg.promote("v1").version == "v0001"
    assert reg.champion().version == "v0001"
    assert not (reg.models_dir / "CHAMPION").exists()  # migrated into the one pointer
    ws = reg.workspace
    with ws.writer_lock():
        ws.set_serving(None, "v0009")
    with pytest.raises(BrainrankError, match="SERVING names model 'v0009'.*models promote"):
        reg.champion()


def test_export_import_round_trip(reg, tmp_path):
    make(reg)
    original = make(reg, payload=bytes(range(256)) * 40, bundled=True)
    archive = reg.export("v2", tmp_path / "out" / "model.tar.gz")
    assert archive.is_file() and not list(archive.parent.glob(".*.tmp"))
    assert reg.export("v2", tmp_path / "out").name == "v0002.tar.gz"

    other = Registry(tmp_path / "elsewhere" / "models")
    make(other)
    imported = other.import_archive(archive)
    assert imported.version == "v0002" and imported.meta["imported_from"] == "v0002"
    again = reg.import_archive(archive)  # into the same registry: a new number, no overwrite
    assert again.version == "v0003" and again.meta["imported_from"] == "v0002"
    for mv in (imported, again):
        src, dst = tree(original.path), tree(mv.path)
        meta_src, meta_dst = json.loads(src.pop("model.json")), json.loads(dst.pop("model.json"))
        assert src == dst
        for key in ("version", "imported_from", "imported", "parent", "checksum"):
            meta_src.pop(key, None)
            meta_dst.pop(key, None)
        assert meta_src == meta_dst  # "created" is the original training time
    assert tree(reg.get("v2").path) == tree(original.path)


def test_damage_is_neither_exported_nor_imported(reg, tmp_path):
    make(reg)
    archive = reg.export("v1", tmp_path / "v1.tar.gz")
    weights = reg.get("v1").path / "ranker" / "weights.bin"
    weights.write_bytes(b"WEIGHTS")  # same size, other bytes: only the hash tells
    with pytest.raises(BrainrankError, match="v0001 was not exported: .*weights.bin is damaged"):
        reg.export("v1", tmp_path / "again.tar.gz")
    assert not (tmp_path / "again.tar.gz").exists()

    other = Registry(tmp_path / "elsewhere" / "models")
    unpacked = tmp_path / "unpacked"
    with tarfile.open(archive) as tar:
        tar.extractall(unpacked, filter="data")
    (unpacked / "v0001" / "baseline.json").unlink()  # a file the model.json recorded
    broken = tmp_path / "broken.tar.gz"
    with tarfile.open(broken, "w:gz") as tar:
        tar.add(unpacked / "v0001", arcname="v0001")
    with pytest.raises(InputError, match="broken.tar.gz:baseline.json is damaged .*missing"):
        other.import_archive(broken)
    assert other.versions() == []  # the commit would have sealed the damage as sound
    assert other.import_archive(archive).version == "v0001"  # the sound archive imports
    with pytest.raises(InputError, match="unpacked is a folder; give the .tar.gz"):
        other.import_archive(unpacked)
    with pytest.raises(InputError, match="nowhere.tar.gz does not exist"):
        other.import_archive(tmp_path / "nowhere.tar.gz")


def _tar(path: Path, members: dict[str, bytes], links: tuple[str, ...] = ()) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name in links:
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
    return path


GOOD_META = json.dumps({"version": "v0042", "feature_schema": {"version": 1, "names": ["a"]}})


@pytest.mark.parametrize(
    ("members", "links"),
    [
        ({"v0042/model.json": GOOD_META.encode(), "v0042/../../evil": b"x"}, ()),
        ({"v0042/model.json": GOOD_META.encode(), "/tmp/evil": b"x"}, ()),
        ({"v0042/model.json": GOOD_META.encode()}, ("v0042/ranker/link",)),
    ],
    ids=["dotdot", "absolute", "symlink"],
)
def test_unsafe_archive_members_are_rejected(reg, tmp_path, members, links):
    archive = _tar(tmp_path / "evil.tar.gz", members, links)
    with pytest.raises(InputError, match="evil.tar.gz"):
        reg.import_archive(archive)
    assert not (tmp_path / "evil").exists() and not (reg.models_dir.parent / "evil").exists()
    assert reg.versions() == [] and not list(reg.staging_dir.iterdir())


def test_archive_with_model_json_at_root_is_accepted(reg, tmp_path):
    archive = _tar(tmp_path / "flat.tar.gz", {"./model.json": GOOD_META.encode(), "ranker/w": b"1"})
    mv = reg.import_archive(archive)
    assert mv.version == "v0001" and mv.meta["imported_from"] == "v0042"
    assert (mv.path / "ranker" / "w").read_bytes() == b"1"


def test_corrupt_or_incomplete_archives_name_the_file(reg, tmp_path):
    make(reg)
    good = reg.export("v1", tmp_path / "good.tar.gz")
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(os.urandom(2000))
    no_meta = _tar(tmp_path / "no_meta.tar.gz", {"v0001/ranker/w": b"1"})
    bad_json = _tar(tmp_path / "bad_json.tar.gz", {"v0001/model.json": b"{oops"})
    no_schema = _tar(tmp_path / "no_schema.tar.gz", {"v0001/model.json": b'{"version": "v1"}'})
    for archive in (truncated, garbage, no_meta, bad_json, no_schema, tmp_path / "absent.tgz"):
        with pytest.raises(InputError, match=archive.name):
            reg.import_archive(archive)
    assert [v.version for v in reg.versions()] == ["v0001"]
    assert not list(reg.staging_dir.iterdir())


def test_prune_keeps_newest_champion_and_previous_champion(reg):
    for _ in range(6):
        make(reg)
    reg.promote("v1")
    reg.promote("v2")
    assert reg.prune(keep=2) == ["v0003", "v0004"]
    assert [v.version for v in reg.versions()] == ["v0001", "v0002", "v0005", "v0006"]
    assert reg.prune(keep=0) == ["v0005", "v0006"]
    assert reg.rollback().version == "v0001"
    assert make(reg).version == "v0007"  # numbers are never reused
    with pytest.raises(InputError, match="keep"):
        reg.prune(keep=-1)


def test_a_live_draft_is_not_cleaned_by_another_writer(reg):
    first = reg.begin()
    (first / "partial").write_text("still training")
    second = make(reg)
    assert first.is_dir() and second.version == "v0001"
    write_model(first)
    assert reg.commit(first).version == "v0002"


def _script(models: Path, body: str) -> str:
    return (
        f"import sys, time\nsys.path.insert(0, {str(REPO)!r})\nfrom pathlib import Path\n"
        f"from brainrank.ranker.registry.registry import Registry\n"
        f"from tests.ranker.test_registry import write_model\n"
        f"reg = Registry(Path({str(models)!r}))\n{body}"
    )


def test_killed_writer_leaves_champion_and_versions_intact(reg, tmp_path):
    make(reg)
    reg.promote("v1")
    before = [(v.version, v.meta) for v in reg.versions()]
    flag = tmp_path / "flag"
    body = (
        "with reg.new_version(parent='champion') as tmp:\n"
        "    write_model(tmp, payload=b'x' * 100_000)\n"
        f"    Path({str(flag)!r}).write_text('ready')\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", _script(reg.models_dir, body)])
    deadline = time.time() + 30
    while not flag.exists():
        assert proc.poll() is None, "writer died before writing its files"
        assert time.time() < deadline, "writer never wrote its files"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len([p for p in reg.staging_dir.iterdir() if p.is_dir()]) == 1  # the dead draft
    assert reg.champion().version == "v0001"
    assert [(v.version, v.meta) for v in reg.versions()] == before
    assert make(reg).version == "v0002"
    assert not list(reg.staging_dir.iterdir())


def test_concurrent_writers_get_distinct_numbers(reg, tmp_path):
    go = tmp_path / "go"
    body = (
        f"while not Path({str(go)!r}).exists():\n    time.sleep(0.005)\n"
        "for _ in range(5):\n"
        "    tmp = reg.begin()\n"
        "    write_model(tmp)\n"
        "    print(reg.commit(tmp).version, flush=True)\n"
    )
    script = _script(reg.models_dir, body)
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    time.sleep(0.5)  # let both start and wait on the flag
    go.write_text("go")
    outputs = [p.communicate(timeout=30)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    got = outputs[0] + outputs[1]
    assert sorted(got) == [f"v{n:04d}" for n in range(1, 11)]
    assert [v.version for v in reg.versions()] == sorted(got)


def test_a_history_line_lost_to_a_kill_is_restored_from_the_pointer(reg, monkeypatch):
    import brainrank.ranker.registry.registry as registry_module

    for _ in range(3):
        make(reg)
    for v in ("v1", "v2", "v3"):
        reg.promote(v)

    def killed(path, entry):
        raise SystemExit("killed between the pointer write and the history line")

    monkeypatch.setattr(registry_module, "append_entry", killed)
    with pytest.raises(SystemExit):
        reg.rollback()
    monkeypatch.undo()
    assert reg.champion().version == "v0002" and len(reg.history()) == 3
    # The pointer remembers the rollback, so the next rollback goes on to v1 (not back to v3)...
    assert reg.rollback_target().version == "v0001"
    assert reg.rollback().version == "v0001"
    # ...and the lost line is written back before the new one.
    steps = [(e["action"], e["version"]) for e in reg.history()]
    assert steps[3:] == [("rollback", "v0002"), ("rollback", "v0001")]


def test_locks_time_out_naming_the_holding_command(reg, tmp_path):
    make(reg)
    reg = Registry(reg.models_dir, lock_timeout=0.5)
    for lock in (reg.models_dir / ".registry.lock", reg.workspace.root / ".ingest.lock"):
        body = (
            "from brainrank.index.locks import ProcessLock\n"
            f"lock = ProcessLock(Path({str(lock)!r})).acquire()\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", _script(reg.models_dir, body)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert proc.stdout.readline().strip() == "held"
            t = time.perf_counter()
            with pytest.raises(BrainrankError) as caught:
                reg.promote("v1")
            assert time.perf_counter() - t < 10
            message = str(caught.value)
            assert f"{lock} is held by pid {proc.pid} running `" in message, message
            assert "gave up after 0.5 s" in message and "\n" not in message
        finally:
            proc.kill()
            proc.wait()
    assert reg.champion() is None
    assert reg.promote("v1").version == "v0001"
