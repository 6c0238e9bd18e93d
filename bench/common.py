"""Shared helpers for benchmark scripts: dataset paths, machine description, tables."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def dataset_dir(datasets: Path | None, name: str) -> Path:
    """The named collection under the datasets setting; exits with a clear reason if absent."""
    from brainrank.ranker.config import load_config

    root = datasets or load_config().datasets
    path = Path(root) / name
    if not (path / "corpus.jsonl").exists():
        sys.exit(f"skipped: {path}/corpus.jsonl not found (set --datasets or BRAINRANK_DATASETS)")
    return path


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:  # the vector units timings depend on; the model name alone is often generic
        text = Path("/proc/cpuinfo").read_text()
        fields = dict(
            (k.strip(), v.strip())
            for k, v in (line.split(":", 1) for line in text.splitlines() if ":" in line)
        )
        flags = set(fields.get("flags", "").split())
        units = [u for u in ("amx_bf16", "avx512_bf16", "avx512f", "avx2") if u in flags][:2]
        cpu += f" (family {fields.get('cpu family', '?')} model {fields.get('model', '?')}"
        cpu += f", {' '.join(units) or 'no AVX2'})"
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GB RAM"
    except (OSError, ValueError, IndexError):
        pass
    total = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else total
    cores = f"{usable} cores" if usable == total else f"{usable} of {total} cores (taskset)"
    return f"{cores} {cpu}{mem}, Python {platform.python_version()}"


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    """A plain Markdown table, so output can be pasted into RESULTS.md as it is."""
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(_fmt(v) for v in row) + " |")


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)
