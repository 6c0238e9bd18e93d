"""The debugger's command line, shared by ``brainrank ui`` and ``streamlit run app.py -- ARGS``.

The workspace and config fall back to ``BRAINRANK_WORKSPACE`` / ``BRAINRANK_CONFIG`` and the
workspace's ``brainrank.toml`` through :func:`ranker.config.load_config`, as in the CLI.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

_PATHS = ("workspace", "config", "queries", "qrels")


@dataclass(frozen=True)
class Settings:
    workspace: Path | None = None
    config: Path | None = None
    queries: Path | None = None  # judged queries (JSONL or TSV), for nDCG and Compare
    qrels: Path | None = None  # their judgments (TREC qrels or BEIR TSV)
    # Promote, roll back and log searches; off unless asked for (`brainrank ui --writable`).
    writable: bool = False
    # Host names served besides the bound address (and loopback when bound there).
    allow_hosts: tuple[str, ...] = ()

    def to_args(self) -> list[str]:
        """The command-line form, for ``streamlit run app.py -- ARGS``."""
        args: list[str] = []
        for name in _PATHS:
            value = getattr(self, name)
            if value is not None:
                args += [f"--{name}", str(value)]
        if self.writable:
            args.append("--writable")
        for host in self.allow_hosts:
            args += ["--allow-host", host]
        return args


def parse_args(argv: list[str]) -> Settings:
    """Settings from ``argv``; arguments it does not know are ignored (Streamlit's, pytest's)."""
    parser = argparse.ArgumentParser(prog="debugger_ui", add_help=False, allow_abbrev=False)
    for name in _PATHS:
        parser.add_argument(f"--{name}", type=Path, default=None)
    parser.add_argument("--writable", action="store_true")
    parser.add_argument("--allow-host", action="append", default=[])
    known, _ = parser.parse_known_args(argv)
    return Settings(
        known.workspace,
        known.config,
        known.queries,
        known.qrels,
        writable=known.writable,
        allow_hosts=tuple(known.allow_host),
    )
