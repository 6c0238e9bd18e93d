"""The encoder side of ``train --finetune-encoder``: adapt the serving encoder to the judged
queries and stage an index generation embedded by it (the champion keeps serving meanwhile)."""

from __future__ import annotations

import json
from pathlib import Path

from brainrank.index.errors import InputError
from brainrank.index.workspace import Workspace
from brainrank.ranker.learning.learned import ENCODER_DIR

# Encoder fine-tuning: at most this many (query, relevant document) pairs per query, and a time
# budget (the schedule shrinks to the steps that fit). SciFact (at most 5 per query) takes
# 281 s on 2 cores, well inside it.
FINETUNE_PAIRS_PER_QUERY = 5
FINETUNE_SECONDS = 900.0
# Written into an encoder folder by ``brainrank adapt`` (learning.adapt): the fingerprint of the
# weights it adapted without judgments. A fine-tuned copy inherits the file, not the weights.
ADAPTED_FILE = "adapted.json"


def fine_tuned_here(ws: Workspace, generation) -> bool:
    """Whether a generation was embedded by an encoder some model of this workspace fine-tuned
    on judged queries (an encoder ``adapt`` fitted to the documents alone has seen none)."""
    path = generation.manifest.get("encoder_path")
    if not path or not Path(path).is_relative_to(ws.models_dir):
        return False
    vectors = generation.vectors
    return vectors is None or not _adapted_only(Path(path), vectors.encoder.fingerprint)


def _adapted_only(folder: Path, fingerprint: str) -> bool:
    try:
        marker = json.loads((folder / ADAPTED_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("fingerprint") == fingerprint


def save_and_stage(cfg, ws: Workspace, tuned, folder: Path, progress, adapted_from=None):
    """Save the tuned encoder into ``folder`` and stage an index generation it embeds on the
    bulk runtime: (generation number, its report). ``adapted_from`` (the encoder ``adapt``
    started from) marks the folder ADAPTED_FILE with the saved weights' fingerprint."""
    from brainrank.ranker.encoding.bulk import load_bulk_encoder
    from brainrank.ranker.retrieval.indexing import stage_generation

    out = tuned.save(folder)  # the fingerprint is the saved file's from here on
    if adapted_from is not None:
        marker = {"fingerprint": tuned.fingerprint, "base": str(adapted_from)}
        (out / ADAPTED_FILE).write_text(json.dumps(marker) + "\n")
    return stage_generation(
        ws,
        cfg,
        encoder_factory=lambda: load_bulk_encoder(out, cfg.encoder, reference=tuned),
        encoder_path=out,
        progress=progress,
    )


def finetune_for_training(cfg, ws, engine, tmp, queries, qrels, ids, progress):
    """Fine-tune a copy of the serving encoder into ``tmp/encoder`` and stage an index for it."""
    from brainrank.ranker.encoding.finetune import (
        FinetuneParams,
        finetune_encoder,
        mine_bm25_negatives,
    )
    from brainrank.ranker.encoding.loading import encoder_path_for, load_encoder

    base = encoder_path_for(cfg, engine.generation.manifest)
    tuned = load_encoder(base, cfg.encoder.max_length)
    gen = engine.generation
    docs = engine.store.get(gen.doc_ids)
    texts = [docs[d].full_text for d in gen.doc_ids]
    position = {d: i for i, d in enumerate(gen.doc_ids)}
    pairs, positives, query_texts = [], [], []
    for q in ids:
        graded = sorted((-g, d) for d, g in qrels[q].items() if g > 0 and d in position)
        rel = {position[d] for _, d in graded}
        # The best-graded few per query: a query with hundreds of judged documents (NFCorpus)
        # would otherwise take over the schedule and the time budget.
        for p in sorted(position[d] for _, d in graded[:FINETUNE_PAIRS_PER_QUERY]):
            pairs.append((queries[q], texts[p]))
            positives.append(rel)
            query_texts.append(queries[q])
    if not pairs:
        raise InputError("no judged relevant documents to fine-tune the encoder on")
    negatives_idx = mine_bm25_negatives(gen.bm25.scores, texts, query_texts, positives, k=1)
    negatives = [[texts[i] for i in row] for row in negatives_idx]
    # 1e-4 beat 5e-5 and 2e-5 on a held-out 20% of SciFact train queries (dense nDCG@10
    # 0.700 vs 0.690 vs 0.673; bench/bench_finetune.py); test was not used to choose it.
    params = FinetuneParams(
        learning_rate=1e-4,
        precision=cfg.encoder.bulk_precision,
        max_seconds=FINETUNE_SECONDS,
    )
    with progress.task("Fine-tuning encoder (pairs)", len(pairs) * params.epochs) as advance:
        summary = finetune_encoder(tuned, pairs, negatives, params, progress=advance)
    number, report = save_and_stage(cfg, ws, tuned, tmp / ENCODER_DIR, progress)
    summary["reembed_seconds"] = round(report.seconds.get("total", 0.0), 2)
    return number, summary
