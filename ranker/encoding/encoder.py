"""Sentence encoder: a Keras re-implementation of BERT/MiniLM loaded from a Hugging Face folder.

Only ``safetensors`` and ``tokenizers`` read the folder, so neither torch nor transformers is
needed. The architecture sizes come from the folder's ``config.json``; the pooling is the
sentence-transformers recipe (masked mean, then L2 normalisation).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import numpy as np
import tensorflow as tf
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer

from brainrank.index.errors import BrainrankError
from brainrank.ranker.config import PRECISIONS
from brainrank.ranker.encoding.batching import encode_batched
from brainrank.ranker.encoding.fetch import file_sha256

WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "config.json"
FETCH_HINT = "run `brainrank encoder fetch` or pass `--encoder PATH`"

# Padded lengths are rounded up to this multiple: fewer distinct shapes (matters for XLA) at a
# cost of at most 15 wasted positions per batch.
LENGTH_BUCKET = 16
# Other weight formats in a folder would go stale after fine-tuning, so save() never copies them.
_WEIGHT_SUFFIXES = {".bin", ".h5", ".onnx", ".msgpack", ".ckpt", ".pt", ".pth", ".safetensors"}
_CONFIG_KEYS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
)


@tf.keras.utils.register_keras_serializable(package="brainrank")
class PositionAndTypeEmbedding(tf.keras.layers.Layer):
    """Adds absolute position embeddings and the token-type-0 row to word embeddings."""

    def __init__(self, max_positions: int, hidden_size: int, **kwargs):
        super().__init__(**kwargs)
        self.max_positions = max_positions
        self.hidden_size = hidden_size

    def build(self, input_shape):
        self.position_embeddings = self.add_weight(
            name="position_embeddings", shape=(self.max_positions, self.hidden_size)
        )
        # Every input is a single segment, so only row 0 of the token-type table is ever used.
        self.token_type_row = self.add_weight(name="token_type_row", shape=(self.hidden_size,))
        super().build(input_shape)

    def call(self, word_embeddings):
        length = tf.shape(word_embeddings)[1]
        return word_embeddings + self.position_embeddings[:length][None] + self.token_type_row

    def get_config(self):
        return {
            **super().get_config(),
            "max_positions": self.max_positions,
            "hidden_size": self.hidden_size,
        }


@tf.keras.utils.register_keras_serializable(package="brainrank")
class KeyPaddingMask(tf.keras.layers.Layer):
    """Turns an attention mask [B, T] into a [B, 1, T] boolean mask that MHA broadcasts."""

    def call(self, attention_mask):
        return tf.cast(attention_mask, tf.bool)[:, None, :]


@tf.keras.utils.register_keras_serializable(package="brainrank")
class MaskedMeanPool(tf.keras.layers.Layer):
    """Mean of the token vectors where the attention mask is 1."""

    def call(self, inputs):
        hidden, attention_mask = inputs
        mask = tf.cast(attention_mask, hidden.dtype)[:, :, None]
        total = tf.reduce_sum(hidden * mask, axis=1)
        # Same floor as sentence-transformers, so an all-padding row gives zeros, not NaN.
        return total / tf.maximum(tf.reduce_sum(mask, axis=1), 1e-9)


def configure_tf_threads(intra_op: int | None = None, inter_op: int = 1) -> bool:
    """Size TF's CPU thread pools; a no-op returning False once TF has started or been configured.

    Defaults: every core for each op, one op at a time. The encoder is a chain of large matmuls,
    so extra inter-op threads only let the Q/K/V projections compete for the same few cores.
    """
    threading = tf.config.threading
    if threading.get_intra_op_parallelism_threads() or threading.get_inter_op_parallelism_threads():
        return False  # the application chose its own settings
    try:
        threading.set_intra_op_parallelism_threads(intra_op or os.cpu_count() or 1)
        threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError:  # TF refuses once its runtime is initialised
        return False
    return True


_BF16_OPTION = "auto_mixed_precision_onednn_bfloat16"


# CPU flags of bfloat16 matrix units oneDNN uses: AMX tiles (Intel Sapphire Rapids and later)
# and AVX-512 BF16 dot products (Intel Cooper Lake, AMD Zen 4 and later).
_BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


@cache
def cpu_has_bf16_units() -> bool:
    """Whether the CPU computes bfloat16 matrix products natively (AMX or AVX-512 BF16)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            return any(
                line.startswith("flags") and not _BF16_FLAGS.isdisjoint(line.split()) for line in fh
            )
    except OSError:
        return False


def resolve_precision(precision: str) -> str:
    """``auto`` becomes ``bfloat16`` on CPUs with bfloat16 matrix units, else ``float32``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bfloat16" if cpu_has_bf16_units() else "float32"
    return precision


@contextmanager
def bulk_precision(precision: str) -> Iterator[str]:
    """Run the TensorFlow functions called inside the block with bfloat16 matmuls, or not.

    With ``bfloat16``, TF's grappler rewrites the graphs of functions *called* in the block to
    compute matrix products in bfloat16 (oneDNN, on AMX tiles or AVX-512 BF16) while keeping
    variables, softmax and normalisation in float32; the previous setting returns on exit, and
    functions called afterwards run in float32 again. For bulk work (embedding a collection,
    fine-tuning) where throughput matters more than the last bits: on SciFact passages the
    vectors agree with float32 at cosine >= 0.99995 and embed 1.4x faster on Intel AMX cores,
    1.6x on AMD Zen 4 (``bench/bench_encoder.py --precision-only``). Yields the resolved
    precision.
    """
    resolved = resolve_precision(precision)
    options = tf.config.optimizer.get_experimental_options()
    before = bool(options.get(_BF16_OPTION, False))
    tf.config.optimizer.set_experimental_options({_BF16_OPTION: resolved == "bfloat16"})
    try:
        yield resolved
    finally:
        tf.config.optimizer.set_experimental_options({_BF16_OPTION: before})


def _read_config(model_dir: Path) -> dict:
    """Read config.json and check it describes an architecture this module implements."""
    path = model_dir / CONFIG_FILE
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BrainrankError(f"cannot read encoder config {path}: {exc}; {FETCH_HINT}") from exc
    missing = [k for k in _CONFIG_KEYS if not isinstance(cfg.get(k), int)]
    if missing:
        raise BrainrankError(f"{path} lacks integer fields {missing}; {FETCH_HINT}")
    problems = []
    if cfg.get("model_type", "bert") != "bert":
        problems.append(f"model_type {cfg['model_type']!r} (expected 'bert')")
    if cfg.get("hidden_act", "gelu") != "gelu":
        problems.append(f"hidden_act {cfg['hidden_act']!r} (expected 'gelu')")
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        problems.append(f"position_embedding_type {cfg['position_embedding_type']!r}")
    if cfg["hidden_size"] % cfg["num_attention_heads"]:
        problems.append("hidden_size is not a multiple of num_attention_heads")
    if problems:
        raise BrainrankError(f"{path}: unsupported encoder config: {'; '.join(problems)}")
    cfg.setdefault("layer_norm_eps", 1e-12)
    return cfg


def build_bert_model(cfg: dict) -> tf.keras.Model:
    """Build the untrained functional model (input_ids, attention_mask) -> unit vectors."""
    hidden = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    eps = float(cfg["layer_norm_eps"])
    hidden_dropout = float(cfg.get("hidden_dropout_prob", 0.1))
    attention_dropout = float(cfg.get("attention_probs_dropout_prob", 0.1))

    input_ids = tf.keras.Input((None,), dtype=tf.int32, name="input_ids")
    attention_mask = tf.keras.Input((None,), dtype=tf.int32, name="attention_mask")
    x = tf.keras.layers.Embedding(cfg["vocab_size"], hidden, name="word_embeddings")(input_ids)
    x = PositionAndTypeEmbedding(cfg["max_position_embeddings"], hidden, name="position_type")(x)
    x = tf.keras.layers.LayerNormalization(epsilon=eps, name="embeddings_ln")(x)
    x = tf.keras.layers.Dropout(hidden_dropout)(x)
    pair_mask = KeyPaddingMask(name="key_padding_mask")(attention_mask)
    for i in range(cfg["num_hidden_layers"]):
        attended = tf.keras.layers.MultiHeadAttention(
            heads, hidden // heads, dropout=attention_dropout, name=f"layer_{i}_attention"
        )(x, x, attention_mask=pair_mask)
        attended = tf.keras.layers.Dropout(hidden_dropout)(attended)
        x = tf.keras.layers.LayerNormalization(epsilon=eps, name=f"layer_{i}_attention_ln")(
            x + attended
        )
        # Keras' "gelu" is the exact erf form (approximate=False), as in BERT.
        inner = tf.keras.layers.Dense(
            cfg["intermediate_size"], activation="gelu", name=f"layer_{i}_intermediate"
        )(x)
        inner = tf.keras.layers.Dense(hidden, name=f"layer_{i}_output")(inner)
        inner = tf.keras.layers.Dropout(hidden_dropout)(inner)
        x = tf.keras.layers.LayerNormalization(epsilon=eps, name=f"layer_{i}_output_ln")(x + inner)
    pooled = MaskedMeanPool(name="mean_pool")([x, attention_mask])
    out = tf.keras.layers.UnitNormalization(name="l2_normalize")(pooled)
    return tf.keras.Model([input_ids, attention_mask], out, name="bert_encoder")


def _weight_table(model: tf.keras.Model, cfg: dict, prefix: str) -> list[tuple[str, object, bool]]:
    """List (tensor name, Keras variable, transpose) for every weight the model uses.

    Torch linear weights are [out, in] and Keras kernels [in, out], hence ``transpose``; MHA
    kernels and biases also split the hidden axis into (heads, head_dim), which a reshape handles.
    """
    table = []

    def add(tensor_name, layer_name, var_suffix, transpose=False):
        table.append((prefix + tensor_name, layer_name, var_suffix, transpose))

    add("embeddings.word_embeddings.weight", "word_embeddings", "embeddings")
    add("embeddings.position_embeddings.weight", "position_type", "position_embeddings")
    add("embeddings.LayerNorm.weight", "embeddings_ln", "gamma")
    add("embeddings.LayerNorm.bias", "embeddings_ln", "beta")
    for i in range(cfg["num_hidden_layers"]):
        hf, attention = f"encoder.layer.{i}.", f"layer_{i}_attention"
        for proj in ("query", "key", "value"):
            add(f"{hf}attention.self.{proj}.weight", attention, f"{proj}/kernel", True)
            add(f"{hf}attention.self.{proj}.bias", attention, f"{proj}/bias")
        add(f"{hf}attention.output.dense.weight", attention, "attention_output/kernel", True)
        add(f"{hf}attention.output.dense.bias", attention, "attention_output/bias")
        for part, layer in (
            ("attention.output.", f"{attention}_ln"),
            ("output.", f"layer_{i}_output_ln"),
        ):
            add(f"{hf}{part}LayerNorm.weight", layer, "gamma")
            add(f"{hf}{part}LayerNorm.bias", layer, "beta")
        for part, layer in (
            ("intermediate.", f"layer_{i}_intermediate"),
            ("output.", f"layer_{i}_output"),
        ):
            add(f"{hf}{part}dense.weight", layer, "kernel", True)
            add(f"{hf}{part}dense.bias", layer, "bias")
    rows = []
    for tensor_name, layer_name, var_suffix, transpose in table:
        matches = [
            v
            for v in model.get_layer(layer_name).weights
            if v.name.split(":")[0].endswith("/" + var_suffix)
        ]
        if len(matches) != 1:
            raise RuntimeError(f"expected one variable {layer_name}/{var_suffix}, got {matches}")
        rows.append((tensor_name, matches[0], transpose))
    return rows


class TextEncoder:
    """A loaded sentence encoder: tokenizer, Keras model and what save() needs to write it back."""

    def __init__(
        self,
        *,
        name,
        cfg,
        tokenizer,
        keras_model,
        max_length,
        fingerprint,
        weight_table,
        extra_tensors,
        tensor_meta,
        small_files,
        jit_compile,
    ):
        """Use ``TextEncoder.load``; this only wires together what it has read."""
        self.name: str = name
        self.dim: int = int(cfg["hidden_size"])
        self.max_length: int = max_length
        self.fingerprint: str = fingerprint
        self.keras_model: tf.keras.Model = keras_model
        self._cfg = cfg
        self._tokenizer = tokenizer
        self._weight_table = weight_table
        self._extra_tensors = extra_tensors  # tensors the model does not use, saved unchanged
        self._tensor_meta = tensor_meta  # name -> (shape, dtype) as in the loaded file
        self._small_files = small_files  # relative path -> bytes, copied by save()
        self._jit_compile = jit_compile
        spec = tf.TensorSpec([None, None], tf.int32)

        # One traced function for all shapes: the [None, None] signature prevents a retrace per
        # batch shape (XLA still compiles once per concrete shape, see bench/bench_encoder.py).
        @tf.function(input_signature=[spec, spec], jit_compile=jit_compile)
        def infer(input_ids, attention_mask):
            return keras_model([input_ids, attention_mask], training=False)

        self._infer = infer

    @classmethod
    def load(
        cls, model_dir: Path | str, *, max_length: int = 256, jit_compile: bool = False
    ) -> TextEncoder:
        """Load a BERT folder in Hugging Face layout (config, model.safetensors, tokenizer.json).

        ``max_length`` counts tokens including [CLS] and [SEP]; longer texts are truncated.
        """
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise BrainrankError(f"encoder folder {model_dir} does not exist; {FETCH_HINT}")
        for needed in (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE):
            if not (model_dir / needed).is_file():
                raise BrainrankError(f"encoder folder {model_dir} has no {needed}; {FETCH_HINT}")
        cfg = _read_config(model_dir)
        configure_tf_threads()  # best effort: keeps whatever the application already set
        if not 2 <= max_length <= cfg["max_position_embeddings"]:
            raise BrainrankError(
                f"max_length {max_length} must be between 2 and the model's "
                f"max_position_embeddings {cfg['max_position_embeddings']}"
            )

        weights_path = model_dir / WEIGHTS_FILE
        fingerprint = "sha256:" + file_sha256(weights_path)[:16]
        try:
            tensors = load_file(str(weights_path))
            tokenizer = Tokenizer.from_file(str(model_dir / TOKENIZER_FILE))
        except Exception as exc:  # both libraries raise their own exception types
            raise BrainrankError(f"cannot read encoder files in {model_dir}: {exc}") from exc
        # The shipped tokenizer.json pads to a fixed 128; we pad per batch ourselves.
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length)

        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in tensors else ""
        keras_model = build_bert_model(cfg)
        table = _weight_table(keras_model, cfg, prefix)
        token_type_name = f"{prefix}embeddings.token_type_embeddings.weight"
        missing = [n for n, _, _ in table if n not in tensors]
        if token_type_name not in tensors:
            missing.append(token_type_name)
        if missing:
            raise BrainrankError(
                f"{weights_path} lacks {len(missing)} BERT tensors (first: {missing[0]}); "
                f"is it a BERT model? {FETCH_HINT}"
            )
        tensor_meta = {name: (array.shape, array.dtype) for name, array in tensors.items()}
        for tensor_name, variable, transpose in table:
            array = tensors.pop(tensor_name).astype(np.float32)
            expected = tuple(variable.shape)
            if array.size != int(np.prod(expected)):
                raise BrainrankError(
                    f"{weights_path}: tensor {tensor_name} has shape {array.shape}, which does "
                    f"not fit config.json (expects {expected} in Keras layout)"
                )
            variable.assign((array.T if transpose else array).reshape(expected))
        position_type = keras_model.get_layer("position_type")
        position_type.token_type_row.assign(tensors[token_type_name][0].astype(np.float32))

        small_files = {
            p.relative_to(model_dir).as_posix(): p.read_bytes()
            for p in sorted(model_dir.rglob("*"))
            if p.is_file() and p.suffix not in _WEIGHT_SUFFIXES
        }
        return cls(
            name=model_dir.resolve().name,
            cfg=cfg,
            tokenizer=tokenizer,
            keras_model=keras_model,
            max_length=max_length,
            fingerprint=fingerprint,
            weight_table=table,
            extra_tensors=tensors,
            tensor_meta=tensor_meta,
            small_files=small_files,
            jit_compile=jit_compile,
        )

    @property
    def tokenizer(self) -> Tokenizer:
        """The loaded tokenizer (truncating at ``max_length``, no padding)."""
        return self._tokenizer

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, with [CLS]/[SEP] and truncated to ``max_length``."""
        return [e.ids for e in self._tokenizer.encode_batch(list(texts))]

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Embed texts as float32 [n, dim] unit vectors; ``progress(k)`` after each batch of k."""

        def infer(input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
            return self._infer(tf.constant(input_ids), tf.constant(mask)).numpy()

        return encode_batched(
            texts,
            self.tokenize,
            infer,
            self.dim,
            batch_size=batch_size,
            progress=progress,
            bucket=LENGTH_BUCKET,
            max_width=self._cfg["max_position_embeddings"],
            # XLA compiles once per shape; a power-of-two height lets the partial last batch of
            # every call reuse a compiled shape. Padding rows are masked out entirely.
            pow2_height=self._jit_compile,
        )

    def save(self, out_dir: Path | str) -> Path:
        """Write a complete Hugging Face folder from the current Keras weights and return it.

        Tensor names, shapes and dtypes match the loaded file, so other BERT tooling reads it;
        ``fingerprint`` is updated to the written file.
        """
        out_dir = Path(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tensors = dict(self._extra_tensors)
        for tensor_name, variable, transpose in self._weight_table:
            shape = self._tensor_meta[tensor_name][0]
            value = variable.numpy()
            tensors[tensor_name] = (
                value.reshape(shape[::-1]).T if transpose else value.reshape(shape)
            )
        prefix = "bert." if self._weight_table[0][0].startswith("bert.") else ""
        token_type_name = f"{prefix}embeddings.token_type_embeddings.weight"
        token_types = np.array(tensors[token_type_name], copy=True)
        token_types[0] = self.keras_model.get_layer("position_type").token_type_row.numpy()
        tensors[token_type_name] = token_types
        tensors = {
            n: np.ascontiguousarray(a, dtype=self._tensor_meta[n][1]) for n, a in tensors.items()
        }

        # Build beside the destination and rename into place, so a crash never leaves a
        # half-written model folder under the final name.
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
        try:
            staged = tmp / "model"
            staged.mkdir()
            for rel, data in self._small_files.items():
                (staged / rel).parent.mkdir(parents=True, exist_ok=True)
                (staged / rel).write_bytes(data)
            save_file(tensors, str(staged / WEIGHTS_FILE), metadata={"format": "pt"})
            fingerprint = "sha256:" + file_sha256(staged / WEIGHTS_FILE)[:16]
            if out_dir.exists():
                os.replace(out_dir, tmp / "old")
            os.replace(staged, out_dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.fingerprint = fingerprint
        return out_dir
