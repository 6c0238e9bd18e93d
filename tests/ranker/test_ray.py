"""Bulk embedding on a real local Ray cluster of 2 workers against the single-process path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from brainrank.ranker.cli.app import app
from brainrank.ranker.config import ClusterConfig, load_config
from brainrank.ranker.encoding.bulk import load_bulk_encoder
from brainrank.ranker.encoding.ray_bulk import RayBulkEncoder, ray_session
from brainrank.ranker.retrieval.search import SearchEngine
from tests.conftest import DATA

try:
    import ray
    import ray.data
except ImportError:
    ray = None
needs_ray = pytest.mark.skipif(
    ray is None, reason="Ray is an optional extra: pip install 'brainrank[ray]' -c constraints.txt"
)

# Two encoder actors of one CPU each; batches of 64 passages, so the sample makes ten of them.
CLUSTER = ClusterConfig(actors=2, cpus_per_actor=1, batch_rows=64)


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster of 2 CPUs for the module, started and shut down by brainrank."""
    with ray_session(None, cpus=2) as started:
        assert started and ray.cluster_resources()["CPU"] == 2
        yield
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def settings():
    cfg = load_config(env={}).encoder
    return cfg.resolved_path(), cfg


@pytest.fixture(scope="module")
def texts(sample_docs) -> list[str]:
    return list(dict.fromkeys(d.full_text for d in sample_docs))  # distinct: rows are told apart


@pytest.fixture(scope="module")
def single(settings, texts) -> np.ndarray:
    """The vectors of the single-process path (``brainrank ingest`` without --ray)."""
    path, cfg = settings
    return load_bulk_encoder(path, cfg).encode(texts, batch_size=cfg.batch_size)


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def assert_same_vectors(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape and got.dtype == np.float32
    assert cosines(got, want).min() >= 0.9999
    # In order: each row is nearest to its own single-process row among all of them.
    np.testing.assert_array_equal(np.argmax(got @ want.T, axis=1), np.arange(len(want)))


def logging_loader(log: Path, die_marker: Path | None = None):
    """An actor's loader: the real bulk encoder, each load's process id appended to ``log``.

    With ``die_marker``, the first process to reach its second batch creates the marker (its
    pid inside) and exits at once, with no cleanup, as a killed worker does. Defined in a
    function, so Ray ships it by value to the workers.
    """

    def load(path, cfg, threads):
        from brainrank.ranker.encoding.bulk import load_bulk_encoder

        with open(log, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        encoder = load_bulk_encoder(path, cfg, threads=threads)
        if die_marker is None:
            return encoder
        real, calls = encoder.encode, []

        def encode(texts, **kwargs):
            calls.append(len(texts))
            if len(calls) == 2:
                try:
                    fd = os.open(die_marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    pass  # another worker died already: this one works
                else:
                    os.write(fd, str(os.getpid()).encode())
                    os.close(fd)
                    os._exit(1)
            return real(texts, **kwargs)

        encoder.encode = encode
        return encoder

    return load


@needs_ray
def test_an_address_where_no_cluster_answers_stops_at_once(tmp_path):
    # Before the module's cluster starts: an open session would be used whatever the address.
    res = run("ingest", DATA / "docs.jsonl", "-w", tmp_path / "ws", "--ray-address", "127.0.0.1:1")
    assert res.exit_code == 1 and "no Ray cluster answers at 127.0.0.1:1" in res.output
    assert not (tmp_path / "ws").exists()


@needs_ray
def test_vectors_equal_the_single_process_path(cluster, settings, texts, single, tmp_path):
    path, cfg = settings
    log = tmp_path / "loads"
    encoder = RayBulkEncoder(path, cfg, CLUSTER, load=logging_loader(log))
    local = load_bulk_encoder(path, cfg)
    assert (encoder.fingerprint, encoder.dim, encoder.name) == (
        local.fingerprint,
        local.dim,
        local.name,
    )
    assert encoder.precision == local.precision
    arrived: list[int] = []
    got = encoder.encode(texts, progress=arrived.append)
    assert_same_vectors(got, single)
    assert sum(arrived) == len(texts) and len(arrived) == -(-len(texts) // CLUSTER.batch_rows)
    assert len(set(log.read_text().split())) == 2  # two workers, one encoder each
    assert encoder.encode([]).shape == (0, single.shape[1])


@needs_ray
def test_a_worker_killed_mid_run_is_replaced_and_its_batch_retried(
    cluster, settings, texts, single, tmp_path
):
    path, cfg = settings
    log, marker = tmp_path / "loads", tmp_path / "killed"
    encoder = RayBulkEncoder(path, cfg, CLUSTER, load=logging_loader(log, marker))
    n = 4 * CLUSTER.batch_rows  # four batches for two workers: one of them reaches a second
    got = encoder.encode(texts[:n])
    assert marker.exists(), "no worker died: the test proved nothing"
    killed, loads = marker.read_text(), log.read_text().split()
    # Two workers, the killed one among them, then its replacement loading the encoder again.
    assert len(loads) == 3 and len(set(loads)) == 3 and killed in loads[:2]
    assert_same_vectors(got, single[:n])  # the batch it was embedding came back from the retry


def workspace_vectors(ws: Path) -> tuple[list[str], np.ndarray]:
    generation = SearchEngine(load_config(workspace=ws, env={})).generation
    return generation.doc_ids, np.asarray(generation.vectors.embeddings)


@needs_ray
def test_ingest_and_reindex_with_ray_equal_ingest_without(cluster, tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join((DATA / "docs.jsonl").read_text().splitlines(True)[:60]))
    config = tmp_path / "brainrank.toml"
    config.write_text("[cluster]\nactors = 2\nbatch_rows = 16\n")
    plain, spread = tmp_path / "plain", tmp_path / "ray"
    res = run("ingest", docs, "-w", plain, "--config", config)
    assert res.exit_code == 0, res.output
    assert "Ray" not in res.output
    res = run("ingest", docs, "-w", spread, "--config", config, "--ray")
    assert res.exit_code == 0, res.output
    assert "embedding on a local Ray cluster" in res.output and "60 added" in res.output
    ids, want = workspace_vectors(plain)
    got_ids, got = workspace_vectors(spread)
    assert got_ids == ids
    assert_same_vectors(got, want)
    res = run("reindex", "-w", spread, "--config", config, "--ray")
    assert res.exit_code == 0, res.output
    got_ids, got = workspace_vectors(spread)
    assert got_ids == ids
    assert_same_vectors(got, want)


def test_ray_is_imported_only_for_a_ray_run():
    """``brainrank --help`` and the commands' modules, the config included, never load Ray."""
    code = (
        "import sys\n"
        "from brainrank.ranker.cli import app, documents\n"
        "from brainrank.ranker.encoding import ray_bulk\n"
        "from brainrank.ranker.config import load_config\n"
        "load_config(env={})\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'ray'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_without_ray_the_error_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    res = run("ingest", DATA / "docs.jsonl", "-w", tmp_path / "ws", "--ray")
    assert res.exit_code == 1
    assert "pip install 'brainrank[ray]' -c constraints.txt" in res.output
    assert not (tmp_path / "ws").exists()  # stopped before reading or storing anything
