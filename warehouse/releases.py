"""The release store: immutable, versioned folders of Parquet files with a checksummed manifest.

Layout (docs/release-format.md)::

    releases/
      index.json                      # all versions, newest last
      <version>/
        reference_intervals.parquet
        reference_quantiles.parquet
        manifest.json

``root`` is a local folder or an fsspec URL (``s3://bucket/releases``, ``gs://…``, ``az://…``; the
matching fsspec package, e.g. s3fs, must be installed). Publishing writes every file into a staging folder
and verifies it against the manifest. On a local file system the folder is then renamed into place (atomic
on one file system). On an object store, which has no rename, the files are uploaded under
``<root>/<version>/`` with the manifest last and checked again after the upload. In both cases index.json
is replaced last, in one write, so a reader that goes through the index (``refranges releases``,
``warehouse.client.load_release``) never sees a half-written release. A version that exists is never
overwritten; an upload that failed half-way leaves a version folder that no index names, and its name is
never reused.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from warehouse import storage
from warehouse.client import sha256_file
from warehouse.storage import Location as Root
from warehouse.storage import store

INDEX = "index.json"
MANIFEST = "manifest.json"
TABLES = ("reference_intervals", "reference_quantiles")
FORMAT_VERSION = 1


class ReleaseError(RuntimeError):
    """A release cannot be published or does not verify."""


class ReleaseNotFound(ReleaseError):
    """The store holds no release of that version."""


def _read_json(fs: AbstractFileSystem, path: str) -> dict[str, Any]:
    """A release store's JSON file (the index, a manifest) as a dict. ReleaseError names the file when it is
    not a JSON object: a damaged or hand-edited file stopped `releases show` and `verify` with a traceback."""
    try:
        data = json.loads(fs.cat_file(path).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"{path}: not valid JSON ({exc}); the file is damaged: restore it from a backup"
        raise ReleaseError(msg) from None
    if not isinstance(data, dict):
        msg = f"{path}: not a JSON object; the file is damaged: restore it from a backup"
        raise ReleaseError(msg)
    return data


def read_index(root: Root) -> list[dict[str, Any]]:
    fs, base = store(root)
    path = f"{base}/{INDEX}"
    if not fs.exists(path):
        return []
    releases = _read_json(fs, path).get("releases")
    if not isinstance(releases, list):
        msg = f"{path}: lists no releases; the index is damaged: restore it from a backup"
        raise ReleaseError(msg)
    return releases


def latest(root: Root) -> dict[str, Any] | None:
    items = read_index(root)
    return items[-1] if items else None


def read_manifest(root: Root, version: str) -> dict[str, Any]:
    fs, base = store(root)
    path = f"{base}/{version}/{MANIFEST}"
    if not fs.exists(path):
        msg = f"release {version} not found under {root} (run `refranges releases list`)"
        raise ReleaseNotFound(msg)
    return _read_json(fs, path)


def read_table(root: Root, version: str, name: str) -> pl.DataFrame:
    """One Parquet table of a release (``name`` without .parquet)."""
    fs, base = store(root)
    return pl.read_parquet(io.BytesIO(fs.cat_file(f"{base}/{version}/{name}.parquet")))


def next_version(root: Root, created_at: datetime, taken: Iterable[str] = ()) -> str:
    """``YYYY.MM.DD-N``: the N-th release of that day (names of failed uploads count as taken, and so do the
    versions in ``taken``: those the warehouse registered, so that a version never names two releases)."""
    day = created_at.strftime("%Y.%m.%d")
    fs, base = store(root)
    taken = set(taken) | (
        {p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(base, detail=False)} if fs.exists(base) else set()
    )
    n = 1
    while f"{day}-{n}" in taken:
        n += 1
    return f"{day}-{n}"


def missing_registered(
    root: Root, registered: Iterable[tuple[str, str]], index: list[dict[str, Any]] | None = None
) -> list[str]:
    """The versions of ``registered`` (version, path, oldest first, as the warehouse's ``releases`` table keeps
    them) that were published into this store, at ``<root>/<version>``, and that its index (``index``: as
    read already, else read here) no longer lists, when the newest of them is among them: the store was moved,
    emptied or put back from an older backup, or it is a share that is not mounted. Older releases taken out of
    the index by hand, with the newest still listed, are no such sign: then nothing is returned."""
    listed = {r["version"] for r in (read_index(root) if index is None else index)}
    here = [v for v, path in registered if storage.relative_name(path, root) == v]
    return [v for v in here if v not in listed] if here and here[-1] not in listed else []


def lost_store(root: Root, missing: list[str]) -> str:
    """What a store that lost releases (:func:`missing_registered`) is, for messages that go on to say what
    to do."""
    shown = ", ".join(missing[-3:]) + (f" and {len(missing) - 3} earlier" if len(missing) > 3 else "")
    return (
        f"the release store {root} no longer lists {len(missing)} release(s) that the warehouse registered there "
        f"({shown}): it was moved, emptied or put back from an older backup, or it is a share that is not mounted"
    )


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves the old file, and no half-written one beside it
        raise


def _schema_of(path: Path) -> list[dict[str, str]]:
    arrow = pq.read_schema(path)
    return [{"name": f.name, "type": str(f.type)} for f in arrow]


@dataclass(frozen=True)
class Published:
    version: str
    path: Path | str  # a local folder, or the URL of the version on an object store
    manifest: dict[str, Any]


def publish(
    root: Root,
    *,
    tables: dict[str, pl.DataFrame],
    created_at: datetime,
    parameters: dict[str, Any],
    inputs: list[dict[str, str]],
    input_fingerprint: str,
    code_version: str,
    report_max_plots: int | None = None,
    taken: Iterable[str] = (),
) -> Published:
    """Write a new immutable release; returns its version and manifest. The report draws at most
    ``report_max_plots`` plots (default: warehouse.report.MAX_PLOTS); ``taken``: versions never to use (the
    warehouse's, which may include releases of another store)."""
    fs, base = store(root)
    local = isinstance(fs, LocalFileSystem)
    fs.makedirs(base, exist_ok=True)
    previous = latest(root)
    changes = None
    if previous is not None and "reference_intervals" in tables:
        from transforms.diff import diff_intervals

        old = read_table(root, previous["version"], "reference_intervals")
        changes = diff_intervals(old, tables["reference_intervals"])
    version = next_version(root, created_at, taken)
    final = f"{base}/{version}"
    if fs.exists(final):
        msg = f"release {version} already exists; releases are never overwritten"
        raise ReleaseError(msg)
    # on a local file system the staging folder sits beside the releases, so that a rename publishes it; only
    # an object store stages in a temporary folder (a local one would be left behind by a killed run)
    with contextlib.nullcontext(None) if local else tempfile.TemporaryDirectory(prefix="refranges-release-") as tmp:
        staging = Path(base) / f".staging-{version}" if tmp is None else Path(tmp) / version
        if staging.exists():
            shutil.rmtree(staging)  # left by a crashed publish: never visible, safe to discard
        staging.mkdir()
        try:
            files = _stage_files(staging, version, tables, report_max_plots)
            manifest: dict[str, Any] = {
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
            if local:
                os.rename(staging, final)  # atomic: the version appears complete or not at all
            else:
                _upload(fs, staging, final, manifest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)  # e.g. a full disk: give the space back, list nothing
            raise
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
    document = {"format_version": FORMAT_VERSION, "releases": index}
    if local:
        _write_json_atomic(Path(base) / INDEX, document)
        for p in Path(final).iterdir():
            p.chmod(0o444)
        return Published(version, Path(final), manifest)
    fs.pipe_file(f"{base}/{INDEX}", (json.dumps(document, indent=2) + "\n").encode("utf-8"))  # one PUT: atomic
    return Published(version, f"{str(root).rstrip('/')}/{version}", manifest)


def _stage_files(
    staging: Path, version: str, tables: dict[str, pl.DataFrame], report_max_plots: int | None
) -> dict[str, Any]:
    """Write a release's tables and report into ``staging``; returns the manifest's ``files`` entry."""
    files: dict[str, Any] = {}
    for name, frame in tables.items():
        path = staging / f"{name}.parquet"
        storage.write_parquet(frame, path, in_memory=True, compression="zstd", statistics=True)
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
        storage.write_local(report, page.encode("utf-8"))
        files[report.name] = {"sha256": sha256_file(report), "rows": None, "schema": None}
    return files


def _upload(fs: AbstractFileSystem, staging: Path, final: str, manifest: dict[str, Any]) -> None:
    """Copy a staged release to an object store, the manifest last, and check every uploaded checksum."""
    for name in [*sorted(manifest["files"]), MANIFEST]:
        fs.put_file(str(staging / name), f"{final}/{name}")
    problems = [
        f"{name}: sha256 differs after the upload"
        for name, meta in manifest["files"].items()
        if hashlib.sha256(fs.cat_file(f"{final}/{name}")).hexdigest() != meta["sha256"]
    ]
    if problems:
        msg = f"release upload to {final} does not match its manifest: {problems}; it is not in the index"
        raise ReleaseError(msg)


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


def verify(root: Root, version: str) -> list[str]:
    """Mismatches between a published release's files and its manifest (empty when all match)."""
    manifest = read_manifest(root, version)
    fs, base = store(root)
    if not isinstance(manifest.get("files"), dict):
        return [f"{MANIFEST}: lists no files; the manifest is damaged: restore it from a backup"]
    problems = []
    for name, meta in manifest["files"].items():
        path = f"{base}/{version}/{name}"
        if not fs.exists(path):
            problems.append(f"{name}: missing")
        elif hashlib.sha256(fs.cat_file(path)).hexdigest() != meta["sha256"]:
            problems.append(f"{name}: sha256 differs from the manifest")
    return problems
