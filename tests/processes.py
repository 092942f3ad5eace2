"""Test helper: find the processes a test started, by an entry of their environment."""

from __future__ import annotations

from pathlib import Path


def processes_with_env(entry: str) -> list[int]:
    """Process ids whose environment holds ``entry`` (Linux /proc; others are skipped)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if entry.encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found
