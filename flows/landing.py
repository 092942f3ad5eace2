"""Writing files into the landing folder (no Prefect import: the CLI uses this before Prefect starts)."""

from __future__ import annotations

import os
from pathlib import Path


def copy_demo(files: dict[str, bytes], landing: Path) -> list[Path]:
    """Write generated demo files into the landing folder (same bytes for the same seed)."""
    landing.mkdir(parents=True, exist_ok=True)
    out = []
    for name, data in files.items():
        target = landing / name
        if not target.exists() or target.read_bytes() != data:
            tmp = landing / f".{name}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, target)
        out.append(target)
    return out
