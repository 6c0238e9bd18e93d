"""Static (calibrated) int8 for bulk embedding: faster than bfloat16, and safe enough to use?

    python -m venv /tmp/int8 && /tmp/int8/bin/pip install "openvino==2026.4.1" "numpy<2" \
        nncf tokenizers
    /tmp/int8/bin/python bench/bench_int8.py [--docs 384] [--calibration data/docs.jsonl]
        [--encoder ~/.cache/brainrank/encoders/all-MiniLM-L6-v2] [--datasets ../shared/datasets]

Dynamic int8 was ruled out because activation ranges computed per batch make a document's
vector depend on its batch-mates (``../shared/notes/serving.md``). Static quantization fixes the
ranges once, on calibration text, so it might not. This quantizes the exported encoder
(``model.onnx``, written by ``brainrank encoder fetch``) with NNCF's post-training quantization
for transformers, calibrated on the bundled sample's documents (not on the collection measured),
and compares it on OpenVINO's CPU plugin with the float32 and bfloat16 compilations the product
uses, against ``[encoder] bulk_precision``'s requirements: documents/s on the first ``--docs``
SciFact documents (batch 64, length-sorted as ingest batches, best of 2), the minimum cosine to
float32 over all 5,183 documents, the minimum cosine of a document embedded alone against the
same document in its batch (>= 0.9999 required), and the dense nDCG@10 of SciFact's test queries
over whole documents (title and abstract, first 256 tokens; queries in float32; within 0.002 of
float32 required). Runs in its own environment: NNCF is not a brainrank dependency.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
from common import REPO, machine, print_table

BATCH = 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=384)
    parser.add_argument("--calibration", type=Path, default=REPO / "data" / "docs.jsonl")
    parser.add_argument(
        "--encoder",
        type=Path,
        default=Path.home() / ".cache" / "brainrank" / "encoders" / "all-MiniLM-L6-v2",
    )
    parser.add_argument(
        "--datasets",
        type=Path,
        default=Path(os.environ.get("BRAINRANK_DATASETS", REPO.parent / "shared" / "datasets")),
    )
    args = parser.parse_args()
    try:
        import nncf
        import openvino as ov
        from tokenizers import Tokenizer
    except ImportError as exc:
        sys.exit(f"skipped: {exc.name} is not installed (see this script's docstring)")
    scifact = args.datasets / "scifact"
    if not (scifact / "corpus.jsonl").is_file():
        sys.exit(f"skipped: {scifact}/corpus.jsonl not found (set --datasets)")
    if not (args.encoder / "model.onnx").is_file():
        sys.exit(f"skipped: no model.onnx in {args.encoder} (run `brainrank encoder fetch`)")

    tokenizer = Tokenizer.from_file(str(args.encoder / "tokenizer.json"))
    tokenizer.enable_truncation(256)
    tokenizer.no_padding()  # the file pads to 128; batches are padded here, with a mask

    def batches(texts, size):
        for start in range(0, len(texts), size):
            encoded = tokenizer.encode_batch(texts[start : start + size])
            width = max(len(e.ids) for e in encoded)
            ids = np.zeros((len(encoded), width), np.int64)
            mask = np.zeros((len(encoded), width), np.int64)
            for row, e in enumerate(encoded):
                ids[row, : len(e.ids)] = e.ids
                mask[row, : len(e.ids)] = 1
            yield ids, mask

    def embed(compiled, texts, size=BATCH):
        request = compiled.create_infer_request()
        order = np.argsort([len(t) for t in texts], kind="stable")
        parts = []
        for ids, mask in batches([texts[i] for i in order], size):
            out = request.infer({"input_ids": ids, "attention_mask": mask})
            parts.append(np.asarray(next(iter(out.values())), np.float32))
        vectors = np.empty((len(texts), parts[0].shape[1]), np.float32)
        vectors[order] = np.concatenate(parts)
        return vectors

    def text_of(record):
        return f"{record.get('title', '')}\n{record.get('text', '')}".strip()

    docs = [json.loads(line) for line in (scifact / "corpus.jsonl").open()]
    texts = [text_of(d) for d in docs]
    calibration = [text_of(json.loads(line)) for line in args.calibration.open()]

    core = ov.Core()
    model = core.read_model(str(args.encoder / "model.onnx"))
    t = time.perf_counter()
    quantized = nncf.quantize(
        model,
        nncf.Dataset(
            list(batches(calibration, 1)),
            lambda b: dict(zip(("input_ids", "attention_mask"), b, strict=True)),
        ),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=min(300, len(calibration)),
    )
    quantize_s = time.perf_counter() - t

    def compile_(m, hint):
        return core.compile_model(
            m, "CPU", {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": os.cpu_count()}
        )

    paths = {
        "float32": compile_(model, "f32"),
        "bfloat16": compile_(model, "bf16"),
        "int8, the rest float32": compile_(quantized, "f32"),
        "int8, the rest bfloat16": compile_(quantized, "bf16"),
    }

    queries = {}
    for line in (scifact / "queries.jsonl").open():
        q = json.loads(line)
        queries[q["_id"]] = q["text"]
    qrels: dict[str, dict[str, int]] = {}
    for line in (scifact / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        qid, did, grade = line.split("\t")
        qrels.setdefault(qid, {})[did] = int(grade)
    qids = sorted(qrels)
    query_vectors = embed(paths["float32"], [queries[q] for q in qids])
    ids = [d["_id"] for d in docs]

    def ndcg10(vectors):
        scores = query_vectors @ vectors.T
        total = 0.0
        for i, q in enumerate(qids):
            top = np.argsort(-scores[i], kind="stable")[:10]
            dcg = sum(
                (2 ** qrels[q].get(ids[j], 0) - 1) / np.log2(r + 2) for r, j in enumerate(top)
            )
            ideal = sorted(qrels[q].values(), reverse=True)[:10]
            total += dcg / sum((2**g - 1) / np.log2(r + 2) for r, g in enumerate(ideal))
        return total / len(qids)

    def cosines(a, b):
        return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)

    sample = texts[: args.docs]
    reference = embed(paths["float32"], texts)
    base = ndcg10(reference)
    rows = []
    for name, compiled in paths.items():
        embed(compiled, sample[:BATCH])  # warm-up
        best = min(_timed(embed, compiled, sample) for _ in range(2))
        vectors = reference if name == "float32" else embed(compiled, texts)
        alone = np.concatenate([embed(compiled, [t], 1) for t in sample[:BATCH]])
        score = ndcg10(vectors)
        rows.append(
            [
                name,
                f"{len(sample) / best:.1f}",
                f"{cosines(vectors, reference).min():.6f}",
                f"{cosines(alone, vectors[:BATCH]).min():.6f}",
                f"{score:.4f} ({score - base:+.4f})",
            ]
        )
    print(
        f"Machine: {machine()}; {date.today()}; OpenVINO {ov.__version__}, NNCF {nncf.__version__}"
    )
    print(
        f"{len(sample)} SciFact documents, batch {BATCH}, best of 2; int8 calibrated on "
        f"{min(300, len(calibration))} documents of {args.calibration.name} in {quantize_s:.0f} s"
    )
    print_table(
        "Bulk embedding: static int8 beside the product's precisions",
        [
            "OpenVINO compilation",
            "documents/s",
            "min cosine to float32",
            "min cosine alone/batch",
            "SciFact test dense nDCG@10",
        ],
        rows,
    )


def _timed(embed, compiled, texts) -> float:
    t = time.perf_counter()
    embed(compiled, texts)
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
