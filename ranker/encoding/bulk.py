"""Embedding whole collections: the exported encoder on OpenVINO, in float32 or bfloat16.

Ingest, reindex and the re-embedding behind a promotion embed every passage of a collection,
so their throughput is what users wait for. They run the same ONNX graph the query path serves
(``onnx_export``), compiled by OpenVINO's CPU plugin: on CPUs with bfloat16 matrix units (AMX,
AVX-512 BF16) it computes matrix products in bfloat16 and keeps the rest in float32, which
``bench/bench_bulk.py`` measured 1.7-2x faster than its float32 and 2-4x faster than
TensorFlow's, at cosine >= 0.9999 to float32. Unlike dynamic int8, a document's vector does not
depend on its batch-mates (each row is computed on its own; only padding differs).

``[encoder] bulk_runtime`` picks the runtime (``auto``: OpenVINO for BERT folders, TensorFlow
for two-tower encoders, which have no export) and ``[encoder] bulk_precision`` the precision
(``auto``: bfloat16 where the CPU has the units, else float32). Queries are always embedded in
float32 by ``runtime.OnnxEncoder``. TensorFlow stays the reference: the export is checked
against it when written, and tests compare the two.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np

from brainrank.ranker.config import EncoderConfig
from brainrank.ranker.encoding.batching import load_tokenizer, padded_batches
from brainrank.ranker.encoding.precision import resolve_precision
from brainrank.ranker.encoding.runtime import (
    ONNX_FILE,
    ExportMissingError,
    OnnxEncoder,
    check_max_length,
    onnx_inputs,
    read_export_meta,
)

# OpenVINO's names for the precisions of ``[encoder] bulk_precision``.
_OV_PRECISION = {"float32": "f32", "bfloat16": "bf16"}


class OpenVinoEncoder(OnnxEncoder):
    """An exported encoder compiled by OpenVINO for bulk embedding: ``OnnxEncoder``'s interface
    (same tokenizer, batching and fingerprint), another runtime, and its ``precision``."""

    def __init__(self, *, request, precision: str, queue=None, **fields):
        """Use ``OpenVinoEncoder.load``; this only wires together what it has read."""
        super().__init__(session=None, **fields)
        self.precision: str = precision
        self._request = request
        self._queue = queue  # an AsyncInferQueue over the streams, when there are several

    @classmethod
    def load(
        cls,
        model_dir: Path | str,
        max_length: int = 256,
        precision: str = "auto",
        threads: int | None = None,
        streams: int | None = None,
    ) -> OpenVinoEncoder:
        """Compile a folder's ONNX export; raises ExportMissingError when it has none.

        ``streams`` batches run at once, each on its share of the cores; by default OpenVINO's
        throughput hint chooses how many, and as many batches are kept in flight as it
        recommends. ``streams=1`` runs one batch at a time on all the threads.
        """
        import openvino as ov

        model_dir = Path(model_dir)
        meta = read_export_meta(model_dir)
        resolved = resolve_precision(precision)
        max_positions = check_max_length(max_length, meta)
        properties = {"INFERENCE_PRECISION_HINT": _OV_PRECISION[resolved]}
        if threads is not None:
            properties["INFERENCE_NUM_THREADS"] = int(threads)
        if streams is not None and int(streams) < 1:
            raise ValueError(f"streams must be at least 1, got {streams}")
        if streams != 1:
            properties["PERFORMANCE_HINT"] = "THROUGHPUT"
            if streams is not None:
                properties["NUM_STREAMS"] = str(int(streams))
        try:
            compiled = ov.Core().compile_model(str(model_dir / ONNX_FILE), "CPU", properties)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
            raise ExportMissingError(f"cannot compile {model_dir / ONNX_FILE}: {exc}") from exc
        return cls(
            request=compiled.create_infer_request(),
            queue=_queue(ov, compiled) if streams != 1 else None,
            precision=resolved,
            name=model_dir.resolve().name,
            tokenizer=load_tokenizer(model_dir, max_length),
            dim=meta["dim"],
            max_length=max_length,
            max_positions=max_positions,
            fingerprint=meta["fingerprint"],
        )

    def _infer(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = self._request.infer(onnx_inputs(input_ids, mask))
        return np.asarray(next(iter(out.values())), dtype=np.float32)

    def encode(self, texts, *, batch_size: int = 32, progress=None) -> np.ndarray:
        """As ``OnnxEncoder.encode``; with several streams the batches run concurrently and
        each lands in its own rows (a vector still never depends on its batch-mates)."""
        if self._queue is None or isinstance(texts, str):
            return super().encode(texts, batch_size=batch_size, progress=progress)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        done: list[int] = []  # batch sizes finished, reported from this thread

        def finished(request, rows) -> None:
            out[rows] = request.get_output_tensor(0).data[: len(rows)]
            done.append(len(rows))

        self._queue.set_callback(finished)
        batches = padded_batches(texts, self.tokenize, batch_size, max_width=self._max_positions)
        for rows, input_ids, mask in batches:
            self._queue.start_async(onnx_inputs(input_ids, mask), rows)
            while progress is not None and done:
                progress(done.pop())
        self._queue.wait_all()
        while progress is not None and done:
            progress(done.pop())
        return out


def _queue(ov, compiled):
    """As many requests in flight as the compiled model recommends (one per stream or so)."""
    jobs = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    return ov.AsyncInferQueue(compiled, max(jobs, 1)) if jobs > 1 else None


def bulk_runtime(path: Path, setting: str) -> str:
    """``openvino`` or ``tensorflow`` for the encoder folder at ``path``."""
    if setting != "auto":
        return setting
    # Two-tower folders (no config.json at the top) have no ONNX export.
    return "openvino" if (Path(path) / "config.json").is_file() else "tensorflow"


def load_bulk_encoder(
    path: Path | str, cfg: EncoderConfig, *, reference=None, threads: int | None = None
):
    """The encoder that embeds a collection with the folder at ``path``, per ``cfg``.

    A BERT folder without an export gets one first (``reference``, a loaded TextEncoder of the
    same weights, saves loading them again for the check). ``threads`` caps the threads it
    computes on (default: every core), for a process that shares the machine (a Ray actor).
    """
    from brainrank.ranker.encoding.loading import load_encoder

    path = Path(path)
    if bulk_runtime(path, cfg.bulk_runtime) == "tensorflow":
        if reference is not None:
            return reference
        if threads is not None:
            from brainrank.ranker.encoding.precision import configure_tf_threads

            configure_tf_threads(threads)
        return load_encoder(path, cfg.max_length)
    try:
        return OpenVinoEncoder.load(path, cfg.max_length, cfg.bulk_precision, threads)
    except ExportMissingError:
        from brainrank.ranker.encoding.onnx_export import export_onnx

        export_onnx(path, reference=reference)
        return OpenVinoEncoder.load(path, cfg.max_length, cfg.bulk_precision, threads)


def bulk_context(encoder, precision: str):
    """The context to embed in: TensorFlow's bfloat16 rewrite for a TF encoder, else nothing
    (OpenVINO's precision is fixed when the encoder is compiled; a Ray pool's encoders, marked
    ``remote``, set theirs in their own processes)."""
    if isinstance(encoder, OnnxEncoder) or getattr(encoder, "remote", False):  # OpenVINO's too
        return nullcontext(encoder.precision)
    return _tf_precision(precision)


@contextmanager
def _tf_precision(precision: str) -> Iterator[str]:
    from brainrank.ranker.encoding.precision import bulk_precision

    with bulk_precision(precision) as resolved:
        yield resolved
