"""Session fixtures: the real encoder, the bundled sample collection and a workspace over it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"


def datasets_dir() -> Path:
    """The shared collections (BRAINRANK_DATASETS or ../shared/datasets)."""
    from brainrank.ranker.config import load_config

    return load_config().datasets


def require_collection(name: str) -> Path:
    path = datasets_dir() / name
    if not (path / "corpus.jsonl").exists():
        pytest.skip(f"collection {name!r} not found at {path} (set BRAINRANK_DATASETS)")
    return path


@pytest.fixture(scope="session")
def encoder():
    from brainrank.ranker.config import load_config
    from brainrank.ranker.encoding.encoder import TextEncoder
    from brainrank.ranker.encoding.fetch import fetch_encoder

    cfg = load_config(env={})
    path = fetch_encoder(cfg.encoder.cache_dir)
    return TextEncoder.load(path, max_length=cfg.encoder.max_length)


@pytest.fixture(scope="session")
def sample_docs():
    from brainrank.index.readers import read_documents

    return read_documents(DATA / "docs.jsonl").documents


def make_config(workspace: Path, **retrieval):
    import dataclasses

    from brainrank.ranker.config import load_config

    cfg = load_config(workspace=workspace, env={})
    if retrieval:
        cfg = dataclasses.replace(cfg, retrieval=dataclasses.replace(cfg.retrieval, **retrieval))
    return cfg


def permissive(cfg):
    """``cfg`` promoting any challenger (margin -1 on one held-out query): for tests of what a
    promotion does, not of whether a 15-epoch model on the sample earns one."""
    import dataclasses

    from brainrank.ranker.config import PromotionConfig

    return dataclasses.replace(cfg, promotion=PromotionConfig(margin=-1.0, min_holdout_queries=1))


def ingest(cfg, encoder, docs=(), delete=(), rebuild=False):
    from brainrank.index.workspace import Workspace
    from brainrank.ranker.retrieval.indexing import update_indexes

    return update_indexes(
        Workspace(cfg.workspace),
        cfg,
        documents=docs,
        delete_ids=delete,
        rebuild=rebuild,
        encoder_factory=lambda: encoder,
    )


def few_judgments(directory: Path, n: int = 40) -> Path:
    """The sample's train judgments of its first ``n`` judged queries (by id), written in
    ``directory``: for tests of what training and retraining do with their result, not of how
    well they learn, since every judged query costs training time on 2 cores."""
    lines = (DATA / "qrels-train.txt").read_text().splitlines()
    keep = set(sorted({line.split()[0] for line in lines if line.strip()})[:n])
    path = directory / f"qrels-train-{n}.txt"
    kept = [line for line in lines if line.strip() and line.split()[0] in keep]
    path.write_text("".join(f"{line}\n" for line in kept))
    return path


@pytest.fixture(scope="session")
def few_qrels(tmp_path_factory) -> Path:
    return few_judgments(tmp_path_factory.mktemp("judgments"))


@pytest.fixture(scope="session")
def sample_config(tmp_path_factory, encoder, sample_docs):
    """A workspace holding the whole sample collection (read-only for tests)."""
    cfg = make_config(tmp_path_factory.mktemp("sample") / "ws")
    ingest(cfg, encoder, sample_docs)
    return cfg


@pytest.fixture(scope="session")
def engine(sample_config, encoder):
    from brainrank.ranker.retrieval.search import SearchEngine

    return SearchEngine(sample_config, encoder=encoder)


@pytest.fixture(scope="session")
def trained_config(tmp_path_factory, encoder, sample_docs):
    """A sample workspace with a champion trained on the train judgments and the click log."""
    from brainrank.ranker.evaluation import read_qrels, read_queries
    from brainrank.ranker.learning.train import TrainOptions, train

    cfg = make_config(tmp_path_factory.mktemp("trained") / "ws")
    ingest(cfg, encoder, sample_docs)
    result = train(
        cfg,
        read_queries(DATA / "queries.jsonl"),
        read_qrels(DATA / "qrels-train.txt"),
        clicks_path=DATA / "clicks.jsonl",
        options=TrainOptions(max_epochs=15),
    )
    if not result.promoted:
        from brainrank.ranker.registry.promotion import promote

        promote(cfg, result.version)
    return cfg
