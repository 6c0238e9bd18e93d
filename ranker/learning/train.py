"""Train a challenger model and decide whether it replaces the champion.

The challenger learns a correction on top of min-max fusion (the ranker's residual feature),
from graded judgments and, optionally, position-debiased click labels. Judged queries are split
by a stable hash of their id: a holdout share compares challenger, champion and the fixed
modes (promotion needs the paired-bootstrap verdict of ``decision``; with too small a holdout
the recipe is cross-validated over all judged queries instead, ``crossval``); of the rest, a
validation share drives early stopping. With ``finetune_encoder`` the
pretrained encoder is first adapted to the collection, and the challenger is evaluated on a
staged index generation embedded by it while the champion keeps serving; the ranker itself fits
on the train queries' lists from the index before fine-tuning (the encoder has seen those
queries). The judgment prior and query memory features (``judged.set_judged_features``) are
filled in after the lists are built, out of fold for the train lists. The split lives in
``splits``, the candidate lists in ``lists``.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from brainrank.index.errors import InputError
from brainrank.index.workspace import Workspace
from brainrank.ranker.config import Config
from brainrank.ranker.evaluation import Qrels, check_judgments
from brainrank.ranker.learning import fusion_weight
from brainrank.ranker.learning.crossval import pool, subset
from brainrank.ranker.learning.decision import Decision
from brainrank.ranker.learning.encoder_stage import fine_tuned_here, finetune_for_training
from brainrank.ranker.learning.epochs import (
    CROSS_VALIDATION,
    early_stopping_mode,
)
from brainrank.ranker.learning.features import (
    SCHEMA_VERSION,
    UNSEEN_AS_PEERS,
    FeatureExtractor,
    FeatureSchema,
)
from brainrank.ranker.learning.fitting import choose_epochs, fit_ranker
from brainrank.ranker.learning.judged import set_judged_features
from brainrank.ranker.learning.learned import (
    CLICKS_FILE,
    ENCODER_DIR,
    GATE_FILE,
    PRIOR_FILE,
    RANKER_DIR,
)
from brainrank.ranker.learning.lists import (
    candidate_lists,
    feature_baseline,
    label_items,
)
from brainrank.ranker.learning.memory import MEMORY_FILE
from brainrank.ranker.learning.scratch import scratch_rankers
from brainrank.ranker.learning.splits import query_split
from brainrank.ranker.learning.verdict import compare, verdict
from brainrank.ranker.progress import Progress
from brainrank.ranker.retrieval.search import SearchEngine


@dataclass(frozen=True)
class TrainOptions:
    holdout_fraction: float = 0.2
    val_fraction: float = 0.15
    click_weight: float = 0.5
    finetune_encoder: bool = False
    promote: bool = True
    seed: int = 0
    scorer: str = "dnn"
    loss: str = "softmax"
    doc_fields: tuple[str, ...] = ()
    max_epochs: int = 100
    # "auto": early stopping by cross-validation up to epochs.CV_MAX_QUERIES judged queries,
    # else on the validation split; "cv" or "split" force one.
    early_stopping: str = "auto"
    # Choose the base fusion's dense share on the training lists (fusion_weight); False keeps
    # [retrieval] dense_weight.
    tune_fusion: bool = True
    # A document the log never showed takes its list peers' click popularity (feature
    # schema v4, features.click_columns); False trains with the v3 click features.
    click_peers: bool = True
    # The DNN scorer's size and regularisation (RankerParams).
    hidden: tuple[int, ...] = (64, 32)
    dropout: float = 0.1
    l2: float = 1e-4
    # DNNs of different random starts trained together and served as their mean (``members``).
    # None: 5 when the epoch count is cross-validated (few judged queries, where one ranker's
    # random start shows: on the sample's holdout 5 beat 1 by 0.003 nDCG@10, mean of 3 seeds),
    # else 1. GAM rankers are single. See bench/RESULTS.md.
    ensemble: int | None = None


def _encoder_warnings(options: TrainOptions, training: int, validation: int) -> list[str]:
    """Fine-tuning the encoder where the epochs would otherwise be cross-validated (few judged
    queries): say what it costs the choices."""
    if not options.finetune_encoder or (
        early_stopping_mode(options.early_stopping, training, can_cross_validate=True)
        != CROSS_VALIDATION
    ):
        return []
    return [
        f"fine-tuning the encoder with {training} judged training queries: it sees the train "
        "queries, so the base fusion's dense share and the ranker's epochs are chosen on the "
        f"{validation} validation queries alone, not cross-validated; with 150 SciFact "
        "queries this gave a worse model than training without --encoder (bench/RESULTS.md)"
    ]


@dataclass
class TrainResult:
    version: str
    promoted: bool
    reason: str
    metrics: dict[str, dict]
    summary: dict = field(default_factory=dict)
    decision: Decision | None = None


def train(
    cfg: Config,
    queries: dict[str, str],
    qrels: Qrels,
    *,
    clicks_path: Path | None = None,
    options: TrainOptions = TrainOptions(),
    progress: Progress | None = None,
    judgment_sets: tuple[str, ...] = (),
) -> TrainResult:
    """Train, evaluate and register a challenger; promote it when it beats the incumbent.

    ``judgment_sets`` names the workspace judgment sets the judgments came from; the version
    records them with the number of judged queries and judgments it was given.
    """
    from brainrank.ranker.registry.registry import Registry

    progress = progress or Progress()
    t_start = time.perf_counter()
    ws = Workspace(cfg.workspace)
    engine = SearchEngine(cfg)
    registry = Registry(ws.models_dir)
    champion = registry.champion()

    known = set(engine.generation.doc_ids)
    judgments = check_judgments(queries, qrels, known)  # raises when none is usable
    judged = [q for q in qrels if q in queries]
    if len(judged) < 5:
        raise InputError(
            f"only {len(judged)} judged queries have a text in the queries file; "
            "training needs at least 5"
        )
    train_ids, val_ids, holdout = query_split(
        judged, options.holdout_fraction, options.val_fraction, options.seed
    )
    if not holdout or not val_ids or not train_ids:
        raise InputError(f"{len(judged)} judged queries are too few to split for training")

    clicks = impressions = click_check = None
    if clicks_path is not None:
        from brainrank.ranker.feedback.click_stats import click_stats
        from brainrank.ranker.feedback.clicklog import check_clicks, read_click_log
        from brainrank.ranker.feedback.fields import normalise_query

        impressions = read_click_log(clicks_path)
        click_check = check_clicks(impressions, known, str(clicks_path))
        held_texts = {normalise_query(queries[q]) for q in holdout + val_ids}
        # Clicks on held-out and validation queries stay out of the labels (evaluation and
        # early stopping would leak) but remain in the click features, as in serving.
        clicks = click_stats(impressions)
        click_labels = {q: v for q, v in clicks.labels().items() if q not in held_texts}
    else:
        click_labels = {}

    weight = options.click_weight
    items_train = label_items(train_ids, queries, qrels, click_labels, weight, with_click_only=True)
    items_val = label_items(val_ids, queries, qrels, {}, weight)
    items_holdout = label_items(holdout, queries, qrels, {}, weight)

    summary: dict = {
        "judged_queries": len(judged),
        "train_queries": len(items_train),
        "val_queries": len(val_ids),
        "holdout_queries": len(holdout),
        "judged_pairs": int(sum(len(qrels[q]) for q in train_ids + val_ids)),
        "click_impressions": len(impressions) if impressions else 0,
        "click_only_queries": len(items_train) - len(train_ids),
        "store_version": engine.store.version,
        "judgments": judgments.to_dict(),
        "judgment_source": {
            "sets": list(judgment_sets),
            "queries": len(judged),
            "judgments": int(sum(len(qrels[q]) for q in judged)),
        },
        "warnings": judgments.warnings()
        + (click_check.warnings() if click_check else [])
        + _encoder_warnings(options, len(train_ids) + len(val_ids), len(val_ids)),
    }

    with registry.new_version(parent=champion.version if champion else None) as tmp:
        challenger_engine = engine
        staged_gen = None
        encoder_meta = {
            "name": engine.generation.vectors.encoder.name,
            "fingerprint": engine.generation.vectors.encoder.fingerprint,
            "bundled": False,
        }
        serving_encoder = engine.generation.manifest.get("encoder_path")
        if options.finetune_encoder:
            # Only the train queries: validation must see the encoder as unseen queries
            # will, or early stopping would trust an overfit dense signal.
            staged_gen, ft_summary = finetune_for_training(
                cfg, ws, engine, tmp, queries, qrels, train_ids, progress
            )
            summary["encoder_finetune"] = ft_summary
            challenger_engine = SearchEngine(cfg, generation=staged_gen)
            enc = challenger_engine.generation.vectors.encoder
            encoder_meta = {"name": enc.name, "fingerprint": enc.fingerprint, "bundled": True}
        elif serving_encoder and Path(serving_encoder).is_relative_to(ws.models_dir):
            # The index was embedded by an earlier model's fine-tuned encoder: bundle it so
            # this model can be exported and served elsewhere.
            shutil.copytree(serving_encoder, tmp / ENCODER_DIR)
            encoder_meta["bundled"] = True

        schema = FeatureSchema.create(
            dense_weight=cfg.retrieval.dense_weight,
            rrf_k=cfg.retrieval.rrf_k,
            doc_fields=options.doc_fields,
            version=SCHEMA_VERSION if options.click_peers else UNSEEN_AS_PEERS - 1,
        )
        extractor = FeatureExtractor(challenger_engine.generation, schema, clicks)
        t = time.perf_counter()
        tr = candidate_lists(challenger_engine, extractor, items_train, progress, "Train lists")
        va = candidate_lists(challenger_engine, extractor, items_val, progress, "Validation lists")
        ho = candidate_lists(challenger_engine, extractor, items_holdout, progress, "Holdout lists")
        fit = tr
        if staged_gen is not None and not fine_tuned_here(ws, engine.generation):
            # The fine-tuned encoder has seen the train queries: on their lists its cosines
            # put the relevant document on top almost always, and a ranker fitted there learns
            # to trust dense retrieval and nothing else, which unseen queries do not bear out.
            # The ranker therefore fits on the train queries' lists from the index the encoder
            # started from (which never saw them); early stopping, the holdout, the gates and
            # the drift baseline use the fine-tuned index, as serving will.
            fit = candidate_lists(
                engine,
                FeatureExtractor(engine.generation, schema, clicks),
                items_train,
                progress,
                "Train lists (encoder before fine-tuning)",
            )
            summary["ranker_fit_lists"] = "index before fine-tuning"
        if options.tune_fusion:  # the base fusion's dense share, chosen on these lists
            schema, summary["fusion"] = fusion_weight.tune(schema, tr, va, ho, fit)
        stopping = early_stopping_mode(
            options.early_stopping,
            len(train_ids) + len(val_ids),
            can_cross_validate=fit is tr,  # not with lists from the index before fine-tuning
        )
        choice = None
        scratch = scratch_rankers(schema, options)
        if stopping == CROSS_VALIDATION:
            # Every judged training query trains; folds of them choose the epoch count.
            tr = fit = pool([tr, va])
            va = subset(va, [])
            choice = choose_epochs(
                challenger_engine.generation, schema, tr, qrels, options, progress, scratch
            )
        prior, memory = set_judged_features(
            challenger_engine.generation, schema, tr, va, ho, fit if fit is not tr else None
        )
        summary["judgment_prior_docs"] = len(prior)
        summary["query_memory_queries"] = len(memory) if memory is not None else 0
        summary["feature_seconds"] = round(time.perf_counter() - t, 2)

        ranker, gate, query_gate, challenger, history = fit_ranker(
            schema,
            fit,
            tr,
            va,
            clicks,
            prior,
            memory,
            options,
            progress,
            choice=choice,
            make=scratch,
        )
        summary["ranker_seconds"] = history.pop("seconds")
        summary["ranker"] = history
        holdout_qrels = {q: qrels[q] for q in holdout}
        metrics, per = compare(engine, challenger, ho, holdout_qrels, champion)

        def refit(t, v, fold_prior, fold_memory):  # one cross-validation fold, same recipe
            if choice is not None:  # the epoch count chosen above (not re-chosen per fold)
                t, v = pool([t, v]), subset(v, [])
            *_, model, _ = fit_ranker(
                schema,
                t,
                t,
                v,
                clicks,
                fold_prior,
                fold_memory,
                options,
                progress,
                quiet=True,
                choice=choice,
                make=scratch,
            )
            return model

        decision, cv = verdict(
            cfg.promotion,
            engine,
            (tr, va, ho),
            qrels,
            champion,
            per,
            None if options.finetune_encoder else refit,
            seed=options.seed,
            progress=progress,
            generation=challenger_engine.generation,
            schema=schema,
        )
        if cv is not None:
            summary["cross_validation"] = cv

        ranker.save(tmp / RANKER_DIR)
        gate.save(tmp / GATE_FILE)
        if query_gate is not None:
            query_gate.save(tmp)
        if memory is not None:
            memory.save(tmp / MEMORY_FILE)
        if clicks_path is not None:
            shutil.copyfile(clicks_path, tmp / CLICKS_FILE)
        (tmp / PRIOR_FILE).write_text(json.dumps(prior, sort_keys=True))
        (tmp / "baseline.json").write_text(json.dumps(feature_baseline(tr.x, tr.y, schema.names)))
        summary["seconds"] = round(time.perf_counter() - t_start, 2)
        meta = {
            "created": datetime.now(UTC).isoformat(),
            "feature_schema": schema.to_dict(),
            "encoder": encoder_meta,
            "config": cfg.to_dict(),
            "training": summary,
            "options": asdict(options),
            "metrics": metrics,
            "promotion": decision.to_dict(),
            "holdout_queries": holdout,
            "staged_generation": staged_gen,
            "parent": champion.version if champion else None,
        }
        (tmp / "model.json").write_text(json.dumps(meta, indent=2, default=str))
    version = registry.last_committed
    if staged_gen is not None:
        # The staged index was embedded from the draft folder; point it at the committed one.
        ws.update_manifest(staged_gen, encoder_path=str(version.path / ENCODER_DIR))

    promoted = False
    if options.promote and decision.promote:
        from brainrank.ranker.registry.promotion import promote

        # Against the champion it beat: one promoted since keeps serving (the error says so).
        promote(
            cfg, version.version, progress=progress, expect=champion.version if champion else None
        )
        promoted = True
    return TrainResult(version.version, promoted, decision.reason, metrics, summary, decision)
