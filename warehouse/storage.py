"""Storage locations: a local path, or an fsspec URL (``s3://bucket/prefix``, ``gs://…``, ``az://…``).

Used for the landing area, the archive and the release store. Object stores have no rename and no
directories: every write here is one whole object (one PUT, atomic on S3, GCS and Azure), and nothing
relies on renaming a folder. Local paths keep the local guarantees (write to a temporary name, then an
atomic rename; archived files read-only).
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any

import polars as pl
from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs

Location = str | Path  # a local path, or an fsspec URL


def is_url(location: Location) -> bool:
    return isinstance(location, str) and "://" in location


def store(root: Location) -> tuple[AbstractFileSystem, str]:
    """The file system of ``root`` and the path of ``root`` on it (no trailing slash)."""
    fs, base = url_to_fs(str(root))
    return fs, base.rstrip("/")


def name_of(location: Location) -> str:
    """The file name of a location (the last part of its path or URL)."""
    return location.name if isinstance(location, Path) else location.rstrip("/").rsplit("/", 1)[-1]


def relative_name(location: Location, root: Location) -> str | None:
    """The path of ``location`` below ``root``, its parts joined by "/" (``run1/export.csv``), or None when it
    does not lie below ``root``. Local paths are compared as written, not resolved: a link keeps its place."""
    if is_url(location) != is_url(root):
        return None
    if is_url(location):
        path, base = store(location)[1], store(root)[1]
        return path[len(base) + 1 :] if path.startswith(base + "/") else None
    try:
        return Path(location).absolute().relative_to(Path(root).absolute()).as_posix()
    except ValueError:
        return None


def join(root: Location, relative: str) -> Location:
    return f"{str(root).rstrip('/')}/{relative}" if is_url(root) else Path(root) / relative


def list_files(root: Location) -> list[Location]:
    """Every file under ``root``, recursively, sorted (URLs keep their scheme). Creates a local root."""
    if not is_url(root):
        local = Path(root)
        local.mkdir(parents=True, exist_ok=True)
        return sorted(p for p in local.rglob("*") if p.is_file())
    fs, base = store(root)
    if not fs.exists(base):
        return []
    return sorted(fs.unstrip_protocol(p) for p in fs.find(base))


def read_bytes(location: Location) -> bytes:
    if not is_url(location):
        return Path(location).read_bytes()
    fs, path = store(location)
    return bytes(fs.cat_file(path))


def remove(location: Location) -> None:
    if not is_url(location):
        Path(location).unlink()
        return
    fs, path = store(location)
    fs.rm_file(path)


def exists(location: Location) -> bool:
    if not is_url(location):
        return Path(location).exists()
    fs, path = store(location)
    return bool(fs.exists(path))


def write_once(root: Location, relative: str, data: bytes) -> Location:
    """Write ``data`` to ``<root>/<relative>`` unless it is there already (content-addressed names: the same
    bytes), as :func:`write_bytes` writes; a local file is then read-only."""
    target = join(root, relative)
    if exists(target):
        return target
    write_bytes(target, data)
    if isinstance(target, Path):
        target.chmod(0o444)
    return target


def write_bytes(location: Location, data: bytes) -> None:
    """Write a whole file (locally through a temporary name of its own, so two writers of one file at once,
    as two parse tasks of the same content can be, never share one, and an atomic rename; a failed write,
    a full disk, leaves nothing behind)."""
    if is_url(location):
        fs, path = store(location)
        fs.pipe_file(path, data)
        return
    target = Path(location)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.urandom(4).hex()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_local(path: Path, data: bytes | memoryview) -> None:
    """Write a whole local file; a failed write (a full disk) raises an OSError that names the file (Python's
    own leaves the name out when the write, not the open, fails)."""
    try:
        path.write_bytes(data)
    except OSError as exc:
        if exc.filename:
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from exc


def write_parquet(frame: pl.DataFrame, path: Path | str, *, in_memory: bool = False, **options: Any) -> None:
    """``frame.write_parquet(path, **options)``, with a failed write (a full disk) raised as the OSError it is.
    Polars reports it as a ComputeError, which retries and messages would not see as a disk problem, and
    only sometimes quotes the OS error. ``in_memory=True`` (small files: release tables) encodes the file in
    memory and writes it with :func:`write_local`, so that every failed write is an OSError naming the file;
    large files (the raw store) are streamed, and a quoted OS error is raised as that OSError."""
    if in_memory:
        buffer = io.BytesIO()
        frame.write_parquet(buffer, **options)
        write_local(Path(path), buffer.getbuffer())
        return
    try:
        frame.write_parquet(path, **options)
    except pl.exceptions.ComputeError as exc:
        found = re.search(r"\(os error (\d+)\)", str(exc))
        if found is None:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code), str(path)) from exc


def archive_name(sha: str, suffix: str) -> str:
    """The place below the archive folder of the content ``sha`` of a file whose name ends in ``suffix``.

    >>> archive_name("4b09a00d", ".csv")
    '4b/4b09a00d.csv'
    """
    return f"{sha[:2]}/{sha}{suffix}"


def archived_copy(archive: Location, sha: str, recorded: str | None) -> Location | None:
    """Where the archive keeps the content ``sha`` that the ledger recorded as archived at ``recorded``: in the
    configured ``archive`` folder under its content name first (the home, or the archive alone, may have moved
    since: the ledger keeps the path of the day), else at the recorded path; None when neither holds it
    (nothing was archived, or the archive lost it)."""
    if recorded is None:
        return None
    here = join(archive, archive_name(sha, Path(name_of(recorded)).suffix))
    for place in (here, recorded):
        if exists(place):
            return place
    return None
