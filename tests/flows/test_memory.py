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
