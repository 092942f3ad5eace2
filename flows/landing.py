"""Writing files into the landing folder (no Prefect import: the CLI uses this before Prefect starts)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from warehouse import storage

if TYPE_CHECKING:
    from flows.config import Settings

IGNORED_NAMES = {".DS_Store", "Thumbs.db"}
#: Endings of files that a download or a copy is still writing (browsers, WinSCP, curl and many sync tools
#: write under such a name and rename the file once it is complete): never an export yet.
IN_PROGRESS_SUFFIXES = (".part", ".partial", ".crdownload", ".filepart", ".download", ".tmp")


def ignored(relative: str) -> bool:
    """System and editor files, files still being downloaded or copied (IN_PROGRESS_SUFFIXES), and anything in
    a hidden folder (``.git/``, ``.Trash-1000/``, rsync's temporary copies) are not exports."""
    parts = relative.split("/")
    name = parts[-1]
    return (
        name in IGNORED_NAMES
        or name.startswith("~$")
        or name.lower().endswith(IN_PROGRESS_SUFFIXES)
        or any(p.startswith(".") for p in parts)
    )


def landing_name(path: storage.Location, settings: Settings) -> str:
    """The name a file goes by in the ledger, in its rows' ``source_file`` and in the quarantine folder: its
    path below the landing folder (``run1/export.csv`` and ``run2/export.csv`` are two files, and only a new
    version at the same place replaces one), or its file name when it lies elsewhere (named on the command
    line). A file at the top of the landing folder keeps its plain name."""
    below = storage.relative_name(path, settings.landing) if settings.landing is not None else None
    return below or storage.name_of(path)


def not_a_file(path: storage.Location) -> str | None:
    """What a local landing entry that holds no file to read is, with what to do, or None: a symbolic link
    whose target does not exist (on a share that is not mounted, moved or deleted) or a named pipe, socket or
    device. Such an entry was passed over without a word, so an unmounted share's exports were never missed;
    it is now quarantined by name, never read (a named pipe would keep the run waiting for a writer)."""
    if storage.is_url(path):
        return None
    entry = Path(path)
    if entry.is_symlink() and not entry.exists():
        return (
            f"a symbolic link to {os.readlink(entry)}, which does not exist (a share that is not mounted, an export "
            "moved or deleted); mount the share, or copy the export itself into the landing folder"
        )
    if not entry.exists() or entry.is_file() or entry.is_dir():
        return None
    kind = "a named pipe" if entry.is_fifo() else "a socket" if entry.is_socket() else "a device"
    return f"{kind}, not a file; drop exports as files"


def files_named(paths: list[Path]) -> list[Path]:
    """The files command-line arguments name: a file as it is, a folder as the files below it, read as the
    landing folder is (sorted; no hidden folders or system files), each file once however often it is named.
    FileNotFoundError names an argument that is neither, or a folder without a file."""
    out: dict[Path, Path] = {}
    for path in paths:
        if path.is_file():
            found = [path]
        elif path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if (p.is_file() or not_a_file(p) is not None) and not ignored(p.relative_to(path).as_posix())
            )  # a dangling link or a pipe too: the run names it as not read, never passes it over
            if not found:
                raise FileNotFoundError(f"no file in the folder {path}")
        else:
            raise FileNotFoundError(f"not a file or folder: {path}")
        for file in found:
            out.setdefault(file.resolve(), file)
    return list(out.values())


def shared_names(named: dict[Path, str]) -> dict[str, list[Path]]:
    """The names (path -> name) that more than one file would go by, with those files."""
    by_name: dict[str, list[Path]] = {}
    for path, name in named.items():
        by_name.setdefault(name, []).append(path)
    return {name: paths for name, paths in by_name.items() if len(paths) > 1}


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
