"""``brainrank adapt``: pairs mined from documents, a registry version, what serves after it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from brainrank.index.records import Document
from brainrank.ranker.cli.app import app
from brainrank.ranker.encoding.adapt_pairs import PairParams, mine_pairs, sentences
from tests.conftest import DATA, ingest, make_config

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_sentences_split_at_end_punctuation_before_a_capital():
    text = "Insulin lowers glucose. It acts on the liver! Does it? e.g. not here. 3 trials agree."
    assert sentences(text) == [
        "Insulin lowers glucose.",
        "It acts on the liver!",
        "Does it? e.g. not here.",
        "3 trials agree.",
    ]


def _doc(i, title, text):
    return Document(f"d{i}", title, text)


BODY = (
    "Vitamin D deficiency is common in northern countries. "
    "Supplements raise serum levels within weeks of daily use. "
    "Bone density improved only in the deficient group."
)


def test_title_pairs_ask_with_the_title_for_the_body():
    docs = [_doc(i, f"Vitamin D supplements and bone density study {i}", BODY) for i in range(20)]
    pairs = mine_pairs(docs, PairParams(title_share=1.0))
    assert len(pairs) == 20 and {p.kind for p in pairs} == {"title"}
    for p in pairs:
        assert p.query == docs[p.source].title and p.positive == BODY


def test_cloze_pairs_take_the_sentence_out_of_its_context():
    docs = [_doc(i, f"Vitamin D study {i} in adults", BODY) for i in range(30)]
    pairs = mine_pairs(docs, PairParams(title_share=0.0, keep_sentence=0.0))
    assert {p.kind for p in pairs} == {"cloze"}
    for p in pairs:
        assert p.query in sentences(BODY)
        assert p.query not in p.positive  # removed from its context
        assert p.positive.startswith(docs[p.source].title + "\n")
        assert len(sentences(p.positive.split("\n", 1)[1])) == 2


def test_text_without_sentences_gives_a_span_of_words_taken_out_of_its_context():
    words = [f"w{i}" for i in range(60)]  # lowercased, no punctuation, no title
    docs = [_doc(i, "", " ".join(words)) for i in range(20)]
    pairs = mine_pairs(docs, PairParams(keep_sentence=0.0, span_words=(8, 12)))
    assert len(pairs) == 20 and {p.kind for p in pairs} == {"cloze"}
    for p in pairs:
        span = p.query.split()
        assert 8 <= len(span) <= 12
        start = words.index(span[0])
        assert span == words[start : start + len(span)]
        assert p.positive.split() == words[:start] + words[start + len(span) :]


def test_salient_terms_name_the_document_in_its_own_words():
    topics = ["glucose insulin liver", "bone density calcium", "sleep melatonin circadian"]
    docs = [
        _doc(i, "", f"The {t} study {i} measured {t} and {t.split()[0]} again in {i % 3} groups.")
        for i, t in enumerate(topics * 6)
    ]
    # Too few words shared with other documents to single it out, and nothing else to ask.
    docs.append(_doc(99, "", "A zyxwv only here, with the glucose insulin liver words too."))
    pairs = mine_pairs(docs, PairParams(terms_share=1.0, terms_words=(2, 3)))
    assert len(pairs) == len(docs) - 1 and {p.kind for p in pairs} == {"terms"}
    for p in pairs:
        doc = docs[p.source]
        words = p.query.split()
        assert 2 <= len(words) <= 3 and p.positive == doc.full_text
        text = doc.full_text.lower()
        assert all(w in text for w in words) and not {"the", "and", "in"} & set(words)
        assert words == sorted(words, key=text.index)  # in the order they first occur
        assert topics[doc_topic(doc)].split()[0] in words  # its most frequent topic word
    with pytest.raises(ValueError, match="terms_share"):
        PairParams(terms_share=1.5)


def doc_topic(doc):
    return int(doc.doc_id[1:]) % 3


def test_mining_is_seeded_bounded_and_skips_documents_with_nothing_to_ask():
    docs = [_doc(i, "", "Too short.") for i in range(10)]  # no title, one short sentence
    docs += [_doc(10 + i, f"A title of enough words {i}", BODY) for i in range(50)]
    first = mine_pairs(docs, PairParams(max_pairs=25, seed=3))
    assert len(first) == 25 and all(p.source >= 10 for p in first)
    assert len({p.source for p in first}) == 25  # one pair per document
    assert first == mine_pairs(docs, PairParams(max_pairs=25, seed=3))
    assert first != mine_pairs(docs, PairParams(max_pairs=25, seed=4))
    with pytest.raises(ValueError, match="max_pairs"):
        PairParams(max_pairs=0)


@pytest.fixture(scope="module")
def adapted(tmp_path_factory, encoder, sample_docs):
    """A sample workspace, its vectors before, and `brainrank adapt` run on it (no judgments)."""
    from brainrank.index.workspace import Workspace

    cfg = make_config(tmp_path_factory.mktemp("adapt") / "ws")
    ingest(cfg, encoder, sample_docs)
    ws = Workspace(cfg.workspace)
    before = ws.serving_state().generation
    res = run("adapt", "--pairs", 32, "--json", "-w", cfg.workspace)
    assert res.exit_code == 0, res.output
    return cfg, before, json.loads(res.stdout.strip().splitlines()[-1])


def test_adapt_without_judgments_serves_an_encoder_only_version(adapted):
    from brainrank.index.workspace import Workspace
    from brainrank.ranker.learning.encoder_stage import fine_tuned_here
    from brainrank.ranker.registry.registry import Registry
    from brainrank.ranker.retrieval.search import SearchEngine

    cfg, before, payload = adapted
    assert payload["promoted"] and payload["promotion"] is None
    assert "no judgments" in payload["reason"]
    ws = Workspace(cfg.workspace)
    state = ws.serving_state()
    assert state.champion is None and state.generation != before
    mv = Registry(ws.models_dir).get(payload["version"])
    assert not mv.has_ranker and mv.meta["adaptation"]["pairs"] == 32
    assert mv.meta["adaptation"]["options"]["interpolation"] == 0.5  # the default
    engine = SearchEngine(cfg)
    assert engine.generation.vectors.encoder.fingerprint == mv.encoder_fingerprint
    old = SearchEngine(cfg, generation=before).generation.vectors
    assert old.encoder.fingerprint != mv.encoder_fingerprint
    moved = np.sum(np.asarray(old.embeddings) * np.asarray(engine.generation.vectors.embeddings), 1)
    assert moved.min() < 0.99999  # re-embedded by the adapted weights
    assert engine.default_mode() == "hybrid"
    assert len(engine.search("vitamin d", k=5).hits) == 5
    # The adapted encoder has seen no query: not "fine-tuned here" for a later train --encoder.
    assert not fine_tuned_here(ws, engine.generation)
    res = run("search", "refund", "--mode", "learned", "--model", mv.version, "-w", cfg.workspace)
    assert res.exit_code != 0 and "no ranker" in res.output
    listed = run("models", "list", "-w", cfg.workspace)
    assert "no ranker" in listed.output
    # Pruning keeps the version whose encoder embedded the serving index.
    assert mv.version not in Registry(ws.models_dir).prune(keep=0)


def test_train_after_adapt_bundles_it_and_adapt_again_checks_against_the_champion(
    adapted, few_qrels
):
    from brainrank.index.workspace import Workspace
    from brainrank.ranker.registry.registry import Registry
    from brainrank.ranker.retrieval.search import SearchEngine

    cfg, _, first = adapted
    trained = run(
        "train", "--queries", DATA / "queries.jsonl", "--qrels", few_qrels,
        "--early-stopping", "split", "--json", "-w", cfg.workspace,
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    version = json.loads(trained.stdout.strip().splitlines()[-1])["version"]
    ws = Workspace(cfg.workspace)
    registry = Registry(ws.models_dir)
    mv = registry.get(version)
    adapted_fp = registry.get(first["version"]).encoder_fingerprint
    assert mv.has_ranker and mv.meta["encoder"] == {
        "name": mv.meta["encoder"]["name"], "fingerprint": adapted_fp, "bundled": True,
    }  # fmt: skip
    run("models", "promote", version, "-w", cfg.workspace)
    assert ws.serving_state().champion == version

    # With a champion and judgments: the champion's ranker over a newly adapted encoder,
    # compared with the champion on its held-out queries before anything serves.
    res = run("adapt", "--pairs", 32, "--interpolation", 0, "-w", cfg.workspace)
    assert res.exit_code != 0 and "interpolation" in res.output
    assert len(registry.versions()) == 2  # nothing written
    res = run(
        "adapt", "--pairs", 32, "--seed", 1, "--interpolation", 1, "--json", "-w", cfg.workspace
    )
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout.strip().splitlines()[-1])
    assert payload["adaptation"]["options"]["interpolation"] == 1.0
    decision = payload["promotion"]
    assert decision is not None and decision["queries"] == len(mv.meta["holdout_queries"])
    assert payload["promoted"] == decision["promote"]
    again = registry.get(payload["version"])
    assert again.has_ranker and again.meta["ranker_from"] == version
    assert again.meta["encoder"]["fingerprint"] != adapted_fp
    assert (again.path / "ranker").is_dir()
    if not payload["promoted"]:  # a manual promotion serves it with its own index
        res = run("models", "promote", again.version, "-w", cfg.workspace)
        assert res.exit_code == 0, res.output
    engine = SearchEngine(cfg)
    assert engine.champion().version == again.version
    result = engine.search("vitamin d", k=5)
    assert result.mode == "learned" and result.model == again.version
    # An encoder-only version cannot replace a champion's ranker.
    res = run("models", "promote", first["version"], "-w", cfg.workspace)
    assert res.exit_code != 0 and "only an adapted encoder" in res.output
