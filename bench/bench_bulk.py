"""Bulk embedding throughput per runtime and precision, and what ``auto`` picks on this CPU.

    .venv/bin/python bench/bench_bulk.py [--docs 512] [--batch-size 64] [--repeats 2]
        [--paths tf-f32,ort-f32,ov-bf16,...] [--threads N] [--passages]
        [--encoder DIR] [--save FILE.npz] [--reference FILE.npz]

Embeds the first --docs SciFact documents (title + abstract, truncated at 256 tokens as
ingest's passages are) with every bulk path: TensorFlow float32 (the reference) and bfloat16
(``tf-f32``, ``tf-bf16``), ONNX Runtime float32 (``ort-f32``, the query runtime), OpenVINO
float32 and bfloat16 one batch at a time (``ov-f32-1``, ``ov-bf16-1``) and the default, several
batches in flight on OpenVINO's throughput streams (``ov-f32``, ``ov-bf16``). Prints documents
per second (best of --repeats, after one warm-up batch), the smallest cosine of any document's
vector to TensorFlow float32's, and the smallest cosine between a document embedded alone and
inside its batch (a vector must not depend on its batch-mates). Run on a quiet machine.

``--passages`` embeds every passage of those documents as ingest splits them (title plus a
256-token window, ingest's overlap and passage cap) instead: ``--docs 0`` with it is the
embedding work of a full SciFact ingest. ``--threads N`` caps every runtime's threads (with
``taskset`` it measures N cores of a larger machine). Where TensorFlow is not installed its
rows are skipped; ``--save`` writes each path's vectors and ``--reference`` reads TensorFlow
float32's from such a file, written by a run on a machine that has it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from functools import cache
from pathlib import Path

import numpy as np
from common import dataset_dir, machine, print_table


def documents_of(collection, limit: int | None) -> list:
    """The first ``limit`` documents of a BEIR corpus (all with None)."""
    from brainrank.index.records import Document

    out = []
    with (collection / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            doc = json.loads(line)
            out.append(Document(str(doc["_id"]), doc.get("title", ""), doc.get("text", "")))
            if len(out) == limit:
                break
    return out


def timed(encode, texts: list[str], batch_size: int, repeats: int) -> tuple[float, np.ndarray]:
    encode(texts[:batch_size], batch_size)  # warm-up: compile, allocate
    best, vectors = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        vectors = encode(texts, batch_size)
        best = min(best, time.perf_counter() - t)
    return len(texts) / best, vectors


PATHS = ("tf-f32", "tf-bf16", "ort-f32", "ov-f32-1", "ov-f32", "ov-bf16-1", "ov-bf16")
NAMES = {
    "tf": "tensorflow",
    "ort": "onnxruntime",
    "ov": "openvino",
    "f32": "float32",
    "bf16": "bfloat16",
}


def passages_of(documents: list, folder) -> list[str]:
    """Every passage of the documents, split as ingest splits them."""
    from brainrank.ranker.config import load_config
    from brainrank.ranker.encoding.batching import load_tokenizer
    from brainrank.ranker.retrieval.passages import PassageSplitter

    cfg = load_config().encoder
    splitter = PassageSplitter(
        load_tokenizer(folder, 256),
        256,
        overlap=cfg.passage_overlap,
        max_passages=cfg.max_passages,
    )
    return [p for passages in splitter.split(documents) for p in passages]


def tensorflow_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=None)
    parser.add_argument("--docs", type=int, default=512, help="0: every document")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated, default all")
    parser.add_argument("--threads", type=int, default=None, help="threads per runtime")
    parser.add_argument("--passages", action="store_true", help="embed ingest's passages")
    parser.add_argument("--encoder", default=None, help="encoder folder (default: fetched)")
    parser.add_argument("--save", default=None, help="write every path's vectors (.npz)")
    parser.add_argument("--reference", default=None, help="TensorFlow float32 vectors (.npz)")
    args = parser.parse_args()
    wanted = args.paths.split(",")
    if unknown := sorted(set(wanted) - set(PATHS)):
        parser.error(f"unknown paths {unknown}; choose from {', '.join(PATHS)}")

    from brainrank.ranker.config import load_config
    from brainrank.ranker.encoding.bulk import OpenVinoEncoder
    from brainrank.ranker.encoding.precision import cpu_has_bf16_units, resolve_precision
    from brainrank.ranker.encoding.runtime import OnnxEncoder

    documents = documents_of(dataset_dir(args.datasets, "scifact"), args.docs or None)
    if args.encoder:
        folder = Path(args.encoder)
    else:
        from brainrank.ranker.encoding.fetch import fetch_encoder

        folder = fetch_encoder(load_config().encoder.cache_dir)
    texts, unit = [d.full_text for d in documents], "documents"
    if args.passages:
        texts, unit = passages_of(documents, folder), "passages"

    skipped = {}  # path: why
    if not cpu_has_bf16_units():
        skipped.update({p: "no bfloat16 units" for p in wanted if "-bf16" in p})
    if not tensorflow_installed():
        skipped.update({p: "no TensorFlow" for p in wanted if p.startswith("tf-")})
    paths = []
    for key in (p for p in PATHS if p in wanted and p not in skipped):
        runtime, precision, *one = key.split("-")
        label, precision = NAMES[runtime], NAMES[precision]
        if runtime == "tf":
            encode = tf_path(folder, precision, args.threads)
        elif runtime == "ort":
            encode = plain(OnnxEncoder.load(folder, 256, args.threads))
        else:
            streams = 1 if one else None
            encoder = OpenVinoEncoder.load(folder, 256, precision, args.threads, streams)
            label = "openvino, 1 stream" if one else "openvino"
            label += f" ({openvino_layout(encoder)})"
            encode = plain(encoder)
        paths.append((key, label, precision, encode))

    reference = None
    if args.reference:
        reference = np.load(args.reference)["tf-f32"]
        if reference.shape[0] != len(texts):
            sys.exit(f"{args.reference} holds {reference.shape[0]} vectors, not {len(texts)}")
    rows, saved = [], {}
    for key, label, precision, encode in paths:
        rate, vectors = timed(encode, texts, args.batch_size, args.repeats)
        saved[key] = vectors
        if key == "tf-f32":
            reference = vectors
        few = texts[:32]
        alone = np.vstack([encode([t], 1) for t in few])
        batch_cos = float(np.min(np.sum(alone * vectors[:32], axis=1)))
        ref_cos = "-"
        if reference is not None:
            ref_cos = f"{float(np.min(np.sum(vectors * reference, axis=1))):.6f}"
        rows.append([label, precision, f"{rate:.1f}", ref_cos, f"{batch_cos:.6f}"])
        print(f"{label} {precision}: {rate:.1f} {unit}/s", flush=True)
    if args.save:
        np.savez(args.save, **saved)

    print(f"\nMachine: {machine()}; {date.today().isoformat()}")
    print(
        f"{len(texts)} SciFact {unit}, batch {args.batch_size}, best of {args.repeats}, "
        f"threads {args.threads or 'all'}"
    )
    if skipped:
        print("Skipped here: " + ", ".join(f"{p} ({why})" for p, why in skipped.items()))
    print_table(
        f"Bulk embedding, {unit}/s",
        ["runtime", "precision", f"{unit}/s", "min cosine to TF float32", "min cosine alone/batch"],
        rows,
    )
    print(f"\n`[encoder] bulk_precision = auto` resolves to {resolve_precision('auto')} here.")


def tf_path(folder, precision: str, threads: int | None):
    from brainrank.ranker.encoding.precision import bulk_precision

    encoder = tf_encoder(folder, threads)

    def encode(batch, size):
        with bulk_precision(precision):
            return encoder.encode(batch, batch_size=size)

    return encode


@cache
def tf_encoder(folder, threads: int | None):
    """One TensorFlow encoder for both precisions (the threads are set before it loads)."""
    from brainrank.ranker.encoding.encoder import TextEncoder
    from brainrank.ranker.encoding.precision import configure_tf_threads

    if threads is not None:
        configure_tf_threads(threads)
    return TextEncoder.load(folder, max_length=256)


def plain(encoder):
    return lambda batch, size: encoder.encode(batch, batch_size=size)


def openvino_layout(encoder) -> str:
    """The streams and threads OpenVINO compiled the model for."""
    compiled = encoder._request.get_compiled_model()
    streams = compiled.get_property("NUM_STREAMS")
    threads = compiled.get_property("INFERENCE_NUM_THREADS")
    return f"{streams} streams, {threads} threads"


if __name__ == "__main__":
    main()
