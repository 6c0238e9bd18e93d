"""Precision and threading of TensorFlow's CPU kernels for the encoder.

TensorFlow is imported inside the functions that change its settings, so resolving a precision
setting (config validation, ``--help``) stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from brainrank.ranker.config import PRECISIONS


def configure_tf_threads(intra_op: int | None = None, inter_op: int = 1) -> bool:
    """Size TF's CPU thread pools; a no-op returning False once TF has started or been configured.

    Defaults: every core for each op, one op at a time. The encoder is a chain of large matmuls,
    so extra inter-op threads only let the Q/K/V projections compete for the same few cores.
    """
    import tensorflow as tf

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
    import tensorflow as tf

    resolved = resolve_precision(precision)
    options = tf.config.optimizer.get_experimental_options()
    before = bool(options.get(_BF16_OPTION, False))
    tf.config.optimizer.set_experimental_options({_BF16_OPTION: resolved == "bfloat16"})
    try:
        yield resolved
    finally:
        tf.config.optimizer.set_experimental_options({_BF16_OPTION: before})
