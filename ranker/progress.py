"""Progress reporting for long work: bars on stderr for people, silence for tests and scripts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

Advance = Callable[[int], None]


class Progress:
    """Silent progress; subclasses draw bars. ``task`` yields a function advancing the bar."""

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Advance]:
        yield lambda n: None

    def note(self, message: str) -> None:
        """A one-line status message (stderr in the CLI)."""


class RichProgress(Progress):
    def __init__(self, console):
        self.console = console

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Advance]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as Bars

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Bars(*columns, console=self.console, transient=False) as bars:
            tid = bars.add_task(description, total=total)
            yield lambda n: bars.advance(tid, n)

    def note(self, message: str) -> None:
        self.console.print(message)
