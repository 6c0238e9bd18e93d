"""``brainrank adapt``: fit the encoder to the collection with no judgments at all.

The encoder starts from a model trained on public data; a user with documents but no
judgments can still adapt it to their collection. Pairs are mined from the documents
themselves (``encoding.adapt_pairs``: title -> body and inverse cloze), each with a BM25 hard
negative, and the encoder is fine-tuned on them with the contrastive loss and optimiser of
``train --encoder`` (``encoding.finetune``), then averaged with the starting weights
(``AdaptOptions.interpolation``). The collection is then re-embedded into a staged
generation while the current one keeps serving.

The result is a registry version: the adapted encoder, plus the champion's ranker when there
is one (the ranker reads per-query normalised features, so it carries over to the new
encoder's similarities; the check below is what decides). Without a champion the version holds
only the encoder, and serving it means serving its generation in the fixed modes; ``train``
afterwards starts from the adapted encoder and bundles it.

Where the workspace has judgments, the version is checked like any challenger
(``decision.decide``): with a champion, against the champion on the champion's held-out
queries; without one, the configured fusion over the adapted index against the same fusion
over the current index, on every judged query (nothing was trained on them). It serves only
when the lower bound of the paired-bootstrap interval is above the margin. Without judgments
there is nothing to check against, and it serves unless ``promote`` is False.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from brainrank.index.errors import BrainrankError, InputError
from brainrank.index.workspace import Workspace
from brainrank.ranker.config import Config
from brainrank.ranker.encoding.adapt_pairs import PairParams, mine_pairs
from brainrank.ranker.learning.decision import Decision, decide
from brainrank.ranker.learning.encoder_stage import save_and_stage
from brainrank.ranker.learning.features import SCHEMA_VERSION
from brainrank.ranker.learning.learned import ENCODER_DIR
from brainrank.ranker.progress import Progress
from brainrank.ranker.retrieval.search import SearchEngine

# A champion's files that describe its ranker, copied into the adapted version (everything
# but its own encoder and model.json).
_NOT_COPIED = {ENCODER_DIR, "model.json"}
# Fine-tuning time budget: the schedule shrinks to the steps that fit (as train --encoder).
ADAPT_SECONDS = 900.0


@dataclass(frozen=True)
class AdaptOptions:
    # Half the pairs salient terms -> document: chosen on the train judgments of SciFact and
    # NFCorpus (dense +0.004 and +0.016, hybrid -0.004 and +0.001, where the mix without them
    # moved dense +0.001 and -0.003, hybrid +0.002 and -0.005; bench_generalize.py --rows adapt).
    pairs: PairParams = PairParams(terms_share=0.5)
    # Chosen on SciFact *train* queries (bench/bench_generalize.py --rows adapt-choice):
    # a small step keeps what the public pretraining taught.
    learning_rate: float = 2e-5
    epochs: int = 1
    # BM25's best non-source documents per pair, beside the in-batch negatives. Zero by
    # default: without them, train dense +0.006 (SciFact) and +0.018 (NFCorpus), hybrid -0.000
    # and +0.003, against +0.004, +0.016, -0.004, +0.001 with one (bench_generalize.py --rows
    # adapt --adapt-variants terms,terms-no-negatives): a BM25 negative teaches the encoder to
    # push away what BM25 already ranks, which the hybrid needs it to agree on.
    hard_negatives: int = 0
    # The fine-tuned weights' share in the served encoder; the rest are the starting weights
    # (finetune.interpolate_weights). Half and half: on the train judgments, against the
    # adapted weights alone, SciFact dense +0.004 and hybrid +0.001, NFCorpus dense -0.0035 and
    # hybrid +0.001 (bench_generalize.py --rows adapt --adapt-variants
    # terms-no-negatives,terms-wise; bench/RESULTS.md, 2026-12-04).
    interpolation: float = 0.5
    promote: bool = True
    max_seconds: float | None = ADAPT_SECONDS

    def __post_init__(self) -> None:
        if not 0.0 < self.interpolation <= 1.0:
            raise InputError(
                f"interpolation (the adapted weights' share) must be in (0, 1], got "
                f"{self.interpolation}"
            )


@dataclass
class AdaptResult:
    version: str
    promoted: bool
    reason: str
    summary: dict
    decision: Decision | None = None


def adapt(
    cfg: Config, options: AdaptOptions = AdaptOptions(), *, progress: Progress | None = None
) -> AdaptResult:
    """Adapt the serving encoder to the collection; register, check and maybe serve it."""
    from brainrank.ranker.encoding.finetune import (
        FinetuneParams,
        finetune_encoder,
        interpolate_weights,
        mine_bm25_negatives,
    )
    from brainrank.ranker.encoding.loading import encoder_path_for, load_encoder
    from brainrank.ranker.registry.registry import Registry

    progress = progress or Progress()
    t_start = time.perf_counter()
    ws = Workspace(cfg.workspace)
    engine = SearchEngine(cfg)
    gen = engine.generation
    if gen.vectors is None or not gen.doc_ids:
        raise InputError("the collection is empty; ingest documents before adapting the encoder")
    registry = Registry(ws.models_dir)
    champion = engine.champion()
    base = encoder_path_for(cfg, gen.manifest)
    tuned = load_encoder(base, cfg.encoder.max_length)
    if not hasattr(tuned, "keras_model") or not (Path(base) / "config.json").is_file():
        raise BrainrankError(f"the encoder at {base} is not a BERT model; adapt fine-tunes BERT")

    docs = engine.store.get(gen.doc_ids)
    documents = [docs[d] for d in gen.doc_ids]
    mined = mine_pairs(documents, options.pairs)
    if len(mined) < 2:
        raise InputError(
            f"only {len(mined)} training pairs could be mined from the collection; adapting "
            "needs documents with titles or several sentences"
        )
    texts = [d.full_text for d in documents]
    negatives = None
    if options.hard_negatives:
        rows = mine_bm25_negatives(
            gen.bm25.scores,
            texts,
            [p.query for p in mined],
            [{p.source} for p in mined],
            k=options.hard_negatives,
            seed=options.pairs.seed,
        )
        negatives = [[texts[i] for i in row] for row in rows]
    params = FinetuneParams(
        hard_negatives=options.hard_negatives,
        epochs=options.epochs,
        learning_rate=options.learning_rate,
        precision=cfg.encoder.bulk_precision,
        max_seconds=options.max_seconds,
        seed=options.pairs.seed,
    )
    pairs = [(p.query, p.positive) for p in mined]
    start = tuned.keras_model.get_weights() if options.interpolation < 1.0 else None
    with registry.new_version(parent=champion.version if champion else None) as tmp:
        total = len(pairs) * params.epochs
        with progress.task("Adapting encoder (mined pairs)", total) as advance:
            tuning = finetune_encoder(
                tuned,
                pairs,
                negatives,
                params,
                progress=advance,
            )
        if start is not None:
            interpolate_weights(tuned, start, options.interpolation)
        # The adapted encoder has seen no query: a later `train --encoder` starting from it may
        # fit its ranker on this index (encoder_stage.fine_tuned_here).
        number, report = save_and_stage(cfg, ws, tuned, tmp / ENCODER_DIR, progress, base)
        summary = {
            "pairs": len(pairs),
            "kinds": {k: sum(p.kind == k for p in mined) for k in ("title", "cloze", "terms")},
            "options": asdict(options),
            "base_encoder": str(base),
            "finetune": {k: v for k, v in tuning.items() if k != "pairs"},
            "reembed_seconds": round(report.seconds.get("total", 0.0), 2),
        }
        encoder_meta = {
            "name": gen.vectors.encoder.name,
            "fingerprint": tuned.fingerprint,
            "bundled": True,
        }
        if champion is not None:
            for item in champion.path.iterdir():
                if item.name in _NOT_COPIED:
                    continue
                copy = shutil.copytree if item.is_dir() else shutil.copyfile
                copy(item, tmp / item.name)
            meta = {
                k: v
                for k, v in champion.meta.items()
                if k not in ("files", "version", "seal", "checksum", "metrics", "promotion")
            }
            meta["ranker_from"] = champion.version
        else:
            meta = {"kind": "encoder", "feature_schema": {"version": SCHEMA_VERSION, "names": []}}
        meta.update(encoder=encoder_meta, adaptation=summary, staged_generation=number)
        meta["config"] = cfg.to_dict()
        (tmp / "model.json").write_text(json.dumps(meta, indent=2, default=str))
    version = registry.last_committed
    ws.update_manifest(number, encoder_path=str(version.path / ENCODER_DIR))

    decision = _check(cfg, engine, version.version, number, champion, progress)
    summary["seconds"] = round(time.perf_counter() - t_start, 2)
    if decision is None:
        reason = (
            "no judgments in the workspace to check it against; adapting can also lower "
            "quality (bench/RESULTS.md), so judge some queries and compare"
        )
        serve = options.promote
    else:
        reason, serve = decision.reason, options.promote and decision.promote
    if not options.promote:
        reason += "; not served (--no-promote)"
    if serve:
        from brainrank.ranker.registry.promotion import promote

        promote(cfg, version.version, progress=progress)
    return AdaptResult(version.version, serve, reason, summary, decision)


def _check(cfg, engine, version: str, number: int, champion, progress) -> Decision | None:
    """The adapted version against what serves, on judged queries nothing trained on."""
    from brainrank.ranker.evaluation import per_query
    from brainrank.ranker.feedback.judgments import JudgmentStore

    if not JudgmentStore.exists(cfg.workspace):
        return None
    with JudgmentStore.open(cfg.workspace) as store:
        found = store.judgments(None)
    judged = {q for q in found.qrels if q in found.queries}
    if not judged:
        return None
    staged = SearchEngine(cfg, generation=number)
    if champion is not None:  # the same ranker over either index: the champion's holdout
        queries = sorted(judged & set(champion.meta.get("holdout_queries") or []))
        mode, mine, against = "learned", version, f"champion {champion.version}"
    else:
        queries, mode, mine = sorted(judged), "hybrid", None
        against = "hybrid over the current index"
    qrels = {q: found.qrels[q] for q in queries}
    runs = {"challenger": {}, against: {}}
    try:
        with progress.task("Checking the adapted encoder", 2 * len(queries)) as advance:
            for q in queries:
                text = found.queries[q]
                runs["challenger"][q] = _ids(staged.search(text, k=100, mode=mode, model=mine))
                runs[against][q] = _ids(engine.search(text, k=100, mode=mode))
                advance(2)
    finally:
        staged.close()
    scores = {name: per_query(qrels, run) for name, run in runs.items()}
    return decide(scores["challenger"], {against: scores[against]}, cfg.promotion)


def _ids(result) -> list[str]:
    return [h.doc_id for h in result.hits]
