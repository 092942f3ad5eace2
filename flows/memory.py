"""Give memory that a task freed back to the operating system.

A run process normalises and builds dozens of 2-million-row parts one after another. glibc keeps the heap
pages that a part's frames and Great Expectations' pandas objects freed, scattered between live blocks, and
reuses them only in part, so the process's resident size between parts rose with every part (2.7 GB → 5.8
GB over 31 parts at 20,000 × 3,000; docs/performance.md). A garbage collection and ``malloc_trim(0)`` when
each parse, normalisation and reference task ends return those pages, and the floor stays flat; this costs
time (about 280 s of a 1,250 s run at that size). Elsewhere (macOS, musl) the trim does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


@functools.cache
def _libc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def give_back_memory() -> bool:
    """Collect garbage, then return free heap pages to the operating system (glibc). True when it ran.

    Both are needed: without the collection (objects in reference cycles still hold their buffers) a
    20,000 x 3,000 run peaked at 11.7 GB, with it at 7.0 GB. A full collection walks every object the
    process holds except those :func:`freeze_modules` froze."""
    gc.collect()
    trim = _libc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def freeze_modules() -> None:
    """Collect garbage once, then freeze every object that survived (``gc.freeze``): later collections skip
    them. Called when a run starts, before any task: what is alive then is modules, settings and caches
    (Prefect, Great Expectations, polars: 0.25 to 0.4 s to walk per collection), never a task's data. Frozen
    objects are still freed by reference counting; only a reference cycle among them is never collected.
    Freezing at each task's end instead would also freeze the frames of a task still running in another
    thread, and their cycles would never be collected: a 5,000 x 3,000 run peaked at 10 GB instead of 7."""
    gc.collect()
    gc.freeze()


def gives_back_memory(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorate a task body: :func:`give_back_memory` once it has returned (its frames are gone by then)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        finally:
            give_back_memory()

    return wrapper
