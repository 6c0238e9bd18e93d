"""BERT as Keras layers: the architecture a Hugging Face BERT/MiniLM folder describes.

``read_config`` checks ``config.json`` describes an architecture built here, ``build_bert_model``
builds it untrained, and ``weight_table`` pairs its variables with the folder's tensor names.
The custom layers are registered with Keras as ``brainrank>ClassName``; those names are part of
saved models and must not change.
"""

from __future__ import annotations

import json
from pathlib import Path

import tensorflow as tf

from brainrank.index.errors import BrainrankError

CONFIG_FILE = "config.json"
FETCH_HINT = "run `brainrank encoder fetch` or pass `--encoder PATH`"
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


def read_config(model_dir: Path) -> dict:
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


def weight_table(model: tf.keras.Model, cfg: dict, prefix: str) -> list[tuple[str, object, bool]]:
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
