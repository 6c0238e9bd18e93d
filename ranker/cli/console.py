"""Where the CLI writes: results to stdout, messages and progress bars to stderr."""

from __future__ import annotations

from rich.console import Console

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def progress():
    """A progress reporter drawing Rich bars on stderr."""
    from brainrank.ranker.progress import RichProgress

    return RichProgress(err)
