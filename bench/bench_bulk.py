"""Bulk embedding throughput per runtime and precision, and what ``auto`` picks on this CPU.

    .venv/bin/python bench/bench_bulk.py [--docs 512] [--batch-size 64] [--repeats 2]

Embeds the first --docs SciFact documents (title + abstract, truncated at 256 tokens as
ingest's passages are) with every bulk path: TensorFlow float32 (the reference) and bfloat16,
ONNX Runtime float32 (the query runtime), OpenVINO float32 and bfloat16 (one batch at a time,
and the default: several batches in flight on OpenVINO's throughput streams). Prints documents per
second (best of --repeats, after one warm-up batch), the smallest cosine of any document's
vector to TensorFlow float32's, and the smallest cosine between a document embedded alone and
inside its batch (a vector must not depend on its batch-mates). Run on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date

import numpy as np
from common import dataset_dir, machine, print_table


def texts_of(collection, limit: int) -> list[str]:
    out = []
    with (collection / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            doc = json.loads(line)
            out.append(f"{doc.get('title', '')}\n{doc.get('text', '')}")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=None)
    parser.add_argument("--docs", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    from brainrank.ranker.config import load_config
    from brainrank.ranker.encoding.bulk import OpenVinoEncoder
    from brainrank.ranker.encoding.encoder import TextEncoder
    from brainrank.ranker.encoding.fetch import fetch_encoder
    from brainrank.ranker.encoding.precision import (
        bulk_precision,
        cpu_has_bf16_units,
        resolve_precision,
    )
    from brainrank.ranker.encoding.runtime import OnnxEncoder

    texts = texts_of(dataset_dir(args.datasets, "scifact"), args.docs)
    folder = fetch_encoder(load_config().encoder.cache_dir)
    tf_encoder = TextEncoder.load(folder, max_length=256)

    def tf_path(precision):
        def encode(batch, size):
            with bulk_precision(precision):
                return tf_encoder.encode(batch, batch_size=size)

        return encode

    def plain(encoder):
        return lambda batch, size: encoder.encode(batch, batch_size=size)

    paths = [("tensorflow", "float32", tf_path("float32"))]
    if cpu_has_bf16_units():
        paths.append(("tensorflow", "bfloat16", tf_path("bfloat16")))
    paths.append(("onnxruntime", "float32", plain(OnnxEncoder.load(folder, 256))))
    for precision in ("float32", "bfloat16"):
        if precision == "bfloat16" and not cpu_has_bf16_units():
            continue
        # One batch at a time on all threads (the earlier path), then the default: batches
        # in flight on the streams OpenVINO's throughput hint picks.
        one = OpenVinoEncoder.load(folder, 256, precision, streams=1)
        paths.append(("openvino, 1 stream", precision, plain(one)))
        paths.append(("openvino", precision, plain(OpenVinoEncoder.load(folder, 256, precision))))

    rows, reference = [], None
    for runtime, precision, encode in paths:
        rate, vectors = timed(encode, texts, args.batch_size, args.repeats)
        reference = vectors if reference is None else reference
        few = texts[:32]
        alone = np.vstack([encode([t], 1) for t in few])
        batch_cos = float(np.min(np.sum(alone * vectors[:32], axis=1)))
        ref_cos = float(np.min(np.sum(vectors * reference, axis=1)))
        rows.append([runtime, precision, round(rate, 1), f"{ref_cos:.6f}", f"{batch_cos:.6f}"])
        print(f"{runtime} {precision}: {rate:.1f} docs/s", flush=True)

    print(f"\nMachine: {machine()}; {date.today().isoformat()}")
    print(f"{len(texts)} SciFact documents, batch {args.batch_size}, best of {args.repeats}")
    print_table(
        "Bulk embedding, documents/s",
        ["runtime", "precision", "docs/s", "min cosine to TF float32", "min cosine alone vs batch"],
        rows,
    )
    print(f"\n`[encoder] bulk_precision = auto` resolves to {resolve_precision('auto')} here.")


if __name__ == "__main__":
    main()
