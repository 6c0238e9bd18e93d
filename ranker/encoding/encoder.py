"""Sentence encoder: a Keras re-implementation of BERT/MiniLM loaded from a Hugging Face folder.

Only ``safetensors`` and ``tokenizers`` read the folder, so neither torch nor transformers is
needed. The architecture sizes come from the folder's ``config.json``; the pooling is the
sentence-transformers recipe (masked mean, then L2 normalisation).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer

from brainrank.index.atomic import atomic_directory
from brainrank.index.errors import BrainrankError
from brainrank.ranker.encoding.batching import TOKENIZER_FILE, encode_batched, load_tokenizer
from brainrank.ranker.encoding.bert import (
    CONFIG_FILE,
    FETCH_HINT,
    build_bert_model,
    read_config,
    weight_table,
)
from brainrank.ranker.encoding.fetch import file_sha256
from brainrank.ranker.encoding.precision import configure_tf_threads

WEIGHTS_FILE = "model.safetensors"

# Padded lengths are rounded up to this multiple: fewer distinct shapes (matters for XLA) at a
# cost of at most 15 wasted positions per batch.
LENGTH_BUCKET = 16
# Other weight formats in a folder would go stale after fine-tuning, so save() never copies them.
_WEIGHT_SUFFIXES = {".bin", ".h5", ".onnx", ".msgpack", ".ckpt", ".pt", ".pth", ".safetensors"}


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
        cfg = read_config(model_dir)
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
        except Exception as exc:  # safetensors raises its own exception types
            raise BrainrankError(f"cannot read encoder files in {model_dir}: {exc}") from exc
        tokenizer = load_tokenizer(model_dir, max_length)

        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in tensors else ""
        keras_model = build_bert_model(cfg)
        table = weight_table(keras_model, cfg, prefix)
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
        with atomic_directory(out_dir) as staged:
            for rel, data in self._small_files.items():
                (staged / rel).parent.mkdir(parents=True, exist_ok=True)
                (staged / rel).write_bytes(data)
            save_file(tensors, str(staged / WEIGHTS_FILE), metadata={"format": "pt"})
            fingerprint = "sha256:" + file_sha256(staged / WEIGHTS_FILE)[:16]
            # The query path serves the folder through its ONNX export (checked against this
            # model when the file holds its float32 weights exactly, else against the file).
            from brainrank.ranker.encoding.onnx_export import export_onnx

            exact = all(self._tensor_meta[n][1] == np.float32 for n, _, _ in self._weight_table)
            export_onnx(staged, reference=self if exact else None)
        self.fingerprint = fingerprint
        return out_dir
