"""Adapt the sentence encoder to a collection: contrastive fine-tuning on its judgments.

Each training example is a (query, relevant passage) pair plus a few hard negatives mined from
BM25. The loss is one-directional InfoNCE (query -> documents, as in sentence-transformers'
MultipleNegativesRankingLoss): a query's softmax runs over every positive and hard negative in
its batch, so a batch of B pairs with k hard negatives gives each query B * (1 + k) - 1
negatives for the price of encoding them once. Documents that are judged relevant to a query
but belong to another pair of the batch are masked out of that query's softmax, and batches are
formed so that no query or positive text occurs twice in one batch.

Defaults were chosen on SciFact with 20% of the *train* queries held out (162 queries, first
passage only, dense nDCG@10; pretrained 0.634): 1 epoch at learning rate 2e-5 0.673, 5e-5
0.690, 1e-4 0.700; 2 epochs at 1e-4 0.755, the same with documents cut at 128 tokens 0.733
(at half the training cost). See bench/bench_finetune.py.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from tokenizers import Tokenizer

from brainrank.ranker.config import PRECISIONS
from brainrank.ranker.encoding.encoder import TextEncoder
from brainrank.ranker.encoding.precision import bulk_precision

# A masked logit: far below any real one (cosine / temperature stays within +-1/temperature).
_MASKED = -1e4


@dataclass(frozen=True)
class FinetuneParams:
    """Hyperparameters of :func:`finetune_encoder` (defaults chosen on a SciFact train split)."""

    epochs: int = 2
    batch_size: int = 32
    learning_rate: float = 1e-4
    warmup_fraction: float = 0.1
    temperature: float = 0.05
    hard_negatives: int = 1
    query_max_length: int = 64
    doc_max_length: int = 256
    weight_decay: float = 0.01
    clip_norm: float = 1.0
    seed: int = 0
    # Matrix products in bfloat16 on CPUs with bfloat16 units ("auto"), or "float32"/"bfloat16".
    precision: str = "auto"
    # Time budget for training: the schedule is shortened to the steps that fit, and training
    # stops once the budget is used up.
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 2,
            "learning_rate": self.learning_rate > 0,
            "warmup_fraction": 0 <= self.warmup_fraction < 1,
            "temperature": self.temperature > 0,
            "hard_negatives": self.hard_negatives >= 0,
            "query_max_length": self.query_max_length >= 2,
            "doc_max_length": self.doc_max_length >= 2,
            "weight_decay": self.weight_decay >= 0,
            "clip_norm": self.clip_norm > 0,
            "max_seconds": self.max_seconds is None or self.max_seconds > 0,
            "precision": self.precision in PRECISIONS,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{n}={getattr(self, n)!r}" for n in bad)
            raise ValueError(
                f"invalid fine-tuning parameters: {values} (epochs >= 1, batch_size >= 2, "
                "lengths >= 2, 0 <= warmup_fraction < 1, positive rates and budgets)"
            )


def mine_bm25_negatives(
    bm25_scores_fn: Callable[[str], np.ndarray],
    doc_texts: Sequence[str],
    queries: Sequence[str],
    positives: Sequence[set[int]],
    k: int = 1,
    depth: int = 30,
    seed: int = 0,
    *,
    skip_top: int = 3,
) -> list[list[int]]:
    """Per query, ``k`` document positions drawn from its BM25 top ``depth``, none judged relevant.

    ``bm25_scores_fn(query)`` returns a score for every document (``index.bm25.BM25Index.scores``).
    The ``skip_top`` best-scoring unjudged documents are never used: sparse judgments leave
    relevant documents unlabelled, and they sit mostly at the very top of the BM25 list, where a
    false negative would teach the encoder the opposite of the truth. A document whose text equals
    a positive's is excluded too (duplicates in the collection). When BM25 offers too few
    candidates, the rest are random unjudged documents.
    """
    if len(queries) != len(positives):
        raise ValueError(f"{len(queries)} queries but {len(positives)} positive sets")
    if k < 0 or depth < 1 or skip_top < 0:
        raise ValueError(f"need k >= 0, depth >= 1, skip_top >= 0; got {k}, {depth}, {skip_top}")
    n_docs = len(doc_texts)
    rng = np.random.default_rng(seed)
    out: list[list[int]] = []
    for query, pos in zip(queries, positives, strict=True):
        banned = {int(p) for p in pos}
        pos_texts = {doc_texts[p] for p in banned if 0 <= p < n_docs}
        if n_docs - len(banned) < k:
            raise ValueError(f"the collection has too few unjudged documents for k={k}")
        if k == 0:
            out.append([])
            continue
        scores = np.asarray(bm25_scores_fn(query), dtype=np.float64)
        if scores.shape != (n_docs,):
            raise ValueError(f"bm25_scores_fn returned shape {scores.shape}, expected ({n_docs},)")
        want = min(depth + len(banned) + skip_top, n_docs)
        top = np.argpartition(-scores, want - 1)[:want] if want < n_docs else np.arange(n_docs)
        top = top[np.lexsort((top, -scores[top]))]  # by score, ties by position: deterministic
        ranked = [
            int(d)
            for d in top
            if scores[d] > 0 and int(d) not in banned and doc_texts[d] not in pos_texts
        ]
        pool = ranked[skip_top:depth]
        chosen = [int(x) for x in rng.permutation(pool)[:k]] if pool else []
        while len(chosen) < k:
            d = int(rng.integers(n_docs))
            if d not in banned and d not in chosen and doc_texts[d] not in pos_texts:
                chosen.append(d)
        out.append(chosen)
    return out


class _WarmupLinearDecay(tf.keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to ``peak`` over ``warmup`` steps, then linear decay to 0.

    The step counts live in variables so a time budget can shorten the schedule mid-run and the
    rate still anneals before training stops.
    """

    def __init__(self, peak: float, warmup: int, total: int):
        self.peak = float(peak)
        self.warmup = tf.Variable(float(warmup), trainable=False, dtype=tf.float32)
        self.total = tf.Variable(float(max(total, 1)), trainable=False, dtype=tf.float32)

    def shorten(self, total: int, warmup_fraction: float) -> None:
        total = max(int(total), 1)
        self.total.assign(float(total))
        self.warmup.assign(min(float(self.warmup.numpy()), round(warmup_fraction * total)))

    def __call__(self, step):
        step = tf.cast(step, tf.float32) + 1.0  # the first update already uses a non-zero rate
        up = step / tf.maximum(self.warmup, 1.0)
        down = (self.total - step + 1.0) / tf.maximum(self.total - self.warmup, 1.0)
        return self.peak * tf.maximum(tf.minimum(up, down), 0.0)

    def get_config(self):
        return {"peak": self.peak, "warmup": float(self.warmup), "total": float(self.total)}


def _truncating_copy(tokenizer: Tokenizer, max_length: int) -> Tokenizer:
    tok = Tokenizer.from_str(tokenizer.to_str())
    tok.no_padding()
    tok.enable_truncation(max_length)
    return tok


def _pad(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(r) for r in rows)
    ids = np.zeros((len(rows), width), dtype=np.int32)
    mask = np.zeros((len(rows), width), dtype=np.int32)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return ids, mask


def plan_batches(
    query_keys: Sequence[int], doc_keys: Sequence[int], batch_size: int, rng: np.random.Generator
) -> list[list[int]]:
    """Shuffle pair indices into batches in which no query and no positive occurs twice.

    A repeated text would be its own in-batch negative; deferring it to a later batch keeps
    every pair while leaving the softmax free of such contradictions.
    """
    pending = [int(i) for i in rng.permutation(len(query_keys))]
    batches = []
    while pending:
        batch, seen_q, seen_d, rest = [], set(), set(), []
        for i in pending:
            if (
                len(batch) < batch_size
                and query_keys[i] not in seen_q
                and doc_keys[i] not in seen_d
            ):
                batch.append(i)
                seen_q.add(query_keys[i])
                seen_d.add(doc_keys[i])
            else:
                rest.append(i)
        batches.append(batch)
        pending = rest
    return batches


def _weights_digest(model: tf.keras.Model) -> str:
    digest = hashlib.sha256()
    for w in model.weights:
        digest.update(np.ascontiguousarray(w.numpy()).tobytes())
    return digest.hexdigest()[:16]


def interpolate_weights(encoder: TextEncoder, start: list[np.ndarray], share: float) -> None:
    """Move a fine-tuned encoder back toward its starting weights, in place.

    Every weight becomes ``share * tuned + (1 - share) * start`` (a weight-space ensemble of
    the two, as in WiSE-FT, Wortsman et al. 2022): fine-tuning and pretraining start from the
    same weights, so their average is itself a good model that keeps more of what the public
    pretraining taught. ``start`` is ``encoder.keras_model.get_weights()`` taken before
    fine-tuning; ``share`` 1 keeps the fine-tuned weights and 0 the starting ones.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"the fine-tuned weights' share must be in [0, 1], got {share}")
    model = encoder.keras_model
    tuned = model.get_weights()
    if len(tuned) != len(start) or any(
        a.shape != b.shape for a, b in zip(tuned, start, strict=False)
    ):
        raise ValueError("the starting weights do not match the encoder's")
    model.set_weights(
        [(share * t + (1.0 - share) * s).astype(t.dtype) for t, s in zip(tuned, start, strict=True)]
    )
    encoder.fingerprint = "unsaved:" + _weights_digest(model)


def finetune_encoder(
    encoder: TextEncoder,
    pairs: Sequence[tuple[str, str]],
    negatives: Sequence[Sequence[str]] | None,
    params: FinetuneParams = FinetuneParams(),
    *,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Fine-tune ``encoder.keras_model`` in place on (query, relevant text) pairs.

    ``negatives[i]`` holds at least ``params.hard_negatives`` texts that are not relevant to
    ``pairs[i][0]`` (may be None when ``hard_negatives`` is 0). The optimiser is AdamW (no decay
    on biases and LayerNorm) with linear warm-up and decay, and global-norm gradient clipping.
    Runs are repeatable for a given ``seed``: it seeds Python, NumPy and TensorFlow's global
    generators (dropout draws from the latter). ``progress(n)`` is called after each step with
    the number of pairs it used.

    Until the encoder is saved, ``encoder.fingerprint`` reads ``unsaved:<weights digest>``, so
    vectors from the old weights are never mistaken for current ones; ``encoder.save()`` sets
    the file fingerprint. Returns ``{"steps", "seconds", "final_loss", "pairs", ...}``.
    """
    k = params.hard_negatives
    if not pairs:
        raise ValueError("fine-tuning needs at least one (query, text) pair")
    if k:
        if negatives is None or len(negatives) != len(pairs):
            got = "None" if negatives is None else len(negatives)
            raise ValueError(f"need one list of hard negatives per pair ({len(pairs)}), got {got}")
        short = [i for i, n in enumerate(negatives) if len(n) < k]
        if short:
            raise ValueError(f"pair {short[0]} has fewer than hard_negatives={k} negative texts")
    t_start = time.perf_counter()
    tf.keras.utils.set_random_seed(params.seed)
    rng = np.random.default_rng(params.seed)

    # Texts are tokenised once; the pair and negative lists refer to them by key.
    q_tok = _truncating_copy(encoder.tokenizer, min(params.query_max_length, encoder.max_length))
    d_tok = _truncating_copy(encoder.tokenizer, min(params.doc_max_length, encoder.max_length))
    q_texts = sorted({q for q, _ in pairs})
    d_texts = sorted({d for _, d in pairs} | {t for n in (negatives or []) for t in n[:k]})
    q_key = {t: i for i, t in enumerate(q_texts)}
    d_key = {t: i for i, t in enumerate(d_texts)}
    q_ids = [e.ids for e in q_tok.encode_batch(q_texts)]
    d_ids = [e.ids for e in d_tok.encode_batch(d_texts)]
    pair_q = [q_key[q] for q, _ in pairs]
    pair_d = [d_key[d] for _, d in pairs]
    pair_neg = [[d_key[t] for t in n[:k]] for n in negatives] if k else [[] for _ in pairs]
    relevant: dict[int, set[int]] = {}
    for q, d in zip(pair_q, pair_d, strict=True):
        relevant.setdefault(q, set()).add(d)

    epoch_batches = [
        plan_batches(pair_q, pair_d, params.batch_size, rng) for _ in range(params.epochs)
    ]
    total = sum(len(b) for b in epoch_batches)
    model = encoder.keras_model
    schedule = _WarmupLinearDecay(
        params.learning_rate, round(params.warmup_fraction * total), total
    )
    optimizer = tf.keras.optimizers.AdamW(
        learning_rate=schedule,
        weight_decay=params.weight_decay,
        global_clipnorm=params.clip_norm,
        epsilon=1e-6,
    )
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    variables = model.trainable_variables
    optimizer.build(variables)
    inv_t = 1.0 / params.temperature
    spec = tf.TensorSpec([None, None], tf.int32)

    # autograph is off: the step has no data-dependent Python control flow to convert.
    @tf.function(
        input_signature=[spec, spec, spec, spec, tf.TensorSpec([None, None], tf.bool)],
        autograph=False,
    )
    def train_step(q_in, q_mask, d_in, d_mask, blocked):
        with tf.GradientTape() as tape:
            q = model([q_in, q_mask], training=True)
            d = model([d_in, d_mask], training=True)
            logits = tf.matmul(q, d, transpose_b=True) * inv_t
            logits = tf.where(blocked, tf.constant(_MASKED, logits.dtype), logits)
            labels = tf.range(tf.shape(q)[0])
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            )
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        return loss

    steps, losses, durations, planned = 0, [], [], total
    with bulk_precision(params.precision) as precision:
        for batch in (b for batches in epoch_batches for b in batches):
            t_step = time.perf_counter()
            cols = [pair_d[i] for i in batch] + [n for i in batch for n in pair_neg[i]]
            blocked = np.array(
                [
                    [c in relevant[pair_q[i]] and j != r for j, c in enumerate(cols)]
                    for r, i in enumerate(batch)
                ],
                dtype=bool,
            )
            qi, qm = _pad([q_ids[pair_q[i]] for i in batch])
            di, dm = _pad([d_ids[c] for c in cols])
            loss = float(train_step(qi, qm, di, dm, blocked))
            if not np.isfinite(loss):
                raise FloatingPointError(f"fine-tuning loss became {loss} at step {steps + 1}")
            losses.append(loss)
            steps += 1
            durations.append(time.perf_counter() - t_step)
            if progress is not None:
                progress(len(batch))
            if params.max_seconds is not None:
                left = params.max_seconds - (time.perf_counter() - t_start)
                if left <= 0:
                    planned = steps
                elif len(durations) > 1:
                    # The first step includes tracing, so it does not predict the others.
                    affordable = steps + int(left / float(np.median(durations[1:])))
                    if affordable < planned:
                        planned = affordable
                        schedule.shorten(planned, params.warmup_fraction)
            if steps >= planned:
                break
    encoder.fingerprint = "unsaved:" + _weights_digest(model)
    tail = losses[-max(1, min(10, len(losses) // 4)) :]
    return {
        "steps": steps,
        "planned_steps": total,
        "seconds": time.perf_counter() - t_start,
        "final_loss": float(np.mean(tail)),
        "first_loss": losses[0],
        "pairs": len(pairs),
        "stopped_early": steps < total,
        "precision": precision,
    }


def contrastive_loss(
    encoder: TextEncoder,
    pairs: Sequence[tuple[str, str]],
    negatives: Sequence[Sequence[str]] | None = None,
    *,
    temperature: float = 0.05,
) -> float:
    """The InfoNCE loss of all ``pairs`` as one batch, without dropout (for checks and tests)."""
    q = encoder.encode([p[0] for p in pairs])
    docs = [p[1] for p in pairs] + [t for n in (negatives or []) for t in n]
    d = encoder.encode(docs)
    logits = (q @ d.T).astype(np.float64) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-np.mean(np.diag(log_softmax[:, : len(pairs)])))
