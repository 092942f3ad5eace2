"""Writing files into the landing folder (no Prefect import: the CLI uses this before Prefect starts)."""

from __future__ import annotations

from warehouse import storage


def copy_demo(files: dict[str, bytes], landing: storage.Location) -> list[storage.Location]:
    """Write generated demo files into the landing area, a folder or an object-store prefix (same bytes for
    the same seed; a file already there with the same bytes is left alone)."""
    present = {storage.relative_name(p, landing): p for p in storage.list_files(landing)}
    out = []
    for name, data in files.items():
        target = storage.join(landing, name)
        if name not in present or storage.read_bytes(present[name]) != data:
            storage.write_bytes(target, data)
        out.append(target)
    return out
