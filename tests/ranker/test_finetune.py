"""Encoder fine-tuning (real MiniLM, a few steps on synthetic pairs) and the two-tower fallback."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from brainrank.index.bm25 import BM25Index
from brainrank.index.errors import BrainrankError
from brainrank.index.records import Document
from brainrank.ranker.encoding.encoder import TextEncoder
from brainrank.ranker.encoding.finetune import (
    FinetuneParams,
    contrastive_loss,
    finetune_encoder,
    interpolate_weights,
    mine_bm25_negatives,
    plan_batches,
)
from brainrank.ranker.encoding.two_tower import (
    TwoTowerEncoder,
    TwoTowerParams,
    load_encoder,
    train_two_tower,
)

# Arbitrary associations the pretrained encoder cannot know: a code name and the document it
# stands for. Separate distractors serve as the hard negatives.
PAIRS = [
    ("project falcon", "The quarterly budget spreadsheet for the northern warehouse."),
    ("project heron", "Minutes of the meeting about the new parking rules."),
    ("project otter", "A recipe for lemon cake with poppy seeds."),
    ("project lynx", "Instructions for replacing the printer toner cartridge."),
    ("project badger", "The holiday schedule for the customer support team."),
    ("project walrus", "Safety checklist for the chemistry laboratory."),
    ("project marten", "A short history of the town's railway station."),
    ("project condor", "Guidelines for writing the annual performance review."),
]
DISTRACTORS = [
    "Notes on the weather during the spring festival.",
    "How to water succulents in a small apartment.",
    "The football team's results this season.",
    "A list of books recommended by the library.",
    "Tips for choosing a good pair of running shoes.",
    "The opening hours of the swimming pool.",
    "A guide to the museum's modern art collection.",
    "Directions to the airport by public transport.",
]
NEGATIVES = [[DISTRACTORS[i]] for i in range(len(PAIRS))]
PARAMS = FinetuneParams(
    epochs=3,
    batch_size=4,
    learning_rate=1e-4,
    warmup_fraction=0.0,
    hard_negatives=1,
    query_max_length=16,
    doc_max_length=32,
    seed=7,
)


def margins(encoder) -> np.ndarray:
    """Per query: cosine to its own document minus the best cosine to any other document."""
    q = encoder.encode([p[0] for p in PAIRS])
    d = encoder.encode([p[1] for p in PAIRS] + DISTRACTORS)
    sims = q @ d.T
    own = np.diag(sims[:, : len(PAIRS)])
    others = sims.copy()
    others[np.arange(len(PAIRS)), np.arange(len(PAIRS))] = -np.inf
    return own - others.max(axis=1)


@pytest.fixture(scope="module")
def minilm_dir():
    from brainrank.ranker.config import load_config
    from brainrank.ranker.encoding.fetch import fetch_encoder

    return fetch_encoder(load_config(env={}).encoder.cache_dir)


@pytest.fixture(scope="module")
def tuned(encoder, minilm_dir):
    """A loaded copy fine-tuned once, with what it looked like before."""
    probe = ["project falcon", "an unrelated sentence about tea"]
    original_vectors = encoder.encode(probe)
    original_fingerprint = encoder.fingerprint
    copy = TextEncoder.load(minilm_dir, max_length=encoder.max_length)
    before = SimpleNamespace(
        loss=contrastive_loss(copy, PAIRS, NEGATIVES),
        margins=margins(copy),
        vectors=copy.encode(probe),
    )
    summary = finetune_encoder(copy, PAIRS, NEGATIVES, PARAMS)
    return SimpleNamespace(
        encoder=copy,
        summary=summary,
        before=before,
        probe=probe,
        original=encoder,
        original_vectors=original_vectors,
        original_fingerprint=original_fingerprint,
    )


def test_finetuning_lowers_the_loss_and_separates_trained_pairs(tuned):
    enc = tuned.encoder
    assert tuned.summary["steps"] == PARAMS.epochs * 2  # 8 pairs in batches of 4
    assert tuned.summary["pairs"] == len(PAIRS)
    after_loss = contrastive_loss(enc, PAIRS, NEGATIVES)
    assert after_loss < tuned.before.loss - 0.3, (tuned.before.loss, after_loss)
    after = margins(enc)
    assert after.mean() > tuned.before.margins.mean() + 0.05
    # encode() runs the traced inference function, which must see the updated variables.
    assert not np.allclose(enc.encode(tuned.probe), tuned.before.vectors, atol=1e-4)


def test_original_encoder_is_untouched(tuned):
    np.testing.assert_array_equal(tuned.original.encode(tuned.probe), tuned.original_vectors)
    assert tuned.original.fingerprint == tuned.original_fingerprint


def test_fingerprint_changes_and_save_load_round_trips(tuned, tmp_path):
    enc = tuned.encoder
    assert enc.fingerprint.startswith("unsaved:")  # stale vectors can never match it
    saved = enc.save(tmp_path / "tuned")
    assert enc.fingerprint.startswith("sha256:")
    assert enc.fingerprint != tuned.original_fingerprint
    again = TextEncoder.load(saved, max_length=enc.max_length)
    assert again.fingerprint == enc.fingerprint
    texts = [p[0] for p in PAIRS] + [p[1] for p in PAIRS]
    np.testing.assert_allclose(again.encode(texts), enc.encode(texts), atol=1e-6)


def test_same_seed_gives_same_weights(tuned, minilm_dir):
    copy = TextEncoder.load(minilm_dir, max_length=tuned.encoder.max_length)
    finetune_encoder(copy, PAIRS, NEGATIVES, PARAMS)
    for a, b in zip(copy.keras_model.weights, tuned.encoder.keras_model.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)


def test_interpolation_averages_the_weights_and_keeps_part_of_the_learning(tuned, minilm_dir):
    start = TextEncoder.load(minilm_dir, max_length=tuned.encoder.max_length)
    start_weights = start.keras_model.get_weights()
    tuned_weights = tuned.encoder.keras_model.get_weights()
    mixed = TextEncoder.load(minilm_dir, max_length=tuned.encoder.max_length)
    mixed.keras_model.set_weights(tuned_weights)
    interpolate_weights(mixed, start_weights, 0.5)
    for got, t, s in zip(
        mixed.keras_model.get_weights(), tuned_weights, start_weights, strict=True
    ):
        np.testing.assert_allclose(got, (t + s) / 2, rtol=1e-6, atol=1e-7)
    assert mixed.fingerprint.startswith("unsaved:")
    assert mixed.fingerprint not in (tuned.encoder.fingerprint, start.fingerprint)
    # Half the step still separates the trained pairs better than the pretrained model.
    assert margins(mixed).mean() > tuned.before.margins.mean() + 0.02
    assert margins(mixed).mean() < margins(tuned.encoder).mean()
    # Share 0 is the starting model again.
    interpolate_weights(mixed, start_weights, 0.0)
    np.testing.assert_allclose(mixed.encode(tuned.probe), tuned.before.vectors, atol=1e-5)
    with pytest.raises(ValueError, match="share"):
        interpolate_weights(mixed, start_weights, 1.5)
    with pytest.raises(ValueError, match="do not match"):
        interpolate_weights(mixed, start_weights[:-1], 0.5)


def test_time_budget_stops_early(minilm_dir):
    copy = TextEncoder.load(minilm_dir, max_length=64)
    params = FinetuneParams(batch_size=2, hard_negatives=0, max_seconds=1e-3, epochs=5)
    summary = finetune_encoder(copy, PAIRS, None, params)
    assert summary["steps"] == 1 and summary["stopped_early"]
    assert summary["planned_steps"] == 5 * len(PAIRS) // 2


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="batch_size=1"):
        FinetuneParams(batch_size=1)
    with pytest.raises(ValueError, match="temperature=0"):
        FinetuneParams(temperature=0)
    with pytest.raises(ValueError, match="hard negatives per pair"):
        finetune_encoder(None, PAIRS, None, FinetuneParams(hard_negatives=1))
    with pytest.raises(ValueError, match="fewer than hard_negatives=2"):
        finetune_encoder(None, PAIRS, NEGATIVES, FinetuneParams(hard_negatives=2))


def test_batches_never_repeat_a_query_or_positive():
    queries = [0, 0, 0, 1, 1, 2, 3, 4, 5, 5]
    docs = [0, 1, 2, 0, 3, 4, 4, 5, 6, 7]
    batches = plan_batches(queries, docs, 4, np.random.default_rng(0))
    assert sorted(i for b in batches for i in b) == list(range(len(queries)))
    for b in batches:
        assert 1 <= len(b) <= 4
        assert len({queries[i] for i in b}) == len(b)
        assert len({docs[i] for i in b}) == len(b)


def test_mined_negatives_are_never_positive():
    rng = np.random.default_rng(3)
    vocab = [f"w{i}" for i in range(30)]
    docs = [" ".join(rng.choice(vocab, 12)) for _ in range(60)]
    docs[10] = docs[11]  # a duplicate of a positive must not become its negative
    bm25 = BM25Index.build(docs)
    queries = [" ".join(rng.choice(vocab, 4)) for _ in range(40)] + ["nothing matches this"]
    positives = [set(rng.choice(60, size=3, replace=False).tolist()) for _ in queries]
    positives[0] = {11}
    for seed in range(3):
        mined = mine_bm25_negatives(bm25.scores, docs, queries, positives, k=4, depth=20, seed=seed)
        for query, pos, negs in zip(queries, positives, mined, strict=True):
            assert len(negs) == len(set(negs)) == 4
            assert not set(negs) & pos
            assert all(docs[n] not in {docs[p] for p in pos} for n in negs)
            scores = bm25.scores(query)
            if scores.max() > 0:
                # The top `skip_top` unjudged hits are left out as likely unjudged positives.
                ranked = [d for d in np.argsort(-scores, kind="stable") if d not in pos]
                assert not set(negs) & set(int(d) for d in ranked[:3] if scores[d] > 0)
        assert 10 not in mined[0]
    again = mine_bm25_negatives(bm25.scores, docs, queries, positives, k=4, depth=20, seed=2)
    assert again == mined  # seeded


# --- two-tower fallback ----------------------------------------------------------------------

COLOURS = ["red", "blue", "green", "yellow", "black", "white"]
ITEMS = ["sofa", "lamp", "table", "chair", "rug", "shelf"]
# Query words that occur in no document: only the judgments can connect them.
COLOUR_SYN = ["crimson", "azure", "emerald", "golden", "ebony", "ivory"]
ITEM_SYN = ["couch", "light", "desk", "seat", "carpet", "bookcase"]
TT_PARAMS = TwoTowerParams(
    dim=32, embedding_dim=32, hidden=32, epochs=150, batch_size=8, learning_rate=1e-2, seed=1
)


@pytest.fixture(scope="module")
def synonym_model():
    docs, pairs, held_out = [], [], []
    for c in range(len(COLOURS)):
        for i in range(len(ITEMS)):
            text = f"{COLOURS[c]} {ITEMS[i]} for the living room"
            docs.append(Document(doc_id=f"{c}-{i}", title="", text=text))
            query = f"{COLOUR_SYN[c]} {ITEM_SYN[i]}"
            # Every colour and item is seen with four partners; the other pairings are held out.
            (held_out if (c + i) % 3 == 0 else pairs).append((query, text))
    model, summary = train_two_tower(docs, pairs, TT_PARAMS)
    return SimpleNamespace(model=model, docs=docs, pairs=pairs, held_out=held_out, summary=summary)


def test_two_tower_learns_synonyms_it_never_saw_in_documents(synonym_model):
    m = synonym_model
    assert len(m.held_out) == 12 and m.summary["final_loss"] < m.summary["first_loss"]
    doc_texts = [d.text for d in m.docs]
    d = m.model.encode(doc_texts)
    q = m.model.encode([p[0] for p in m.held_out])
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-5)
    top = (q @ d.T).argmax(axis=1)
    hits = [doc_texts[t] == text for t, (_, text) in zip(top, m.held_out, strict=True)]
    assert np.mean(hits) >= 0.75, hits


def test_two_tower_save_load_round_trip(synonym_model, tmp_path):
    model = synonym_model.model
    assert model.fingerprint.startswith("unsaved:") and model.tokenizer is None
    saved = model.save(tmp_path / "tt")
    assert model.fingerprint.startswith("sha256:")
    again = TwoTowerEncoder.load(saved)
    assert again.fingerprint == model.fingerprint and again.dim == model.dim == 32
    texts = [d.text for d in synonym_model.docs] + ["crimson couch", "", "unknown words only"]
    np.testing.assert_array_equal(again.encode(texts), model.encode(texts))  # round trip exact
    # Another batch shape may round differently in the last bits, nothing more.
    np.testing.assert_allclose(again.encode(texts, batch_size=5), model.encode(texts), atol=1e-6)
    assert np.isfinite(model.encode([""])).all()
    # Any change to the weights changes the fingerprint of the next save.
    variable = again.model.trainable_variables[0]
    variable.assign(variable + 1e-3)
    again.save(tmp_path / "changed")
    assert again.fingerprint != model.fingerprint


def test_load_encoder_tells_the_kinds_apart(synonym_model, minilm_dir, tmp_path):
    tt_dir = synonym_model.model.save(tmp_path / "tt")
    assert isinstance(load_encoder(tt_dir), TwoTowerEncoder)
    bert = load_encoder(minilm_dir, max_length=64)
    assert isinstance(bert, TextEncoder) and bert.max_length == 64
    with pytest.raises(BrainrankError, match="not an encoder folder"):
        load_encoder(tmp_path)
    with pytest.raises(BrainrankError, match="does not exist"):
        load_encoder(tmp_path / "missing")
    other = tmp_path / "roberta"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "roberta"}))
    with pytest.raises(BrainrankError, match="roberta"):
        load_encoder(other)
