"""Benchmark the Keras MiniLM encoder: documents/s at exactly 128 tokens, with and without XLA.

Usage: python bench/bench_encoder.py [--encoder PATH] [--datasets DIR] [--docs 512] [--repeats 3]

Documents come from SciFact's corpus (read in place) when present, otherwise from a repeated
paragraph; either way every one is truncated to exactly 128 tokens. A second table shows the
first-pass cost of documents with natural lengths (many padded shapes), where XLA compiles once
per distinct shape. A third table compares bulk precisions (``[encoder] bulk_precision``):
float32 against bfloat16 matrix products at natural lengths, with the smallest cosine between
the two vectors of a document (``--precision-only`` prints just that table).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from brainrank.ranker.encoding.encoder import TextEncoder  # noqa: E402
from brainrank.ranker.encoding.fetch import fetch_encoder  # noqa: E402

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
            if len(texts) == limit:
                break
    return texts, str(corpus)


def timed(encoder: TextEncoder, texts: list[str], batch_size: int) -> tuple[float, float]:
    """Wall and process-CPU seconds for one encode() call, tokenisation included.

    CPU seconds barely move when other processes share the machine, wall seconds do; on an idle
    machine wall docs/s approaches CPU docs/s times the number of cores actually used.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    encoder.encode(texts, batch_size=batch_size)
    return time.perf_counter() - wall, time.process_time() - cpu


def precision_table(model_dir: Path, sample: list[str], repeats: int) -> None:
    """docs/s at natural lengths (max 256) in float32 and bfloat16, and their agreement."""
    import numpy as np

    from brainrank.ranker.encoding.precision import bulk_precision

    encoder = TextEncoder.load(model_dir, max_length=256)
    vectors, rates = {}, {}
    for precision in ("float32", "bfloat16"):
        with bulk_precision(precision):
            timed(encoder, sample[:64], 64)  # trace
            walls = [timed(encoder, sample, 64)[0] for _ in range(repeats)]
            vectors[precision] = encoder.encode(sample, batch_size=64)
        rates[precision] = len(sample) / statistics.median(walls)
    cosine = np.sum(vectors["float32"] * vectors["bfloat16"], axis=1)
    print(f"\nbulk precision, natural lengths (max 256), {len(sample)} docs, batch 64")
    print(f"{'precision':<12}{'docs/s':>8}{'speed-up':>10}{'min cosine to float32':>24}")
    for precision, rate in rates.items():
        print(
            f"{precision:<12}{rate:>8.1f}{rate / rates['float32']:>10.2f}"
            f"{float(cosine.min()) if precision == 'bfloat16' else 1.0:>24.6f}"
        )


def main() -> None:
    """Run the benchmark and print tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", type=Path, default=None, help="model folder (default: fetch)")
    parser.add_argument("--datasets", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--docs", type=int, default=512, help="documents per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument(
        "--threads",
        default="encoder",
        help="'encoder' (configure_tf_threads defaults), 'tf' (TF defaults) or INTRA,INTER",
    )
    parser.add_argument("--precision-only", action="store_true", help="only the precision table")
    args = parser.parse_args()

    import tensorflow as tf

    from brainrank.ranker.encoding.precision import configure_tf_threads

    if args.threads == "encoder":
        configure_tf_threads()
    elif args.threads != "tf":
        intra, inter = (int(n) for n in args.threads.split(","))
        configure_tf_threads(intra, inter)

    model_dir = args.encoder or fetch_encoder(Path.home() / ".cache" / "brainrank" / "encoders")
    texts, source = load_texts(args.datasets, args.docs * 4)
    threading = tf.config.threading
    print(f"encoder {model_dir}\ntexts from {source}")
    print(
        f"tf threads: intra_op {threading.get_intra_op_parallelism_threads()}, inter_op "
        f"{threading.get_inter_op_parallelism_threads()} (0 = TF default), cpus {os.cpu_count()}"
    )

    if args.precision_only:
        precision_table(model_dir, texts[: args.docs], args.repeats)
        return
    start = time.perf_counter()
    encoders = {
        xla: TextEncoder.load(model_dir, max_length=128, jit_compile=bool(xla)) for xla in (0, 1)
    }
    load_seconds = (time.perf_counter() - start) / 2
    lengths = encoders[0].tokenize(texts)
    docs = [t for t, ids in zip(texts, lengths, strict=True) if len(ids) == 128]
    if len(docs) < args.docs:  # top up with filler so every document has 128 tokens
        docs += [f"{i} " + FILLER * 8 for i in range(args.docs - len(docs))]
    docs = docs[: args.docs]

    warm = {}
    for xla, batch_size in itertools.product(encoders, args.batch_sizes):
        # The first call traces (and with XLA compiles) each shape; time it on its own.
        warm[xla, batch_size] = timed(encoders[xla], docs[: batch_size * 2], batch_size)[0]
    rates: dict[tuple[int, int], list[float]] = {key: [] for key in warm}
    cpu_rates: dict[tuple[int, int], list[float]] = {key: [] for key in warm}
    # Rounds interleave the configurations so load from other processes hits all of them alike.
    for _ in range(args.repeats):
        for xla, batch_size in rates:
            wall, cpu = timed(encoders[xla], docs, batch_size)
            rates[xla, batch_size].append(len(docs) / wall)
            cpu_rates[xla, batch_size].append(len(docs) / cpu)
            print(f"  xla={xla} batch={batch_size}: {len(docs) / wall:.1f} docs/s", flush=True)

    # Natural lengths up to 256 tokens: many padded widths, so XLA compiles many shapes.
    natural = []
    sample = texts[: args.docs]
    for xla in encoders:
        encoder = TextEncoder.load(model_dir, max_length=256, jit_compile=bool(xla))
        first, second = timed(encoder, sample, 64)[0], timed(encoder, sample, 64)[0]
        mean_tokens = statistics.mean(len(ids) for ids in encoder.tokenize(sample))
        natural.append((xla, mean_tokens, first, second))

    print(f"\nthroughput at exactly 128 tokens, {len(docs)} docs, {args.repeats} interleaved runs")
    print(
        f"{'runtime':<20}{'batch':>6}{'1st call s':>12}{'median/s':>10}{'best/s':>8}{'worst/s':>9}"
        f"{'per CPU-s':>11}"
    )
    for (xla, batch_size), values in rates.items():
        name = "tf.function + XLA" if xla else "tf.function"
        print(
            f"{name:<20}{batch_size:>6}{warm[xla, batch_size]:>12.2f}"
            f"{statistics.median(values):>10.1f}{max(values):>8.1f}{min(values):>9.1f}"
            f"{statistics.median(cpu_rates[xla, batch_size]):>11.1f}"
        )
    print(f"\nnatural lengths (max 256), {len(sample)} docs, batch 64, length-bucketed")
    print(
        f"{'runtime':<20}{'mean tokens':>12}{'1st pass s':>12}{'2nd pass s':>12}{'2nd docs/s':>12}"
    )
    for xla, mean_tokens, first, second in natural:
        name = "tf.function + XLA" if xla else "tf.function"
        rate = len(sample) / second
        print(f"{name:<20}{mean_tokens:>12.0f}{first:>12.2f}{second:>12.2f}{rate:>12.1f}")
    precision_table(model_dir, sample, args.repeats)
    print(f"\nload time per encoder (build + weights + sha256): {load_seconds:.2f} s")
    print("load average after the run: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print("docs/s is wall-clock throughput; per CPU-s counts documents per second of CPU time")


if __name__ == "__main__":
    main()
