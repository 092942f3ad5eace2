"""Give memory that a task freed back to the operating system.

A run process normalises and builds dozens of 2-million-row parts one after another. glibc keeps the heap
pages that a part's frames and Great Expectations' pandas objects freed, scattered between live blocks, and
reuses them only in part, so the process's resident size between parts rose with every part (2.7 GB → 5.8
GB over 31 parts at 20,000 × 3,000; docs/performance.md). A garbage collection and ``malloc_trim(0)`` when
each normalisation and reference task ends return those pages (a parse task, which holds one file,
only collects: :func:`collects_garbage`), and the floor stays flat; this costs
time (about 280 s of a 1,250 s run at that size). Elsewhere (macOS, musl) the trim does nothing.

polars has an allocator of its own (jemalloc), which gives freed pages back by itself: by default within
moments, so each part faulted its pages in afresh from the kernel (about 3.4 GB, 3 s of system time a
normalisation part). :data:`POLARS_ALLOCATOR` keeps them for reuse until they have been unused for about 30 s.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


#: Options of polars' jemalloc (read from ``_RJEM_MALLOC_CONF`` when polars is loaded): freed pages are given
#: back to the system once unused for about 30 s (the decay is gradual), instead of within moments. A run
#: reuses them part after part: at 5,000 x 3,000 a normalisation part took 3.3 s instead of 5.1 s (system time
#: 0.35 s instead of 3.3 s) and the run's peak rose from 4.6 to 5.6 GB (docs/performance.md).
POLARS_ALLOCATOR = "dirty_decay_ms:30000,muzzy_decay_ms:30000"


def configure_polars_allocator() -> bool:
    """Set POLARS_ALLOCATOR for polars, unless the environment already says what it wants (a
    ``_RJEM_MALLOC_CONF`` of the user's is kept as it is). The flows package calls it on import. True when it
    takes effect in this process: polars reads it once, when it is loaded; worker processes started later (a
    local Dask cluster) inherit it either way. polars itself writes its own options into the environment when
    it loads (with a value found there appended, which jemalloc lets win): a process that loaded polars before
    this package passes polars' options on to the runs it starts, which then keep them as a user's. Start
    runs with the environment the launcher was started with (as benchmarks/bench_pipeline.py does)."""
    if "_RJEM_MALLOC_CONF" in os.environ:
        return False
    os.environ["_RJEM_MALLOC_CONF"] = POLARS_ALLOCATOR
    return "polars" not in sys.modules


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


def give_back_memory(*, trim: bool = True) -> bool:
    """Collect garbage, then return free heap pages to the operating system (glibc; not with ``trim=False``).
    True when the trim ran.

    Both are needed: without the collection (objects in reference cycles still hold their buffers) a
    20,000 x 3,000 run peaked at 11.7 GB, with it at 7.0 GB. A full collection walks every object the
    process holds except those :func:`freeze_modules` froze."""
    gc.collect()
    if not trim:
        return False
    libc_trim = _libc_trim()
    if libc_trim is None:
        return False
    libc_trim(0)
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
    _tasks.frozen = True


class _Tasks:
    """Decorated task bodies running in this process, and whether its modules are frozen yet."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.frozen = False


_tasks = _Tasks()


def _task_begins() -> None:
    with _tasks.lock:  # a task begins only while no freeze is under way
        _tasks.running += 1


def _task_ended() -> None:
    with _tasks.lock:
        _tasks.running -= 1
        if _tasks.running == 0 and not _tasks.frozen:
            freeze_modules()


#: A task body that returns sooner made little to give back (a landing file found unchanged: about 1 ms),
#: and the collection cost more than the task (0.5 s of a 2 s run with nothing new at 5,000 x 3,000).
BRIEF_SECONDS = 0.1


def gives_back_memory(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorate a task body: :func:`give_back_memory` once it has returned (its frames are gone by then),
    unless it was brief (BRIEF_SECONDS). For the tasks that hold a part of the data (normalisation,
    reference groups): see :func:`after_task`."""
    return after_task(fn, trim=True)


def collects_garbage(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorate a task body that holds one file (parse): as :func:`gives_back_memory`, without the trim. Its
    heap is a file's size, which glibc reuses for the next file: the run process stayed at 0.89 to 0.97 GB
    over 57 files of 26 MB without the trim (0.82 to 0.90 GB with it), and the trim made each next file fault
    its pages in again (system time 2.7 s instead of 1.3 s over those files, 7 % of their parse time)."""
    return after_task(fn, trim=False)


def after_task(fn: Callable[P, R], *, trim: bool) -> Callable[P, R]:
    """Decorate a task body: :func:`give_back_memory` (``trim``) once it has returned, unless it was brief
    (BRIEF_SECONDS).

    In a process whose modules are not frozen yet (a worker process of a Dask cluster: the run froze only its
    own), the first task to end with no other decorated task running in the process freezes them
    (:func:`freeze_modules`). By then the task has imported what tasks use (Great Expectations, pandas,
    scipy), and no task's data is alive; without it each collection walked those modules again, about 0.4 s
    a task (16 s of a Dask worker's 68 s at 5,000 x 3,000)."""

    # the wrapper names module functions only: a Dask client pickles it by value, with what it names (a lock
    # cannot be pickled; functions of an importable module are pickled by name)
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        _task_begins()
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            if time.perf_counter() - started >= BRIEF_SECONDS:
                give_back_memory(trim=trim)
            _task_ended()

    return wrapper
