"""Client for downstream apps: load a published release with checksum verification.

Needs only pyarrow (and the standard library); no Prefect, no DuckDB, no polars. A release store on an
object store is read through fsspec (``load_release("s3://bucket/releases")`` needs fsspec and s3fs).

>>> tables = load_release("data/releases")                      # doctest: +SKIP
>>> tables["reference_intervals"].num_rows                        # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
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
    read = _reader(root)
    if version == "latest":
        index = json.loads(read("index.json"))["releases"]
        if not index:
            msg = f"{root}: no release published yet"
            raise ReleaseIntegrityError(msg)
        version = index[-1]["version"]
    manifest = json.loads(read(f"{version}/manifest.json"))
    out: dict[str, Any] = {"manifest": manifest}
    for name, meta in manifest["files"].items():
        where = f"{root}/{version}/{name}"
        try:
            data = read(f"{version}/{name}")
        except FileNotFoundError:
            msg = f"{where}: listed in the manifest but missing"
            raise ReleaseIntegrityError(msg) from None
        if hashlib.sha256(data).hexdigest() != meta["sha256"]:
            msg = f"{where}: sha256 differs from the manifest; the release is damaged or was changed"
            raise ReleaseIntegrityError(msg)
        if name.endswith(".parquet"):
            table: pa.Table = pq.read_table(pa.BufferReader(data))
            out[name.removesuffix(".parquet")] = table
    return out


def _reader(root: str | Path) -> Callable[[str], bytes]:
    """A function reading ``<root>/<relative path>`` as bytes: local files, or fsspec for URLs."""
    if isinstance(root, str) and "://" in root:
        from fsspec.core import url_to_fs

        fs, base = url_to_fs(root)
        return lambda rel: bytes(fs.cat_file(f"{base.rstrip('/')}/{rel}"))
    base_path = Path(root)
    return lambda rel: (base_path / rel).read_bytes()
