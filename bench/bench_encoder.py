"""Benchmark the Keras MiniLM encoder: documents/s at exactly 128 tokens, with and without XLA.

Usage: python bench/bench_encoder.py [--encoder PATH] [--datasets DIR] [--docs 512] [--repeats 3]

Documents come from SciFact's corpus (read in place) when present, otherwise from a repeated
paragraph; either way every one is truncated to exactly 128 tokens. A second table shows the
first-pass cost of documents with natural lengths (many padded shapes), where XLA compiles once
per distinct shape.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ranker.encoder import TextEncoder  # noqa: E402
from ranker.encoder_fetch import fetch_encoder  # noqa: E402

FILLER = (
    "Hybrid search engines retrieve candidates with a lexical index and a dense vector index, "
    "merge both lists and let a learned model order them using many signals. "
)


def load_texts(datasets: Path, limit: int) -> tuple[list[str], str]:
    """Up to ``limit`` SciFact title+abstract strings, or filler paragraphs if it is absent."""
    corpus = datasets / "scifact" / "corpus.jsonl"
    if not corpus.is_file():
        return [f"{i} " + FILLER * 8 for i in range(limit)], "filler paragraph"
    texts = []
    with corpus.open(encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            texts.append(f"{doc.get('title', '')}\n{doc.get('text', '')}")
    return texts, str(corpus)


def timed(encoder: TextEncoder, texts: list[str], batch_size: int) -> float:
    """Wall seconds for one encode() call, tokenisation included."""
    start = time.perf_counter()
    encoder.encode(texts, batch_size=batch_size)
    return time.perf_counter() - start


def main() -> None:
    """Run the benchmark and print tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", type=Path, default=None, help="model folder (default: fetch)")
    parser.add_argument("--datasets", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--docs", type=int, default=512, help="documents per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64])
    args = parser.parse_args()

    model_dir = args.encoder or fetch_encoder(Path.home() / ".cache" / "brainrank" / "encoders")
    texts, source = load_texts(args.datasets, args.docs * 4)

    import tensorflow as tf

    print(f"encoder {model_dir}")
    print(f"texts from {source}")
    print(
        "tf threads: intra_op",
        tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op",
        tf.config.threading.get_inter_op_parallelism_threads(),
        "(0 = TF default)",
    )

    rows = []
    variable_rows = []
    for xla in (False, True):
        load_seconds = time.perf_counter()
        encoder = TextEncoder.load(model_dir, max_length=128, jit_compile=xla)
        load_seconds = time.perf_counter() - load_seconds
        long_docs = [
            t for t, ids in zip(texts, encoder.tokenize(texts), strict=True) if len(ids) == 128
        ]
        if len(long_docs) < args.docs:  # pad the sample with filler so every doc has 128 tokens
            long_docs += [f"{i} " + FILLER * 8 for i in range(args.docs - len(long_docs))]
        docs = long_docs[: args.docs]
        for batch_size in args.batch_sizes:
            # The first call traces (and with XLA compiles) each shape; time it separately.
            warm = timed(encoder, docs[: batch_size * 2], batch_size)
            runs = [timed(encoder, docs, batch_size) for _ in range(args.repeats)]
            rates = [len(docs) / r for r in runs]
            rows.append((xla, batch_size, warm, statistics.median(rates), min(rates), max(rates)))
            print(
                f"  xla={xla} batch={batch_size}: {statistics.median(rates):.1f} docs/s", flush=True
            )

        # Natural lengths at max_length 256: many distinct padded widths in one pass.
        encoder = TextEncoder.load(model_dir, max_length=256, jit_compile=xla)
        sample = texts[: args.docs]
        first = timed(encoder, sample, 64)
        second = timed(encoder, sample, 64)
        lengths = [len(ids) for ids in encoder.tokenize(sample)]
        variable_rows.append((xla, first, second, statistics.mean(lengths), load_seconds))

    print(f"\nthroughput at exactly 128 tokens, {args.docs} docs, median of {args.repeats} runs")
    print(f"{'runtime':<22}{'batch':>6}{'first call s':>14}{'docs/s':>9}{'min':>8}{'max':>8}")
    for xla, batch_size, warm, median, low, high in rows:
        name = "tf.function + XLA" if xla else "tf.function"
        print(f"{name:<22}{batch_size:>6}{warm:>14.2f}{median:>9.1f}{low:>8.1f}{high:>8.1f}")

    print(f"\nnatural lengths (max 256), {args.docs} docs, batch 64, length-bucketed")
    print(f"{'runtime':<22}{'mean tok':>9}{'1st pass s':>12}{'2nd pass s':>12}{'docs/s 2nd':>12}")
    for xla, first, second, mean_len, _ in variable_rows:
        name = "tf.function + XLA" if xla else "tf.function"
        rate = args.docs / second
        print(f"{name:<22}{mean_len:>9.0f}{first:>12.2f}{second:>12.2f}{rate:>12.1f}")
    print(f"\nload time (build + weights + hash): {variable_rows[0][4]:.2f} s")


if __name__ == "__main__":
    main()
