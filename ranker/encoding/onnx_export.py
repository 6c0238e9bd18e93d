"""Export a BERT/MiniLM folder to ONNX, built from its weights, and check it against TensorFlow.

The graph is written node by node with ``onnx.helper`` from ``model.safetensors`` and
``config.json``: the maths of ``bert.build_bert_model`` (word + position + token-type-0
embeddings and LayerNorm; post-LN layers of self-attention with an additive key padding mask and
an erf-GELU feed-forward; masked mean pooling; L2 normalisation). It follows the node pattern
ONNX Runtime's optimizer recognises in BERT exports (LayerNorm written out; separate Q/K/V
MatMul + Add; a shared ``(1 - mask) * -10000`` bias; Div by sqrt(head size); Softmax on axis 3;
residual Adds with the branch first), so at session load each layer becomes one Attention, one
BiasGelu and two SkipLayerNormalization kernels plus its MatMuls. A converter from the Keras
model (tf2onnx) emits Gather/Reshape chains that do not fuse, and is unmaintained.

Opset 12, not 17: ONNX Runtime 1.32's attention fusion matches MatMul only up to version 9 and
its fused LayerNorm only as version 1, so from opset 13 on attention stays unfused (measured:
42 MatMuls, 6 Softmax after optimisation against 18 MatMuls and 6 Attention at opset 12).

The export is written only when the ONNX model reproduces the TensorFlow encoder on a fixed set
of texts (minimum cosine ``MIN_COSINE``); ``onnx.json`` records the check and the fingerprint of
the weights, which ``runtime.read_export_meta`` compares against the folder on load.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from brainrank.index.atomic import atomic_file
from brainrank.index.errors import BrainrankError
from brainrank.ranker.encoding.fetch import file_sha256
from brainrank.ranker.encoding.runtime import (
    EXPORT_FORMAT,
    META_FILE,
    ONNX_FILE,
    WEIGHTS_FILE,
    OnnxEncoder,
    open_session,
)

OPSET = 12  # the newest opset whose BERT attention pattern ONNX Runtime 1.32 fuses (see above)
MIN_COSINE = 0.99999
_IR_VERSION = 7  # the IR version of opset 12, so older runtimes open the file too

_SENTENCES = (
    "The battery drains overnight even when the laptop is shut down.",
    "Resetting the router to factory settings erases the saved Wi-Fi networks.",
    "Der Drucker meldet einen Papierstau, obwohl kein Papier im Schacht liegt.",
    "Customers reported that invoices from March were charged twice.",
    "A warranty claim needs the serial number, the receipt and a short description.",
    "Open Settings > Privacy, then turn off location history for every device.",
)


def _long_text(n_sentences: int, start: int) -> str:
    return " ".join(_SENTENCES[(start + i) % len(_SENTENCES)] for i in range(n_sentences))


# Short and long, punctuation, numbers, non-Latin scripts and text beyond 256 tokens (truncated):
# the export is checked on what a query or a document may contain.
CHECK_TEXTS = (
    "",
    "?",
    "laptop won't turn on",
    "How do I reset my password?",
    "WHY IS MY PRINTER OFFLINE AGAIN",
    "Ünïcödé façade — naïve café, 東京タワー, Ελληνικά and an emoji 🙂",
    "SELECT * FROM users WHERE id = 42; -- <b>html</b> & symbols %$#@!",
    "1234567890 3.14159 2026-12-02 v1.2.3 #42 @support",
    "La batterie ne se charge plus après la mise à jour du système.",
    "  several\n\nlines\tand   irregular   spacing  ",
    _long_text(3, 0),
    _long_text(6, 2),
    _long_text(12, 4),
    _long_text(20, 1),
    _long_text(40, 3),
    "refund " * 400,
)


def export_onnx(model_dir: Path | str, *, reference=None) -> Path:
    """Write ``model.onnx`` and ``onnx.json`` into a BERT folder and return the model's path.

    ``reference`` is a loaded ``TextEncoder`` holding exactly the folder's weights (saves loading
    them again); without it the folder is loaded with TensorFlow. Raises BrainrankError, and
    leaves no export behind, when the ONNX model does not reproduce TensorFlow's vectors.
    """
    from brainrank.ranker.encoding.bert import read_config
    from brainrank.ranker.encoding.encoder import TextEncoder

    model_dir = Path(model_dir)
    cfg = read_config(model_dir)
    weights = model_dir / WEIGHTS_FILE
    stat = weights.stat()
    fingerprint = "sha256:" + file_sha256(weights)[:16]
    data = build_onnx_model(cfg, _read_tensors(weights)).SerializeToString()
    if reference is None:
        reference = TextEncoder.load(model_dir, max_length=min(256, cfg["max_position_embeddings"]))
    meta = {
        "format": EXPORT_FORMAT,
        "fingerprint": fingerprint,
        "weights_bytes": stat.st_size,
        "weights_mtime_ns": stat.st_mtime_ns,
        "dim": cfg["hidden_size"],
        "max_position_embeddings": cfg["max_position_embeddings"],
    }
    min_cosine = _check(data, model_dir, meta, reference)
    meta.update(
        onnx_bytes=len(data),
        onnx_sha256="sha256:" + hashlib.sha256(data).hexdigest(),
        min_cosine=round(min_cosine, 8),
        texts=len(CHECK_TEXTS),
        checked_max_length=reference.max_length,
        onnx_opset=OPSET,
        written=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    onnx_path, meta_path = model_dir / ONNX_FILE, model_dir / META_FILE
    try:
        # No onnx.json while model.onnx changes: a reader in between sees no export, never a mix.
        meta_path.unlink(missing_ok=True)
        if not min_cosine >= MIN_COSINE:
            onnx_path.unlink(missing_ok=True)
            raise BrainrankError(
                f"the ONNX export of {model_dir} differs from the TensorFlow encoder: minimum "
                f"cosine {min_cosine:.7f} over {len(CHECK_TEXTS)} texts, below {MIN_COSINE}; "
                "no export written (the query path cannot serve this encoder)"
            )
        # Readable by whoever may read the weights (atomic_file's temporary file is private).
        for path, content in ((onnx_path, data), (meta_path, json.dumps(meta, indent=2) + "\n")):
            with atomic_file(path, "wb") as fh:
                os.fchmod(fh.fileno(), stat.st_mode & 0o666)
                fh.write(content if isinstance(content, bytes) else content.encode("utf-8"))
    except OSError as exc:
        raise BrainrankError(f"cannot write the ONNX export into {model_dir}: {exc}") from exc
    return onnx_path


def _read_tensors(weights: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    try:
        return load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types
        raise BrainrankError(f"cannot read {weights}: {exc}") from exc


def _check(data: bytes, model_dir: Path, meta: dict, reference) -> float:
    """Minimum cosine between ONNX and TensorFlow vectors of ``CHECK_TEXTS``."""
    try:
        session = open_session(data)
    except Exception as exc:  # onnxruntime raises its own (pybind) exception types
        raise BrainrankError(
            f"ONNX Runtime rejects the graph built for {model_dir}: {exc}"
        ) from exc
    onnx_encoder = OnnxEncoder.from_session(
        session, model_dir, meta, max_length=reference.max_length
    )
    got = onnx_encoder.encode(CHECK_TEXTS, batch_size=8).astype(np.float64)
    want = reference.encode(CHECK_TEXTS).astype(np.float64)
    cosines = (got * want).sum(axis=1) / (
        np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1) + 1e-30
    )
    return float(np.nan_to_num(cosines, nan=-1.0).min())


class _Graph:
    """Collects nodes and initializers; each node gets one output named after the node."""

    def __init__(self):
        self.nodes: list = []
        self.initializers: list = []

    def const(self, name: str, value, dtype=np.float32) -> str:
        from onnx import numpy_helper

        array = np.ascontiguousarray(np.asarray(value, dtype=dtype))
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str, **attrs) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attrs))
        return name


def build_onnx_model(cfg: dict, tensors: dict[str, np.ndarray]):
    """The ONNX model (input_ids, attention_mask: int64 [batch, seq]) -> embedding [batch, dim].

    ``cfg`` is a checked config (``bert.read_config``); ``tensors`` the folder's weights under
    Hugging Face names, with or without the ``bert.`` prefix.
    """
    import onnx
    from onnx import TensorProto, helper

    prefix = "bert." if "bert.embeddings.word_embeddings.weight" in tensors else ""
    hidden, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    head_dim, eps = hidden // heads, float(cfg["layer_norm_eps"])
    g = _Graph()

    def weight(name: str, shape: tuple, *, linear: bool = False) -> str:
        key = prefix + name
        if key not in tensors:
            raise BrainrankError(f"the weights lack tensor {key}; is it a BERT model?")
        array = tensors[key].astype(np.float32)
        # Torch linear weights are [out, in]; MatMul multiplies by [in, out].
        array = array.T if linear else array
        if array.shape != shape:
            raise BrainrankError(
                f"tensor {key} has shape {tensors[key].shape}, which does not fit config.json"
            )
        return g.const(name, array)

    def linear(x: str, name: str, n_in: int, n_out: int, node: str) -> str:
        kernel = weight(f"{name}.weight", (n_in, n_out), linear=True)
        product = g.op("MatMul", [x, kernel], f"{node}/matmul")
        return g.op("Add", [product, weight(f"{name}.bias", (n_out,))], f"{node}/bias")

    def layer_norm(x: str, name: str, node: str) -> str:
        # Written out (opset 12 has no LayerNormalization op); ORT fuses it back at load.
        scale, bias = weight(f"{name}.weight", (hidden,)), weight(f"{name}.bias", (hidden,))
        mean = g.op("ReduceMean", [x], f"{node}/mean", axes=[-1])
        centred = g.op("Sub", [x, mean], f"{node}/centred")
        power = g.op("Pow", [centred, two], f"{node}/square")
        variance = g.op("ReduceMean", [power], f"{node}/variance", axes=[-1])
        std = g.op("Sqrt", [g.op("Add", [variance, epsilon], f"{node}/eps")], f"{node}/std")
        normed = g.op("Div", [centred, std], f"{node}/normed")
        return g.op("Add", [g.op("Mul", [normed, scale], f"{node}/scale"), bias], node)

    one, two, epsilon = g.const("one", 1.0), g.const("two", 2.0), g.const("layer_norm_eps", eps)
    zero, one_id = g.const("int_zero", 0, np.int64), g.const("int_one", 1, np.int64)
    # Embeddings: word + position[:seq] + token-type row 0, in the order the Keras layers add.
    word = g.op(
        "Gather",
        [weight("embeddings.word_embeddings.weight", (cfg["vocab_size"], hidden)), "input_ids"],
        "emb/word",
    )
    # Position ids 0..seq-1 per row, made from input_ids so that shape inference keeps the
    # symbolic [batch, sequence] dims, which the fusions need.
    ones = g.op("Add", [g.op("Mul", ["input_ids", zero], "emb/zeros"), one_id], "emb/ones")
    position_ids = g.op("Sub", [g.op("CumSum", [ones, one_id], "emb/count"), one_id], "emb/ids")
    positions = weight(
        "embeddings.position_embeddings.weight", (cfg["max_position_embeddings"], hidden)
    )
    position = g.op("Gather", [positions, position_ids], "emb/position")
    type_key = prefix + "embeddings.token_type_embeddings.weight"
    if type_key not in tensors or tensors[type_key].shape[-1:] != (hidden,):
        raise BrainrankError(f"the weights lack a usable tensor {type_key}; is it a BERT model?")
    type_row = g.const("embeddings.token_type_row", tensors[type_key][0].astype(np.float32))
    x = g.op("Add", [g.op("Add", [word, position], "emb/add_position"), type_row], "emb/add_type")
    x = layer_norm(x, "embeddings.LayerNorm", "emb/ln")

    # Additive key padding bias [batch, 1, 1, seq], shared by all layers.
    mask = g.op("Unsqueeze", ["attention_mask"], "mask/unsqueeze_1", axes=[1])
    mask = g.op(
        "Cast", [g.op("Unsqueeze", [mask], "mask/unsqueeze_2", axes=[2])], "mask/float", to=1
    )
    inverted = g.op("Sub", [one, mask], "mask/invert")
    mask_bias = g.op("Mul", [inverted, g.const("mask_fill", -10000.0)], "mask/bias")
    split_shape = g.const("split_heads_shape", [0, 0, heads, head_dim], np.int64)
    merge_shape = g.const("merge_heads_shape", [0, 0, hidden], np.int64)
    scale = g.const("attention_scale", math.sqrt(head_dim))
    sqrt2, half = g.const("sqrt2", math.sqrt(2.0)), g.const("half", 0.5)

    for i in range(cfg["num_hidden_layers"]):
        hf, node = f"encoder.layer.{i}.", f"layer_{i}"

        def heads_of(proj: str, perm: list[int], x=x, hf=hf, node=node) -> str:
            projected = linear(x, f"{hf}attention.self.{proj}", hidden, hidden, f"{node}/{proj}")
            split = g.op("Reshape", [projected, split_shape], f"{node}/{proj}/split")
            return g.op("Transpose", [split], f"{node}/{proj}/transpose", perm=perm)

        query = heads_of("query", [0, 2, 1, 3])
        key = heads_of("key", [0, 2, 3, 1])
        value = heads_of("value", [0, 2, 1, 3])
        scores = g.op("MatMul", [query, key], f"{node}/scores")
        scores = g.op("Div", [scores, scale], f"{node}/scaled")
        scores = g.op("Add", [scores, mask_bias], f"{node}/masked")
        probs = g.op("Softmax", [scores], f"{node}/softmax", axis=3)
        context = g.op("MatMul", [probs, value], f"{node}/context")
        context = g.op("Transpose", [context], f"{node}/context/transpose", perm=[0, 2, 1, 3])
        context = g.op("Reshape", [context, merge_shape], f"{node}/context/merge")
        attended = linear(context, f"{hf}attention.output.dense", hidden, hidden, f"{node}/out")
        x = g.op("Add", [attended, x], f"{node}/attention_residual")
        x = layer_norm(x, f"{hf}attention.output.LayerNorm", f"{node}/attention_ln")

        inner_size = cfg["intermediate_size"]
        inner = linear(x, f"{hf}intermediate.dense", hidden, inner_size, f"{node}/intermediate")
        # Exact GELU, x * 0.5 * (1 + erf(x / sqrt 2)), as Keras' "gelu" (approximate=False).
        erf = g.op("Erf", [g.op("Div", [inner, sqrt2], f"{node}/gelu/div")], f"{node}/gelu/erf")
        gelu = g.op("Mul", [inner, g.op("Add", [erf, one], f"{node}/gelu/add")], f"{node}/gelu/mul")
        gelu = g.op("Mul", [gelu, half], f"{node}/gelu/half")
        ffn = linear(gelu, f"{hf}output.dense", inner_size, hidden, f"{node}/output")
        x = g.op("Add", [ffn, x], f"{node}/output_residual")
        x = layer_norm(x, f"{hf}output.LayerNorm", f"{node}/output_ln")

    # Masked mean pooling (count floored at 1e-9 as sentence-transformers), then unit length.
    pool_mask = g.op("Unsqueeze", ["attention_mask"], "pool/unsqueeze", axes=[2])
    pool_mask = g.op("Cast", [pool_mask], "pool/mask", to=1)
    masked = g.op("Mul", [x, pool_mask], "pool/masked")
    total = g.op("ReduceSum", [masked], "pool/sum", axes=[1], keepdims=0)
    count = g.op("ReduceSum", [pool_mask], "pool/count", axes=[1], keepdims=0)
    count = g.op("Max", [count, g.const("count_floor", 1e-9)], "pool/count_floor")
    pooled = g.op("Div", [total, count], "pool/mean")
    squares = g.op("ReduceSumSquare", [pooled], "norm/squares", axes=[1], keepdims=1)
    squares = g.op("Max", [squares, g.const("norm_floor", 1e-12)], "norm/floor")
    g.op("Div", [pooled, g.op("Sqrt", [squares], "norm/length")], "embedding")

    graph = helper.make_graph(
        g.nodes,
        "brainrank_bert_encoder",
        [
            helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
            for name in ("input_ids", "attention_mask")
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", hidden])],
        initializer=g.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="brainrank",
        ir_version=_IR_VERSION,
    )
    onnx.checker.check_model(model)
    return model
