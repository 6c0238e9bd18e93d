"""SIGKILL at several points of promote, rollback, `models import --promote` and retrain.

Each case runs the command in a real second process that stops at one point (it writes a flag
and waits there) and is killed with SIGKILL. Afterwards a consistent pair serves: the previous
champion over its index while the kill came before the switch, the new pair after it, and a
learned search works and reports that model. Then the command runs again and completes.

Re-embedding needs a model whose encoder differs from the serving one: ``variant`` is MiniLM's
weights saved again with one more metadata entry, so its fingerprint differs while its vectors
are the same, and the model ``vX`` is the trained champion bundling that encoder.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from brainrank.index.workspace import Workspace
from brainrank.ranker.registry.registry import Registry
from brainrank.ranker.retrieval.search import SearchEngine
from tests.conftest import DATA, REPO, few_judgments, make_config, permissive

QUERY = "money back"

# {patch} makes the process stop at one point; {command} is what it runs.
SCRIPT = """
import sys, time
sys.path.insert(0, {repo!r})
from pathlib import Path

FLAG, GO = Path({flag!r}), Path({go!r})

def stop_before(owner, name, point):
    original = getattr(owner, name)
    def stopped(*args, **kwargs):
        FLAG.write_text(point)
        while not GO.exists():  # the test kills us here (or lets us go on)
            time.sleep(0.05)
        return original(*args, **kwargs)
    setattr(owner, name, stopped)

import brainrank.ranker.learning.tfr_model as tfr_model
import brainrank.ranker.registry.registry as registry
import brainrank.index.workspace as workspace
import brainrank.ranker.retrieval.building as building
from brainrank.ranker.config import RetrainConfig, load_config

POINTS = {{
    "embedding": (building.PassageSplitter, "split"),  # re-embedding into a staged generation
    "pin": (workspace.Workspace, "pin"),  # prepared, about to take the writer lock
    "switch": (registry.Registry, "switch"),  # prepared, writer lock held, pointer not written
    "history": (registry, "append_entry"),  # pointer written, history line not yet
    "commit": (registry.Registry, "commit"),  # archive unpacked, version not yet committed
    "fit": (tfr_model.ListwiseRanker, "fit"),  # training the challenger
}}
stop_before(*POINTS[{point!r}], {point!r})
cfg = load_config(workspace={ws!r}, env={{}})
from tests.conftest import permissive
{command}
"""

COMMANDS = {
    "promote": "from brainrank.ranker.registry.promotion import promote\npromote(cfg, {version!r})",
    "rollback": "from brainrank.ranker.registry.promotion import rollback\nrollback(cfg)",
    "import": (
        "from brainrank.ranker.cli.app import app\n"
        "app(['models', 'import', {archive!r}, '--promote', '-w', {ws!r}])"
    ),
    "retrain": (
        "from brainrank.ranker.monitoring.retrain import retrain\n"
        "retrain(permissive(cfg), RetrainConfig(queries={queries!r}, qrels={qrels!r}, "
        "max_epochs=5, click_margin=0.99))"
    ),
}


def start(command: str, point: str, cfg, tmp_path: Path, **fields) -> tuple:
    """Start ``command`` in another process and wait until it stops at ``point``."""
    flag, go = tmp_path / "flag", tmp_path / "go"
    flag.unlink(missing_ok=True)
    go.unlink(missing_ok=True)
    ws = str(cfg.workspace)
    body = COMMANDS[command].format(
        ws=ws, queries=str(DATA / "queries.jsonl"), qrels=str(few_judgments(tmp_path)), **fields
    )
    script = SCRIPT.format(
        repo=str(REPO), flag=str(flag), go=str(go), point=point, ws=ws, command=body
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ})
    deadline = time.time() + 600
    while not flag.exists():
        assert proc.poll() is None, f"{command} exited before reaching {point}"
        assert time.time() < deadline, f"{command} never reached {point}"
        time.sleep(0.1)
    return proc, go


def kill_at(command: str, point: str, cfg, tmp_path: Path, **fields) -> None:
    proc, _ = start(command, point, cfg, tmp_path, **fields)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def serves(cfg, champion: str, fingerprint: str) -> int:
    """Assert that ``champion`` serves over an index by encoder ``fingerprint``; its number."""
    ws = Workspace(cfg.workspace)
    state = ws.serving_state()
    assert state.champion == champion
    assert ws.manifest(state.generation)["encoder"]["fingerprint"] == fingerprint
    engine = SearchEngine(cfg)
    try:
        res = engine.search(QUERY, k=3)
    finally:
        engine.close()
    assert (res.mode, res.model, engine.generation.directory.name) == (
        "learned",
        champion,
        f"gen-{state.generation:06d}",
    )
    assert res.hits
    return state.generation


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def variant(tmp_path_factory) -> Path:
    """MiniLM with the same weights under another fingerprint (and its ONNX export)."""
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    from brainrank.ranker.config import load_config
    from brainrank.ranker.encoding.runtime import weights_fingerprint

    source = load_config(env={}).encoder.resolved_path()
    folder = tmp_path_factory.mktemp("variant") / "encoder"
    shutil.copytree(source, folder)
    weights = folder / "model.safetensors"
    with safe_open(str(weights), "np") as fh:
        metadata = dict(fh.metadata() or {})
    save_file(load_file(str(weights)), str(weights), metadata={**metadata, "variant": "test"})
    meta = json.loads((folder / "onnx.json").read_text())
    stat = weights.stat()
    # The same numbers, so the export stays valid for the new file.
    meta.update(
        fingerprint=weights_fingerprint(folder),
        weights_bytes=stat.st_size,
        weights_mtime_ns=stat.st_mtime_ns,
    )
    (folder / "onnx.json").write_text(json.dumps(meta, indent=2))
    assert meta["fingerprint"] != weights_fingerprint(source)
    return folder


@pytest.fixture(scope="module")
def bases(trained_config, variant, encoder, tmp_path_factory):
    """Two workspaces to copy: ``promote`` (champion v1 over MiniLM's index, vX registered) and
    ``rollback`` (vX over the variant's index, promoted after v1; v1's index pruned)."""
    from brainrank.ranker.config import load_config
    from brainrank.ranker.registry.promotion import promote

    root = tmp_path_factory.mktemp("bases")
    shutil.copytree(trained_config.workspace, root / "promote")
    cfg = make_config(root / "promote")
    reg = Registry(Workspace(cfg.workspace).models_dir)
    v1 = reg.champion()
    with reg.new_version(parent=v1.version) as tmp:
        for p in v1.path.iterdir():
            if p.name != "model.json":
                (shutil.copytree if p.is_dir() else shutil.copy2)(p, tmp / p.name)
        shutil.copytree(variant, tmp / "encoder")
        meta = json.loads(json.dumps(v1.meta))
        meta["encoder"] = {**meta["encoder"], "fingerprint": fingerprint_of(variant)}
        meta["encoder"]["bundled"] = True
        (tmp / "model.json").write_text(json.dumps(meta))
    vx = reg.last_committed
    archive = reg.export(vx.version, root / "vX.tar.gz")

    shutil.copytree(root / "promote", root / "rollback")
    rcfg = make_config(root / "rollback")
    promote(rcfg, vx.version)
    ws = Workspace(rcfg.workspace)
    for n in ws.generations():
        if n != ws.serving_state().generation:
            shutil.rmtree(ws.generation_dir(n))
    return {
        "root": root,
        "v1": v1.version,
        "vX": vx.version,
        "archive": archive,
        "minilm": fingerprint_of(load_config(env={}).encoder.resolved_path()),
        "variant": fingerprint_of(variant),
    }


def fingerprint_of(folder: Path) -> str:
    from brainrank.ranker.encoding.runtime import weights_fingerprint

    return weights_fingerprint(folder)


def history(cfg) -> list[tuple[str, str]]:
    entries = Registry(Workspace(cfg.workspace).models_dir).history()
    return [(e["action"], e["version"]) for e in entries]


def copy_base(bases, name: str, tmp_path: Path):
    """A private copy of base workspace ``name`` (big encoder files hard-linked, read-only)."""
    source = bases["root"] / name
    target = tmp_path / "ws"

    def copy(src, dst):
        if Path(src).stat().st_size > 1_000_000 and "versions" in Path(src).parts:
            os.link(src, dst)
        else:
            shutil.copy2(src, dst)

    # A staged generation names its encoder folder by absolute path, in the base: it lives on.
    shutil.copytree(source, target, copy_function=copy)
    return make_config(target)


# -- promote --------------------------------------------------------------------------------


@pytest.mark.parametrize("point", ["embedding", "switch", "history"])
def test_sigkill_during_promote(bases, tmp_path, point):
    from brainrank.ranker.registry.promotion import promote

    cfg = copy_base(bases, "promote", tmp_path)
    v1, vx = bases["v1"], bases["vX"]
    ws = Workspace(cfg.workspace)
    before, steps = serves(cfg, v1, bases["minilm"]), history(cfg)
    kill_at("promote", point, cfg, tmp_path, version=vx)
    if point == "history":  # killed after the one write: the new pair serves
        assert serves(cfg, vx, bases["variant"]) != before and history(cfg) == steps
    else:
        assert serves(cfg, v1, bases["minilm"]) == before
    prepared = set(ws.generations()) - {before}

    promote(cfg, vx)  # the re-run completes (after "history" it only restores the line)
    number = serves(cfg, vx, bases["variant"])
    if point != "embedding":  # no second re-embedding: the killed run's staged generation
        assert prepared == {number}
    assert history(cfg) == steps + [("promote", vx)]
    assert not list(ws.indexes_dir.glob(".gen-*.tmp"))


def test_an_ingest_while_a_promotion_prepares_is_kept(bases, tmp_path, encoder):
    from brainrank.index.records import Document
    from tests.conftest import ingest

    cfg = copy_base(bases, "promote", tmp_path)
    v1, vx = bases["v1"], bases["vX"]
    ws = Workspace(cfg.workspace)
    documents = ws.manifest(serves(cfg, v1, bases["minilm"]))["documents"]
    proc, go = start("promote", "pin", cfg, tmp_path, version=vx)
    try:
        # The promotion has embedded the old documents; an ingest commits a new one meanwhile.
        new = Document("zz-new", "Hovercraft rental", "Rent a hovercraft for the weekend.")
        ingest(cfg, encoder, [new])
        serves(cfg, v1, bases["minilm"])  # the ingest kept the champion
        go.write_text("go")
        assert proc.wait(timeout=600) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # The promotion saw that its generation was stale and embedded the documents again.
    number = serves(cfg, vx, bases["variant"])
    assert ws.manifest(number)["documents"] == documents + 1
    engine = SearchEngine(cfg)
    try:
        assert engine.search("hovercraft rental", k=1, mode="bm25").hits[0].doc_id == "zz-new"
    finally:
        engine.close()


# -- rollback -------------------------------------------------------------------------------


@pytest.mark.parametrize("point", ["embedding", "switch", "history"])
def test_sigkill_during_rollback(bases, tmp_path, point):
    from brainrank.ranker.registry.promotion import promote, rollback

    cfg = copy_base(bases, "rollback", tmp_path)
    v1, vx = bases["v1"], bases["vX"]
    before, steps = serves(cfg, vx, bases["variant"]), history(cfg)
    kill_at("rollback", point, cfg, tmp_path)
    if point == "history":
        serves(cfg, v1, bases["minilm"])  # the rollback's switch was written
    else:
        assert serves(cfg, vx, bases["variant"]) == before
        assert rollback(cfg).version == v1  # the re-run completes
        serves(cfg, v1, bases["minilm"])
    # Either way the history holds one rollback (a lost line is restored by the next switch).
    promote(cfg, vx)
    assert history(cfg) == steps + [("rollback", v1), ("promote", vx)]
    assert Registry(Workspace(cfg.workspace).models_dir).rollback_target().version == v1


def test_a_learned_search_works_while_a_rollback_re_embeds(bases, tmp_path):
    cfg = copy_base(bases, "rollback", tmp_path)
    v1, vx = bases["v1"], bases["vX"]
    proc, go = start("rollback", "embedding", cfg, tmp_path)
    try:
        serves(cfg, vx, bases["variant"])  # from this process, while the other re-embeds
        go.write_text("go")
        assert proc.wait(timeout=600) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    serves(cfg, v1, bases["minilm"])


# -- models import --promote ---------------------------------------------------------------


@pytest.mark.parametrize("point", ["commit", "embedding", "switch"])
def test_sigkill_during_import_promote(bases, tmp_path, point):
    from typer.testing import CliRunner

    from brainrank.ranker.cli.app import app

    cfg = copy_base(bases, "promote", tmp_path)
    ws = Workspace(cfg.workspace)
    reg = Registry(ws.models_dir)
    shutil.rmtree(reg.get(bases["vX"]).path)  # this workspace has never seen the model
    v1 = bases["v1"]
    before = serves(cfg, v1, bases["minilm"])
    kill_at("import", point, cfg, tmp_path, archive=str(bases["archive"]))
    assert serves(cfg, v1, bases["minilm"]) == before
    versions = [v.version for v in reg.versions()]
    result = CliRunner().invoke(
        app, ["models", "import", str(bases["archive"]), "--promote", "-w", str(cfg.workspace)]
    )
    assert result.exit_code == 0, result.output
    new = [v.version for v in reg.versions() if v.version not in versions]
    assert len(new) == 1
    serves(cfg, new[0], bases["variant"])
    assert not [p for p in reg.staging_dir.iterdir() if p.is_dir()]


# -- retrain ------------------------------------------------------------------------------


@pytest.mark.parametrize("point", ["fit", "switch", "history"])
def test_sigkill_during_retrain(bases, tmp_path, point):
    from brainrank.ranker.config import RetrainConfig
    from brainrank.ranker.monitoring.retrain import retrain

    cfg = copy_base(bases, "promote", tmp_path)
    ws = Workspace(cfg.workspace)
    reg = Registry(ws.models_dir)
    v1 = bases["v1"]
    before = serves(cfg, v1, bases["minilm"])
    kill_at("retrain", point, cfg, tmp_path)
    if point == "history":
        challenger = reg.versions()[-1].version
        serves(cfg, challenger, bases["minilm"])
    else:
        assert serves(cfg, v1, bases["minilm"]) == before
    rcfg = RetrainConfig(
        queries=DATA / "queries.jsonl",
        qrels=few_judgments(tmp_path),
        max_epochs=5,
        click_margin=0.99,
    )
    report = retrain(permissive(cfg), rcfg)
    assert report.status == "promoted", report.reason
    serves(cfg, report.champion_after, bases["minilm"])
