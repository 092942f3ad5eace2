"""Client for downstream apps: load a published release with checksum verification.

Needs only pyarrow (and the standard library); no Prefect, no DuckDB, no polars.

>>> tables = load_release("data/releases")                      # doctest: +SKIP
>>> tables["reference_intervals"].num_rows                        # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


class ReleaseIntegrityError(RuntimeError):
    """A release file is missing or differs from its manifest: do not use the release."""


def sha256_file(path: Path) -> str:
    """sha256 of a file, read in 1 MB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_release(root: str | Path, version: str = "latest") -> dict[str, Any]:
    """The tables of a release as pyarrow Tables, plus its ``manifest``, after verifying every checksum.

    ``version="latest"`` takes the newest entry of ``index.json``. Raises ReleaseIntegrityError when a file
    is missing or its sha256 differs from the manifest.
    """
    base = Path(root)
    if version == "latest":
        index = json.loads((base / "index.json").read_text(encoding="utf-8"))["releases"]
        if not index:
            msg = f"{base}: no release published yet"
            raise ReleaseIntegrityError(msg)
        version = index[-1]["version"]
    folder = base / version
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    out: dict[str, Any] = {"manifest": manifest}
    for name, meta in manifest["files"].items():
        path = folder / name
        if not path.exists():
            msg = f"{path}: listed in the manifest but missing"
            raise ReleaseIntegrityError(msg)
        if sha256_file(path) != meta["sha256"]:
            msg = f"{path}: sha256 differs from the manifest; the release is damaged or was changed"
            raise ReleaseIntegrityError(msg)
        if name.endswith(".parquet"):
            table: pa.Table = pq.read_table(path)
            out[name.removesuffix(".parquet")] = table
    return out
