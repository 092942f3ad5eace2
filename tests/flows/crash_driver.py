"""Run ``refranges run`` and kill the process with SIGKILL at a named point (tests/flows/test_crashes.py).

Usage: ``python tests/flows/crash_driver.py POINT --config FILE`` (POINT ``none`` runs without a kill). Each
point wraps one function the run really calls; the wrapper sends SIGKILL to its own process on the n-th call,
before or after calling the original, so the kill lands at the same place on every machine.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

# point -> (module, attribute, n-th call, "before" | "after")
POINTS: dict[str, tuple[str, str, int, str]] = {
    "ingest: one file loaded, the next not yet": ("warehouse.loads", "load_file", 2, "before"),
    "between ingest and normalise": ("flows.pipeline", "normalise_all", 1, "before"),
    "normalise: inside a part": ("flows.pipeline", "finish_measurements", 1, "before"),
    "normalise: parts done, rows not yet stored": ("warehouse.loads", "replace_derived", 1, "before"),
    "between normalise and reference": ("flows.pipeline", "build_partitioned", 1, "before"),
    "reference: inside a part": ("flows.pipeline", "_reference_of", 1, "before"),
    "between reference and publish": ("flows.pipeline", "publish_release", 1, "before"),
    "publish: release files staged and verified": ("warehouse.releases", "verify_folder", 1, "after"),
    "publish: folder in place, index not yet written": ("warehouse.releases", "_write_json_atomic", 2, "before"),
    "publish: listed, not yet recorded in the warehouse": ("warehouse.loads", "record_release", 1, "before"),
    "finish: report written, run not yet recorded": ("warehouse.loads", "finish_run", 1, "before"),
    "swap: copy checkpointed, not yet swapped": ("warehouse.db", "os.replace", 1, "before"),
    "swap: swapped, lock still held": ("warehouse.db", "publish_work_copy", 1, "after"),
}


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _wrap(original: Callable[..., Any], nth: int, when: str) -> Callable[..., Any]:
    calls = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == nth and when == "before":
            _die()
        result = original(*args, **kwargs)
        if calls == nth:
            _die()
        return result

    return wrapper


def install(point: str) -> None:
    module_name, attribute, nth, when = POINTS[point]
    if attribute == "os.replace":  # only the replace that swaps the work copy into place
        original = os.replace

        def swap(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
            if str(src).endswith(".work") and str(dst).endswith(".duckdb"):
                _die()
            return original(src, dst, *args, **kwargs)

        os.replace = swap  # type: ignore[assignment]
        return
    module = importlib.import_module(module_name)
    setattr(module, attribute, _wrap(getattr(module, attribute), nth, when))


if __name__ == "__main__":
    point, args = sys.argv[1], sys.argv[2:]
    if point != "none":
        install(point)
    from flows.cli import app

    app(["run", *args])
