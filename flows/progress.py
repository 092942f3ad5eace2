"""Progress of long steps as log records of the logger ``refranges.progress``.

The flow only logs; whoever watches decides how to show it: the CLI turns the records into rich progress
bars (:func:`progress_bars`), and in a served run they are lines of the Prefect run log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

logger = logging.getLogger("refranges.progress")


def report(stage: str, done: int, total: int) -> None:
    """``done`` of ``total`` units of ``stage`` are finished."""
    logger.info("%s: %d of %d", stage, done, total, extra={"refranges_progress": (stage, done, total)})


class _Bars(logging.Handler):
    def __init__(self, progress: Progress) -> None:
        super().__init__(logging.INFO)
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def emit(self, record: logging.LogRecord) -> None:
        stage, done, total = getattr(record, "refranges_progress", (None, 0, 0))
        if stage is None:
            return
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=total)
        self.progress.update(self.tasks[stage], completed=done, total=total)


@contextmanager
def progress_bars(console: Console) -> Iterator[None]:
    """Show the progress records of the block as rich progress bars on ``console`` (stderr is best)."""
    progress = Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    handler = _Bars(progress)
    previous = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the bars replace the log lines on this console
    logger.addHandler(handler)
    try:
        with progress:
            yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous[0])
        logger.propagate = previous[1]
