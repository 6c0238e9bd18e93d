"""Query-path sentence encoder on ONNX Runtime: an exported BERT/MiniLM folder without TensorFlow.

``onnx_export.export_onnx`` writes ``model.onnx`` and ``onnx.json`` into a Hugging Face folder;
:class:`OnnxEncoder` serves them with the query-path interface of ``encoder.TextEncoder``
(``encode``, ``tokenize``, ``fingerprint``, ``dim``, ``max_length``). The fingerprint is the one
TensorFlow computes for the same weights, so vector indexes built by either accept the other.
This module must import neither TensorFlow nor Keras: the query path loads it alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from brainrank.index.errors import BrainrankError
from brainrank.ranker.encoding.batching import encode_batched, load_tokenizer
from brainrank.ranker.encoding.fetch import file_sha256

ONNX_FILE = "model.onnx"
META_FILE = "onnx.json"
EXPORT_FORMAT = "brainrank-onnx/1"
# The same names as encoding.encoder, which cannot be imported here (it imports TensorFlow).
WEIGHTS_FILE = "model.safetensors"
_META_KEYS = ("fingerprint", "weights_bytes", "weights_mtime_ns", "onnx_bytes", "dim")


class ExportMissingError(BrainrankError):
    """The folder has no usable ONNX export: missing, unreadable, or made from other weights."""


def weights_fingerprint(model_dir: Path) -> str:
    """The weights' fingerprint as TextEncoder computes it (sha256 of model.safetensors)."""
    return "sha256:" + file_sha256(Path(model_dir) / WEIGHTS_FILE)[:16]


def read_export_meta(model_dir: Path | str, *, verify: bool = False) -> dict:
    """``onnx.json`` of a folder whose export belongs to its current weights.

    Unchanged weights are recognised by size and mtime; only when those differ (a copied folder)
    or ``verify`` is set are the weights hashed, and with ``verify`` model.onnx as well. Raises
    ExportMissingError when the export is missing, unreadable or stale.
    """
    model_dir = Path(model_dir)
    weights, onnx_path, meta_path = (model_dir / n for n in (WEIGHTS_FILE, ONNX_FILE, META_FILE))
    if not weights.is_file():
        raise BrainrankError(
            f"encoder folder {model_dir} has no {WEIGHTS_FILE}; "
            "run `brainrank encoder fetch` or pass `--encoder PATH`"
        )
    if not meta_path.is_file() or not onnx_path.is_file():
        raise ExportMissingError(f"{model_dir} has no ONNX export ({ONNX_FILE} and {META_FILE})")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != EXPORT_FORMAT or any(k not in meta for k in _META_KEYS):
            raise ValueError(f"expected format {EXPORT_FORMAT!r} with fields {list(_META_KEYS)}")
    except (OSError, ValueError, AttributeError) as exc:
        raise ExportMissingError(f"cannot read {meta_path}: {exc}") from exc
    stat = weights.stat()
    same_file = (stat.st_size, stat.st_mtime_ns) == (
        meta["weights_bytes"],
        meta["weights_mtime_ns"],
    )
    if (verify or not same_file) and weights_fingerprint(model_dir) != meta["fingerprint"]:
        raise ExportMissingError(
            f"{onnx_path} was exported from other weights ({meta['fingerprint']}) than "
            f"{weights} holds now"
        )
    if onnx_path.stat().st_size != meta["onnx_bytes"] or (
        verify and "sha256:" + file_sha256(onnx_path) != meta.get("onnx_sha256")
    ):
        raise ExportMissingError(f"{onnx_path} does not match {meta_path}: damaged or replaced")
    return meta


def open_session(model: Path | bytes, threads: int | None = None):
    """An ONNX Runtime CPU session over a model file or serialized model, fully optimised.

    ``threads`` sets the intra-op pool; None lets ONNX Runtime size it from the cores.
    """
    import onnxruntime as ort

    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be None or a positive integer, got {threads!r}")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: its warnings are noise on stderr for users
    if threads is not None:
        options.intra_op_num_threads = threads
    # Idle pool threads sleep instead of spinning: spinning only wins on an otherwise idle
    # machine, and costs the other workers (and the client) their cores under load.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    model_arg = model if isinstance(model, bytes) else os.fspath(model)
    return ort.InferenceSession(model_arg, sess_options=options, providers=["CPUExecutionProvider"])


def check_max_length(max_length: int, meta: dict) -> int:
    """The model's max_position_embeddings, once ``max_length`` is known to fit in it."""
    max_positions = int(meta.get("max_position_embeddings", 512))
    if not 2 <= max_length <= max_positions:
        raise BrainrankError(
            f"max_length {max_length} must be between 2 and the model's "
            f"max_position_embeddings {max_positions}"
        )
    return max_positions


class OnnxEncoder:
    """A sentence encoder served by ONNX Runtime: tokenizer, session and the weights' identity."""

    precision = "float32"  # queries are always embedded in float32

    def __init__(self, *, name, session, tokenizer, dim, max_length, max_positions, fingerprint):
        """Use ``OnnxEncoder.load``; this only wires together what it has read."""
        self.name: str = name
        self.dim: int = int(dim)
        self.max_length: int = max_length
        self.fingerprint: str = fingerprint
        self._session = session
        self._tokenizer = tokenizer
        self._max_positions = int(max_positions)

    @classmethod
    def load(
        cls,
        model_dir: Path | str,
        max_length: int = 256,
        threads: int | None = None,
        *,
        verify: bool = False,
    ) -> OnnxEncoder:
        """Open the ONNX export of an encoder folder (see ``onnx_export.export_onnx``).

        ``max_length`` counts tokens including [CLS] and [SEP]; ``verify`` hashes the weights and
        model.onnx instead of trusting their size and mtime. Raises ExportMissingError when the
        folder has no usable export, so a caller may export one and retry.
        """
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise BrainrankError(f"encoder folder {model_dir} does not exist")
        meta = read_export_meta(model_dir, verify=verify)
        try:
            session = open_session(model_dir / ONNX_FILE, threads)
        except ValueError:  # a bad ``threads``, already named
            raise
        except Exception as exc:  # onnxruntime raises its own (pybind) exception types
            raise ExportMissingError(f"cannot load {model_dir / ONNX_FILE}: {exc}") from exc
        return cls.from_session(session, model_dir, meta, max_length=max_length)

    @classmethod
    def from_session(cls, session, model_dir: Path, meta: dict, *, max_length: int):
        """Pair a session with the folder's tokenizer; ``meta`` gives fingerprint and sizes."""
        max_positions = check_max_length(max_length, meta)
        tokenizer = load_tokenizer(model_dir, max_length)
        return cls(
            name=model_dir.resolve().name,
            session=session,
            tokenizer=tokenizer,
            dim=meta["dim"],
            max_length=max_length,
            max_positions=max_positions,
            fingerprint=meta["fingerprint"],
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
        batch_size: int = 32,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Embed texts as float32 [n, dim] unit vectors; ``progress(k)`` after each batch of k.

        Each batch is padded to its longest text only: the graph needs no fixed shapes.
        """
        return encode_batched(
            texts,
            self.tokenize,
            self._infer,
            self.dim,
            batch_size=batch_size,
            progress=progress,
            max_width=self._max_positions,
        )

    def _infer(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The vectors of one padded batch."""
        return self._session.run(["embedding"], onnx_inputs(input_ids, mask))[0]


def onnx_inputs(input_ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """The graph's inputs for one padded batch (the export takes int64 ids and mask)."""
    return {"input_ids": input_ids.astype(np.int64), "attention_mask": mask.astype(np.int64)}
