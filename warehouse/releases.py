"""The release store: immutable, versioned folders of Parquet files with a checksummed manifest.

Layout (docs/release-format.md)::

    releases/
      index.json                      # all versions, newest last
      <version>/
        reference_intervals.parquet
        reference_quantiles.parquet
        manifest.json

Publishing writes into ``releases/.staging-<version>/``, verifies every file against the manifest, then
renames the folder into place (atomic on one file system) and replaces index.json atomically. A version
that exists is never overwritten.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from warehouse.client import sha256_file

INDEX = "index.json"
MANIFEST = "manifest.json"
TABLES = ("reference_intervals", "reference_quantiles")
FORMAT_VERSION = 1


class ReleaseError(RuntimeError):
    """A release cannot be published or does not verify."""


def read_index(root: Path) -> list[dict[str, Any]]:
    path = root / INDEX
    if not path.exists():
        return []
    return list(json.loads(path.read_text(encoding="utf-8"))["releases"])


def latest(root: Path) -> dict[str, Any] | None:
    items = read_index(root)
    return items[-1] if items else None


def read_manifest(root: Path, version: str) -> dict[str, Any]:
    path = root / version / MANIFEST
    if not path.exists():
        msg = f"release {version} not found under {root} (run `refranges releases list`)"
        raise ReleaseError(msg)
    return dict(json.loads(path.read_text(encoding="utf-8")))


def next_version(root: Path, created_at: datetime) -> str:
    """``YYYY.MM.DD-N``: the N-th release of that day."""
    day = created_at.strftime("%Y.%m.%d")
    taken = {p.name for p in root.iterdir()} if root.exists() else set()
    n = 1
    while f"{day}-{n}" in taken:
        n += 1
    return f"{day}-{n}"


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _schema_of(path: Path) -> list[dict[str, str]]:
    arrow = pq.read_schema(path)
    return [{"name": f.name, "type": str(f.type)} for f in arrow]


@dataclass(frozen=True)
class Published:
    version: str
    path: Path
    manifest: dict[str, Any]


def publish(
    root: Path,
    *,
    tables: dict[str, pl.DataFrame],
    created_at: datetime,
    parameters: dict[str, Any],
    inputs: list[dict[str, str]],
    input_fingerprint: str,
    code_version: str,
    report_max_plots: int | None = None,
) -> Published:
    """Write a new immutable release; returns its version and manifest. The report draws at most
    ``report_max_plots`` plots (default: warehouse.report.MAX_PLOTS)."""
    root.mkdir(parents=True, exist_ok=True)
    previous = latest(root)
    changes = None
    if previous is not None and "reference_intervals" in tables:
        from transforms.diff import diff_intervals

        old = pl.read_parquet(root / previous["version"] / "reference_intervals.parquet")
        changes = diff_intervals(old, tables["reference_intervals"])
    version = next_version(root, created_at)
    final = root / version
    staging = root / f".staging-{version}"
    if final.exists():
        msg = f"release {version} already exists; releases are never overwritten"
        raise ReleaseError(msg)
    if staging.exists():
        shutil.rmtree(staging)  # left by a crashed publish: never visible, safe to discard
    staging.mkdir()
    files: dict[str, Any] = {}
    for name, frame in tables.items():
        path = staging / f"{name}.parquet"
        frame.write_parquet(path, compression="zstd", statistics=True)
        files[path.name] = {"sha256": sha256_file(path), "rows": frame.height, "schema": _schema_of(path)}
    if "reference_intervals" in tables and "reference_quantiles" in tables:
        from warehouse.report import MAX_PLOTS, render_release_report

        page = render_release_report(
            version,
            tables["reference_intervals"],
            tables["reference_quantiles"],
            tables.get("cohort_comparison"),
            max_plots=MAX_PLOTS if report_max_plots is None else report_max_plots,
        )
        report = staging / "report.html"
        report.write_text(page, encoding="utf-8")
        files[report.name] = {"sha256": sha256_file(report), "rows": None, "schema": None}
    manifest = {
        "format_version": FORMAT_VERSION,
        "version": version,
        "created_at": created_at.isoformat(timespec="seconds") + "Z",
        "previous_version": previous["version"] if previous else None,
        "changes_since_previous": changes,
        "code_version": code_version,
        "input_fingerprint": input_fingerprint,
        "parameters": parameters,
        "files": files,
        "inputs": inputs,
        "disclaimer": (
            "Healthy reference distributions for research and for discussion with a clinician. "
            "A value outside a reference interval is not a diagnosis."
        ),
    }
    _write_json_atomic(staging / MANIFEST, manifest)
    problems = verify_folder(staging, manifest)
    if problems:
        msg = f"staged release {version} does not match its manifest: {problems}"
        raise ReleaseError(msg)
    os.rename(staging, final)  # atomic: the version appears complete or not at all
    index = read_index(root)
    index.append(
        {
            "version": version,
            "created_at": manifest["created_at"],
            "path": version,
            "input_fingerprint": input_fingerprint,
            "groups": files["reference_intervals.parquet"]["rows"] if "reference_intervals.parquet" in files else 0,
        }
    )
    _write_json_atomic(root / INDEX, {"format_version": FORMAT_VERSION, "releases": index})
    for p in final.iterdir():
        p.chmod(0o444)
    return Published(version, final, manifest)


def verify_folder(folder: Path, manifest: dict[str, Any]) -> list[str]:
    """Mismatches between the files in ``folder`` and ``manifest`` (empty when all match)."""
    problems = []
    for name, meta in manifest["files"].items():
        path = folder / name
        if not path.exists():
            problems.append(f"{name}: missing")
        elif sha256_file(path) != meta["sha256"]:
            problems.append(f"{name}: sha256 differs from the manifest")
    return problems


def verify(root: Path, version: str) -> list[str]:
    return verify_folder(root / version, read_manifest(root, version))
