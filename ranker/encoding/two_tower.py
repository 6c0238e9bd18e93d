"""A small word-embedding encoder trained from scratch, for when no pretrained weights exist.

One tower embeds both queries and documents (the indexer and the search path call the same
``encode``): words -> learned embeddings -> mean pooled with a learned per-word weight (an
IDF-like importance) -> a small MLP -> unit vector. It is trained with an in-batch softmax on
the collection's judgments plus pseudo-queries (each title against its body), so it learns
something even from a handful of judged queries. It also hosts :func:`load_encoder`, which
opens either kind of encoder folder.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from safetensors.numpy import load_file, save_file

from brainrank.index.atomic import atomic_directory
from brainrank.index.errors import BrainrankError
from brainrank.index.records import Document
from brainrank.ranker.encoding.batching import encode_batched, pad
from brainrank.ranker.encoding.fetch import file_sha256

MARKER_FILE = "brainrank_two_tower.json"
WEIGHTS_FILE = "weights.safetensors"
FORMAT = "brainrank-two-tower/1"
PAD, OOV = 0, 1
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
# softplus(0.5413) = 1.0: every word starts with unit weight, i.e. a plain mean.
_WEIGHT_INIT = 0.5413


@dataclass(frozen=True)
class TwoTowerParams:
    """Model size and training schedule (defaults measured on a SciFact train split)."""

    dim: int = 128
    embedding_dim: int = 128
    hidden: int = 256
    max_vocab: int = 50_000
    max_length: int = 256  # words per text; the rest is ignored
    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 2e-3
    temperature: float = 0.05
    pseudo_queries: bool = True  # train titles against bodies as well as judged pairs
    judged_repeats: int = 2  # each judged pair counts this many times per epoch
    seed: int = 0

    def __post_init__(self) -> None:
        ints = ("dim", "embedding_dim", "hidden", "max_vocab", "max_length", "epochs")
        bad = [n for n in ints if getattr(self, n) < 1]
        bad += [n for n in ("learning_rate", "temperature") if getattr(self, n) <= 0]
        if self.batch_size < 2:
            bad.append("batch_size")
        if self.judged_repeats < 0:
            bad.append("judged_repeats")
        if bad:
            values = ", ".join(f"{n}={getattr(self, n)!r}" for n in bad)
            raise ValueError(f"invalid two-tower parameters: {values}")


def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters and digits; punctuation splits words)."""
    return _WORD.findall(text.lower())


class _Tower(tf.keras.Model):
    """ids [B, T] (0 = padding) -> unit vectors [B, dim]."""

    def __init__(self, vocab_size: int, p: TwoTowerParams):
        super().__init__(name="two_tower")
        self.embed = tf.keras.layers.Embedding(vocab_size, p.embedding_dim, name="embeddings")
        self.weigh = tf.keras.layers.Embedding(
            vocab_size,
            1,
            embeddings_initializer=tf.keras.initializers.Constant(_WEIGHT_INIT),
            name="token_weights",
        )
        self.hidden = tf.keras.layers.Dense(p.hidden, activation="relu", name="hidden")
        self.out = tf.keras.layers.Dense(p.dim, name="output")
        self.skip = tf.keras.layers.Dense(p.dim, use_bias=False, name="skip")

    def call(self, ids):
        present = tf.cast(ids > PAD, tf.float32)[:, :, None]
        weight = tf.nn.softplus(self.weigh(ids)) * present
        pooled = tf.reduce_sum(self.embed(ids) * weight, axis=1) / tf.maximum(
            tf.reduce_sum(weight, axis=1), 1e-6
        )
        # A linear path plus a non-linear correction: the linear one alone is a learned
        # weighted bag of words, which is most of what a few thousand pairs can support.
        vec = self.skip(pooled) + self.out(self.hidden(pooled))
        return tf.math.l2_normalize(vec, axis=-1)


class TwoTowerEncoder:
    """A trained word-embedding encoder with the interface the indexer expects."""

    tokenizer = None  # no sub-word tokenizer: documents are embedded whole, not as passages

    def __init__(self, vocab: list[str], params: TwoTowerParams, name: str = "two-tower"):
        if len(vocab) < 2 or vocab[PAD] != "" or vocab[OOV] != "[UNK]":
            raise BrainrankError("two-tower vocabulary must start with '' (padding) and '[UNK]'")
        self.name = name
        self.params = params
        self.dim = params.dim
        self.max_length = params.max_length
        self.vocab = list(vocab)
        self._index = {w: i for i, w in enumerate(self.vocab)}
        self.model = _Tower(len(self.vocab), params)
        self.model(tf.zeros([1, 1], tf.int32))  # create the variables
        self.fingerprint = "unsaved:" + self._digest()

        model = self.model

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)])
        def infer(ids):
            return model(ids)

        self._infer = infer

    def ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Word ids per text, truncated to ``max_length``; a text without words gets [UNK]."""
        out = []
        for text in texts:
            row = [self._index.get(w, OOV) for w in words(text)[: self.max_length]]
            out.append(row or [OOV])
        return out

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Embed texts as float32 [n, dim] unit vectors; ``progress(k)`` after each batch of k."""
        return encode_batched(
            texts,
            self.ids,
            lambda ids, _mask: self._infer(ids).numpy(),  # padding is id 0; no mask needed
            self.dim,
            batch_size=batch_size,
            progress=progress,
        )

    def _variables(self) -> dict[str, tf.Variable]:
        """Weights by stable names ("hidden.kernel", ...), whatever TF called the variables."""
        return {
            f"{layer.name}.{v.name.split(':')[0].rsplit('/', 1)[-1]}": v
            for layer in self.model.layers
            for v in layer.weights
        }

    def _arrays(self) -> dict[str, np.ndarray]:
        return {n: np.ascontiguousarray(v.numpy()) for n, v in self._variables().items()}

    def _digest(self) -> str:
        digest = hashlib.sha256()
        for name, array in sorted(self._arrays().items()):
            digest.update(name.encode())
            digest.update(array.tobytes())
        return digest.hexdigest()[:16]

    def save(self, out_dir: Path | str) -> Path:
        """Write the folder (JSON marker with vocabulary, safetensors weights) atomically."""
        out_dir = Path(out_dir)
        meta = {"format": FORMAT, "name": self.name, "params": asdict(self.params)}
        vocab_json = json.dumps(self.vocab, ensure_ascii=False)
        with atomic_directory(out_dir) as tmp:
            (tmp / MARKER_FILE).write_text(
                json.dumps({**meta, "vocab": self.vocab}, ensure_ascii=False), encoding="utf-8"
            )
            # The vocabulary's hash rides in the weights' metadata, so the fingerprint of the
            # weights file also changes when only the vocabulary does.
            save_file(
                self._arrays(),
                str(tmp / WEIGHTS_FILE),
                metadata={
                    "format": FORMAT,
                    "vocab_sha256": hashlib.sha256(vocab_json.encode()).hexdigest(),
                    "params": json.dumps(asdict(self.params), sort_keys=True),
                },
            )
        self.fingerprint = "sha256:" + file_sha256(out_dir / WEIGHTS_FILE)[:16]
        return out_dir

    @classmethod
    def load(cls, folder: Path | str) -> TwoTowerEncoder:
        """Open a folder written by :meth:`save`."""
        folder = Path(folder)
        try:
            meta = json.loads((folder / MARKER_FILE).read_text(encoding="utf-8"))
            arrays = load_file(str(folder / WEIGHTS_FILE))
        except (OSError, ValueError) as exc:
            raise BrainrankError(f"cannot read two-tower encoder in {folder}: {exc}") from exc
        if meta.get("format") != FORMAT:
            raise BrainrankError(
                f"{folder / MARKER_FILE} has format {meta.get('format')!r}, expected {FORMAT!r}"
            )
        try:
            params = TwoTowerParams(**meta["params"])
            enc = cls(meta["vocab"], params, name=meta.get("name", folder.name))
        except (KeyError, TypeError, ValueError) as exc:
            raise BrainrankError(f"{folder / MARKER_FILE} is malformed: {exc}") from exc
        variables = enc._variables()
        if set(variables) != set(arrays):
            raise BrainrankError(
                f"{folder / WEIGHTS_FILE} holds tensors {sorted(arrays)}, "
                f"expected {sorted(variables)}"
            )
        for name, variable in variables.items():
            if tuple(arrays[name].shape) != tuple(variable.shape):
                raise BrainrankError(
                    f"{folder / WEIGHTS_FILE}: tensor {name} has shape {arrays[name].shape}, "
                    f"expected {tuple(variable.shape)}"
                )
            variable.assign(arrays[name])
        enc.fingerprint = "sha256:" + file_sha256(folder / WEIGHTS_FILE)[:16]
        return enc


def build_vocab(texts: Sequence[str], max_vocab: int) -> list[str]:
    """'' and '[UNK]', then the ``max_vocab - 2`` most frequent words (ties alphabetical)."""
    counts = Counter(w for t in texts for w in set(words(t)))
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ["", "[UNK]"] + [w for w, _ in ranked[: max(max_vocab - 2, 0)]]


def training_pairs(
    documents: Sequence[Document], pairs: Sequence[tuple[str, str]], params: TwoTowerParams
) -> list[tuple[str, str]]:
    """Judged pairs (repeated ``judged_repeats`` times) plus title -> body pseudo-queries."""
    out = [p for p in pairs for _ in range(params.judged_repeats)]
    if params.pseudo_queries:
        out += [(d.title, d.text) for d in documents if d.title.strip() and d.text.strip()]
    return out


def train_two_tower(
    documents: Sequence[Document],
    pairs: Sequence[tuple[str, str]],
    params: TwoTowerParams = TwoTowerParams(),
    *,
    progress: Callable[[int], None] | None = None,
) -> tuple[TwoTowerEncoder, dict]:
    """Train an encoder on ``documents`` and (query, relevant text) ``pairs``.

    The vocabulary comes from the documents and the judged queries, so query words that never
    occur in a document still get embeddings and can be learned from the judgments. The loss is
    the symmetric in-batch softmax; a text that occurs twice in a batch is masked out as its own
    negative. Returns the encoder and ``{"steps", "seconds", "final_loss", "pairs"}``.
    """
    examples = training_pairs(documents, pairs, params)
    if len(examples) < 2:
        raise ValueError("two-tower training needs at least two pairs (judged or pseudo)")
    t_start = time.perf_counter()
    tf.keras.utils.set_random_seed(params.seed)
    rng = np.random.default_rng(params.seed)
    vocab = build_vocab([d.full_text for d in documents] + [q for q, _ in pairs], params.max_vocab)
    enc = TwoTowerEncoder(vocab, params)
    q_rows = enc.ids([q for q, _ in examples])
    d_texts = sorted({d for _, d in examples})
    d_key = {t: i for i, t in enumerate(d_texts)}
    d_rows = enc.ids(d_texts)
    keys = np.array([d_key[d] for _, d in examples], dtype=np.int32)

    model = enc.model
    optimizer = tf.keras.optimizers.Adam(params.learning_rate)
    optimizer.build(model.trainable_variables)
    inv_t = 1.0 / params.temperature
    ids_spec = tf.TensorSpec([None, None], tf.int32)

    @tf.function(
        input_signature=[ids_spec, ids_spec, tf.TensorSpec([None], tf.int32)], autograph=False
    )
    def train_step(q_ids, d_ids, doc_keys):
        with tf.GradientTape() as tape:
            logits = tf.matmul(model(q_ids), model(d_ids), transpose_b=True) * inv_t
            n = tf.shape(logits)[0]
            same = tf.equal(doc_keys[:, None], doc_keys[None, :])
            blocked = tf.logical_and(same, tf.logical_not(tf.eye(n, dtype=tf.bool)))
            logits = tf.where(blocked, tf.constant(-1e4, logits.dtype), logits)
            labels = tf.range(n)
            xent = tf.nn.sparse_softmax_cross_entropy_with_logits
            loss = 0.5 * tf.reduce_mean(xent(labels, logits)) + 0.5 * tf.reduce_mean(
                xent(labels, tf.transpose(logits))
            )
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    steps, losses = 0, []
    size = min(params.batch_size, len(examples))
    for _ in range(params.epochs):
        order = rng.permutation(len(examples))
        for start in range(0, len(order) - size + 1, size):  # full batches only
            batch = order[start : start + size]
            loss = train_step(
                pad([q_rows[i] for i in batch])[0],
                pad([d_rows[keys[i]] for i in batch])[0],
                keys[batch],
            )
            losses.append(float(loss))
            steps += 1
            if progress is not None:
                progress(len(batch))
    enc.fingerprint = "unsaved:" + enc._digest()
    tail = losses[-max(1, min(10, len(losses) // 4)) :]
    summary = {
        "steps": steps,
        "seconds": time.perf_counter() - t_start,
        "final_loss": float(np.mean(tail)),
        "first_loss": losses[0],
        "pairs": len(examples),
        "vocab": len(vocab),
    }
    return enc, summary


def load_encoder(path: Path | str, *, max_length: int = 256):
    """Open an encoder folder: a two-tower one saved here, or a Hugging Face BERT folder."""
    path = Path(path)
    if not path.is_dir():
        raise BrainrankError(f"encoder folder {path} does not exist")
    if (path / MARKER_FILE).is_file():
        return TwoTowerEncoder.load(path)
    config = path / "config.json"
    if config.is_file():
        try:
            model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type", "bert")
        except (OSError, ValueError, AttributeError) as exc:
            raise BrainrankError(f"cannot read {config}: {exc}") from exc
        if model_type != "bert":
            raise BrainrankError(
                f"{config} describes model_type {model_type!r}; supported: 'bert' "
                "(a Hugging Face BERT/MiniLM folder) or a brainrank two-tower folder"
            )
        from brainrank.ranker.encoding.encoder import TextEncoder

        return TextEncoder.load(path, max_length=max_length)
    raise BrainrankError(
        f"{path} is not an encoder folder: expected {MARKER_FILE} (brainrank two-tower) or "
        "config.json (Hugging Face BERT)"
    )
