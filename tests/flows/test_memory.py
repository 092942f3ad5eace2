from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Fill the C heap with 1 kB blocks (above pymalloc's 512 B, below glibc's mmap threshold), free all but one
# block in fifty: the freed pages lie between live blocks, so the process keeps them until they are trimmed.
SCRIPT = """
import sys
from flows.memory import give_back_memory

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

blocks = [bytearray(1024) for _ in range(400_000)]
kept = blocks[::50]
del blocks
before = rss_mb()
ran = give_back_memory()
print(before, rss_mb(), ran, len(kept))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's")
def test_freed_heap_pages_go_back_to_the_system_after_a_task() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.split()
    before, after, ran = float(out[0]), float(out[1]), out[2] == "True"
    assert ran
    assert before - after > 200  # about 390 MB of the 400 MB freed come back


def test_a_decorated_task_body_keeps_its_name_signature_and_result() -> None:
    import inspect

    from flows.memory import gives_back_memory

    def part(rows: int, *, out: str = "x") -> dict[str, str]:
        """Doc."""
        return {"out": out * rows}

    wrapped = gives_back_memory(part)
    assert wrapped(2, out="ab") == {"out": "abab"}
    assert wrapped.__name__ == "part" and wrapped.__doc__ == "Doc."
    assert inspect.signature(wrapped) == inspect.signature(part)  # what Prefect reads for parameters


FREEZE_SCRIPT = """
import gc, sys, threading
from flows.memory import freeze_modules, gives_back_memory

started, release = threading.Event(), threading.Event()

@gives_back_memory
def task(hold=False):
    if hold:
        started.set()
        release.wait()
    return 1

other = threading.Thread(target=task, kwargs={"hold": True})
other.start()
started.wait()
task()  # ends while the other task still runs: its data must not be frozen
while_running = gc.get_freeze_count()
release.set()
other.join()  # the last task to end in a process that froze nothing yet freezes the modules
after_both = gc.get_freeze_count()
task()
print(while_running, after_both, gc.get_freeze_count())
"""

RUN_PROCESS_SCRIPT = """
import gc
from flows.memory import freeze_modules, gives_back_memory
freeze_modules()  # a run process: frozen when the run starts
frozen = gc.get_freeze_count()
junk = [[i] for i in range(10_000)]  # objects made after the freeze stay collectable
gives_back_memory(lambda: 1)()
print(frozen, gc.get_freeze_count())
"""


def test_a_worker_process_freezes_its_modules_when_no_task_is_running() -> None:
    out = subprocess.run([sys.executable, "-c", FREEZE_SCRIPT], capture_output=True, text=True, check=True, cwd=ROOT)
    while_running, after_both, later = (int(v) for v in out.stdout.split())
    assert while_running == 0  # never while another task's frames are alive
    assert after_both > 10_000  # the modules (polars, flows) are frozen once both tasks ended
    assert later == after_both  # once per process


def test_a_run_process_frozen_at_its_start_is_not_frozen_again_by_its_tasks() -> None:
    out = subprocess.run(
        [sys.executable, "-c", RUN_PROCESS_SCRIPT], capture_output=True, text=True, check=True, cwd=ROOT
    )
    frozen, after = (int(v) for v in out.stdout.split())
    assert after == frozen


def test_only_a_task_that_ran_a_while_collects_and_trims(monkeypatch) -> None:
    """A landing file found unchanged takes about 1 ms; the collection after it took far longer."""
    import time

    import flows.memory as memory

    calls: list[str] = []
    monkeypatch.setattr(memory, "give_back_memory", lambda *, trim: calls.append(f"gave, trim={trim}") or True)
    monkeypatch.setattr(memory, "BRIEF_SECONDS", 0.05)
    memory.gives_back_memory(lambda: 1)()
    memory.collects_garbage(lambda: 1)()
    assert calls == []
    memory.gives_back_memory(lambda: time.sleep(0.06))()
    memory.collects_garbage(lambda: time.sleep(0.06))()  # a file's task: its heap is reused by the next file
    assert calls == ["gave, trim=True", "gave, trim=False"]


def test_the_parse_task_collects_garbage_and_the_part_tasks_also_trim() -> None:
    import inspect

    from flows import pipeline

    def trims(task) -> bool:
        closure = inspect.getclosurevars(task.fn)
        return closure.nonlocals["trim"]

    assert not trims(pipeline.parse_files)
    assert trims(pipeline.normalise_part) and trims(pipeline.reference_part)


# Make and free two 400 MB polars columns twice; count the pages the kernel had to hand the process each time.
REUSE = """
import resource, sys, time
{first}
import polars as pl

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

def churn():
    before = faults()
    doubled = pl.Series("x", range(50_000_000), dtype=pl.Int64) * 2
    shifted = doubled + 1
    del doubled, shifted
    return faults() - before

first = churn()
time.sleep(0.5)
print(first, churn())
"""


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, check=False)


def _page_faults(first: str, env: dict[str, str]) -> tuple[int, int]:
    out = _python(REUSE.format(first=first), env)
    assert out.returncode == 0, out.stderr
    first_time, again = out.stdout.split()
    return int(first_time), int(again)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="polars uses jemalloc on Linux")
def test_polars_reuses_the_pages_it_freed_when_the_flows_package_loads_first() -> None:
    import os

    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    first, again = _page_faults("import flows", env)
    assert first > 100_000  # 1.6 GB of columns: the first time the pages come from the kernel
    assert again < first / 10  # then from polars' own free pages (half as many faults again without it)
    # the setting is jemalloc's own spelling: a wrong option would print an error (or abort) in every run
    out = _python("import flows, polars as pl; pl.Series([1]) * 2", env)
    assert out.returncode == 0 and "jemalloc" not in out.stderr


def test_an_allocator_setting_of_the_users_is_kept() -> None:
    import os

    env = dict(os.environ) | {"_RJEM_MALLOC_CONF": "background_thread:true"}
    out = _python("import os, flows; print(os.environ['_RJEM_MALLOC_CONF'])", env)
    assert out.stdout.strip() == "background_thread:true"
