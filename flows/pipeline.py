"""The pipeline flow: landing folder -> warehouse -> reference release. Orchestration only."""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence, Set
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
from prefect import flow, get_run_logger, task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, State

from expectations.report import render_report
from expectations.runner import SuiteOutcome, merge_results, quarantine_rows, validate_with_gx
from expectations.suites import load_suite, prepare_raw
from flows.config import Settings, check_landing, subject_key, task_runner
from flows.landing import ignored, landing_name, not_a_file
from flows.memory import collects_garbage, freeze_modules, gives_back_memory
from flows.progress import report
from transforms import schema
from transforms.compare import compare_cohorts, finish_comparison
from transforms.normalise import (
    ANCHOR_SCHEMA,
    combat_anchors,
    dictionary_lookup,
    finish_measurements,
    hold_plates,
    named_by_uniprot,
    plate_control_anchors,
    prepare_measurements,
)
from transforms.partitions import plan_normalise, plan_reference
from transforms.privacy import pseudonymise_subjects
from transforms.qc import VENDOR_QC_CHECKS, file_statistics, plate_statistics, release_checks, vendor_held
from transforms.readers import ReaderFailure, UnreadableFileError, read_or_refuse
from transforms.readers.manifest import against_loaded
from transforms.reference import GROUP_ORDER, ReferenceBuild, build_reference, combine_builds
from transforms.variation import first_visits, retest_variation
from warehouse import db, loads, releases, storage
from warehouse.lookups import read_analyte_dictionary


@dataclass
class FileOutcome:
    name: str
    sha256: str
    status: str  # loaded | skipped | quarantined
    layout: str | None = None
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    reason: str | None = None
    replaced: list[str] = field(default_factory=list)
    parsed_by: str | None = None  # host:pid of the process that parsed the file (a Dask worker, or this one)
    info: dict[str, Any] = field(default_factory=dict)  # what the file says of itself (Olink product, LOD rule)
    #: a skipped file: what its content was before, as the ledger says (loaded, quarantined, replaced,
    #: retracted), or ``this run`` when an earlier file of the same run carried it
    earlier: str | None = None

    @classmethod
    def already_ingested(cls, name: str, sha: str) -> FileOutcome:
        """A file whose content the warehouse (or this run) already holds: nothing to load. The run tells
        what became of that content (:func:`skipped_as_known`, :func:`skipped_as_twice`)."""
        return cls(name, sha, "skipped", reason="already ingested (same content)")

    @property
    def named_reason(self) -> str:
        """The reason as one line that names the file once: most reasons begin with the file's name already
        (so do the ledger's and the quarantine folder's), and a summary that prefixed it again read
        ``empty.csv: empty.csv: the file is empty``."""
        reason = self.reason or ""
        return reason if reason.startswith(f"{self.name}:") else f"{self.name}: {reason}"

    def ledger_entry(
        self, *, size_bytes: int, archive_path: str | None, run_id: str, decided_under: str | None = None
    ) -> loads.LedgerEntry:
        """The warehouse ledger row of this outcome (a quarantined file loads no row; ``decided_under``: the
        run's decision fingerprint, kept for a quarantined file)."""
        return loads.LedgerEntry(
            self.sha256,
            self.name,
            self.layout,
            size_bytes,
            self.rows_read,
            self.rows_loaded,
            self.rows_quarantined,
            self.status,
            self.reason,
            archive_path,
            run_id,
            self.info or None,
            decided_under,
        )


@dataclass
class RunSummary:
    run_id: str
    files: list[FileOutcome] = field(default_factory=list)
    held_by_check: dict[str, int] = field(default_factory=dict)
    groups_published: int = 0
    groups_skipped: list[str] = field(default_factory=list)
    release_version: str | None = None
    release_path: str | None = None
    release_message: str = ""
    release_blocked: bool = False
    release_damaged: bool = False  # the latest release's files no longer match its manifest
    report_path: str = ""
    warehouse: str = ""
    status: str = "completed"
    stage_seconds: dict[str, float] = field(default_factory=dict)  # wall time of each stage of the run
    normalised_rows: int = 0
    parts: dict[str, int] = field(default_factory=dict)  # tasks per partitioned stage (normalise, reference)
    landing_removed: list[str] = field(default_factory=list)  # move mode: landing files removed after the swap
    landing_kept: list[str] = field(default_factory=list)  # move mode: loaded files that could not be removed, why
    # landing files changed too recently to be read (landing_min_age_seconds), with their age: left for a later run
    landing_waiting: list[str] = field(default_factory=list)
    # keep mode: loaded files that left the landing folder since a run read them (their rows stay in use)
    landing_gone: list[str] = field(default_factory=list)
    # names the analyte dictionary does not know, identified by their UniProt accession (when normalisation ran)
    analytes_by_uniprot: list[str] = field(default_factory=list)

    @property
    def files_new(self) -> list[FileOutcome]:
        return [f for f in self.files if f.status != "skipped"]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def skipped_as_known(name: str, sha: str, known: loads.Known | None) -> FileOutcome:
    """A file skipped because the ledger holds its content (``known``), with what became of that content in
    words a person can act on: "already ingested" alone hid a file quarantined under the same settings (it
    never was ingested), one retracted by hand, and an older version of a file that a newer one replaced."""
    if known is None or known.status == "loaded":
        as_name = "" if known is None or known.name == name else f" as {known.name}"
        return FileOutcome(name, sha, "skipped", reason=f"already loaded{as_name} (same content)", earlier="loaded")
    if known.status == "quarantined":
        held = known.reason or "see the quarantine folder"
        reason = (
            f"quarantined before under the same settings and code (same content): {held}. A corrected export, or "
            "settings that accept it, is read again"
        )
    elif known.status == "retracted":
        retracted = known.reason or "retracted by hand"  # the ledger's reason begins "retracted by hand: "
        reason = f"{retracted} (same content); `refranges files restore {known.name}` loads it again"
    elif known.status == "replaced":
        reason = (
            f"an earlier version of {known.name}, replaced by a newer file of that name (same content): it stays "
            f"out of use. To go back to it, `refranges files retract {known.name}` the loaded version, then "
            f"`refranges files restore {known.name} --sha {sha[:12]}`"
        )
    else:
        reason = f"already in the ledger as {known.name}, {known.status} (same content)"
    return FileOutcome(name, sha, "skipped", reason=reason, earlier=known.status)


def skipped_as_twice(name: str, sha: str, first: str | None) -> FileOutcome:
    """A file skipped because an earlier file of the same run (``first``) carried its content."""
    reason = f"same content as {first}, read earlier in this run" if first else "same content as an earlier file"
    return FileOutcome(name, sha, "skipped", reason=reason, earlier="this run")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@functools.cache
def code_version() -> str:
    """``git describe`` of the checkout this process imported refranges from, or the installed version: once
    per process (it was run three times a run), and so the code that runs even when the checkout changes
    under a long-lived process such as `refranges serve`."""
    here = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import version

        return f"refranges {version('refranges')}"


#: OSErrors that waiting does not mend: a full disk, a quota, a read-only file system, a refused permission
PERMANENT_OS_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def only_io_errors(task: Any, task_run: Any, state: Any) -> bool:
    """Retry condition of I/O tasks: retry an OSError (disk, network share, object store), nothing else.
    A quality failure or a bug fails at once, and so does an OSError that waiting does not mend."""
    try:
        state.result()
    except OSError as exc:
        return exc.errno not in PERMANENT_OS_ERRORS
    except Exception:  # anything else is not retried
        return False
    return False


IO_RETRY_DELAYS = (1, 5, 20)  # seconds before each retry of an I/O step
IO_RETRIES = {
    "retries": len(IO_RETRY_DELAYS),
    "retry_delay_seconds": list(IO_RETRY_DELAYS),
    "retry_condition_fn": only_io_errors,
}


def read_input(path: storage.Location, *, delays: Sequence[float] = IO_RETRY_DELAYS) -> bytes:
    """The bytes of one landed file, read again after each of ``delays`` (1, 5 and 20 s) on an OSError that
    waiting may mend: the I/O tasks' retry policy (:func:`only_io_errors`), applied in the parse task that
    reads the file. It was a task of its own, and a task run per file cost the run and Prefect's server about
    55 ms of CPU: 6 of 45 core-seconds over 108 MSD plate files (docs/performance.md)."""
    for delay in [*delays, None]:
        try:
            return storage.read_bytes(path)
        except OSError as exc:
            if delay is None or exc.errno in PERMANENT_OS_ERRORS:
                raise
            get_run_logger().warning("reading %s failed (%s); trying again in %g s", path, exc, delay)
            time.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


@task(**IO_RETRIES, cache_policy=NO_CACHE)  # type: ignore[call-overload]
def publish_release(root: releases.Root, **kwargs: Any) -> releases.Published:
    """Write a release folder and its index entry (I/O: retried on OSError; a retry never overwrites)."""
    return releases.publish(root, **kwargs)


@task(**IO_RETRIES, cache_policy=NO_CACHE)  # type: ignore[call-overload]
def list_landing(landing: storage.Location) -> list[storage.Location]:
    """Files waiting in the landing area, a folder or an object-store prefix, in its sub-folders too (I/O:
    retried). A linked folder that leads outside a local landing folder is listed itself, never walked: the
    run refuses it by name (:func:`parse_files`), where silence would hide its exports."""
    found = [p for p in storage.list_files(landing) if not ignored(storage.relative_name(p, landing) or "")]
    if not storage.is_url(landing):
        root = Path(landing).resolve()
        found += [
            p
            for p in Path(landing).rglob("*")
            if (p.is_symlink() and p.is_dir() and not p.resolve().is_relative_to(root)) or not_a_file(p) is not None
            if not ignored(storage.relative_name(p, landing) or "")
        ]
    return sorted(found, key=str)


def _link_outside_landing(path: storage.Location, settings: Settings) -> Path | None:
    """The target of a local landing entry, at any depth, that is a symbolic link leading outside the landing
    folder, else None (a link within the folder is read like the file it names)."""
    if storage.is_url(path) or settings.landing is None or storage.is_url(settings.landing):
        return None
    entry = Path(path)
    if not entry.is_symlink() or storage.relative_name(entry, settings.landing) is None:  # named on the command line
        return None
    target = entry.resolve()
    return None if target.is_relative_to(Path(settings.landing).resolve()) else target


def _archive(settings: Settings, path: storage.Location, sha: str, data: bytes) -> storage.Location:
    """Keep a file to load under its content hash (once; read-only on a local disk): ``data``, the bytes
    that were hashed and parsed."""
    assert settings.archive is not None
    return storage.write_once(settings.archive, storage.archive_name(sha, Path(storage.name_of(path)).suffix), data)


def _quarantine_file(settings: Settings, path: storage.Location, reason: str, *, copy: bool = True) -> Path:
    """Keep a held-back file and its reason in the quarantine folder (``copy=False``: the reason only)."""
    assert settings.quarantine is not None
    settings.quarantine.mkdir(parents=True, exist_ok=True)
    name = landing_name(path, settings)  # run1/export.csv keeps its folder here too
    target = settings.quarantine / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if copy:
        storage.write_bytes(target, storage.read_bytes(path))
    (settings.quarantine / f"{name}.reason.txt").write_text(reason + "\n", encoding="utf-8")
    return target


def _archive_quarantined(settings: Settings, path: storage.Location, sha: str) -> storage.Location | None:
    """Archive the quarantine folder's copy of the file at ``path`` when it holds the content ``sha`` (a
    version that a newer one supersedes, before :func:`_unquarantine` removes the copy: in move mode, or once
    the lab has overwritten the landing file, it is the only copy). None when the folder holds no such copy."""
    assert settings.quarantine is not None
    copy = settings.quarantine / landing_name(path, settings)
    if not copy.is_file():
        return None
    data = copy.read_bytes()
    return _archive(settings, path, sha, data) if _sha256(data) == sha else None


def _at_landing(settings: Settings, name: str) -> storage.Location:
    """The place in the landing folder of a file the ledger knows by ``name`` (its landing name)."""
    return storage.join(settings.landing, name) if settings.landing is not None else Path(name)


def _archive_left_quarantines(settings: Settings, con: Any) -> int:
    """Archive the quarantine folder's copies of files quarantined whole that no archive holds (quarantined
    before refranges archived such files), before this run's quarantined files overwrite a copy of the same
    name: that copy was their only one. Returns how many were archived; a copy whose content is another
    version's, or no copy, leaves the ledger as it is."""
    archived = 0
    for sha, name in loads.unarchived_quarantines(con):
        kept = _archive_quarantined(settings, _at_landing(settings, name), sha)
        if kept is not None:
            loads.set_archive_path(con, sha, str(kept))
            archived += 1
    return archived


def _supersede_fixed(settings: Settings, con: Any) -> list[tuple[str, str]]:
    """Supersede every version quarantined whole before a version of its name loaded (a lab's corrected export;
    loads.superseded_quarantines): ledger ``replaced``, its held rows out of the ``quarantine`` view, its copy
    archived (files quarantined before refranges archived them) and removed from the quarantine folder with
    its reason. Returns (superseded sha256, sha256 of the loaded version)."""
    done = []
    for sha, name, by in loads.superseded_quarantines(con):
        where = _at_landing(settings, name)
        kept = _archive_quarantined(settings, where, sha)
        loads.supersede_quarantined(con, sha, by, None if kept is None else str(kept))
        _unquarantine(settings, where, sha)
        done.append((sha, by))
    return done


def _unquarantine(settings: Settings, path: storage.Location, sha: str) -> None:
    """Remove a loaded file's copy and reason from the quarantine folder, where an earlier run put them. A
    copy of other content (a later version of the same name, quarantined there) stays with its reason; the
    reason of a copy someone took back into the landing folder (move mode) goes."""
    assert settings.quarantine is not None
    name = landing_name(path, settings)
    target = settings.quarantine / name
    if target.is_file():
        if _sha256(target.read_bytes()) != sha:
            return
        target.unlink()
    (settings.quarantine / f"{name}.reason.txt").unlink(missing_ok=True)


@dataclass
class FilePlan:
    """What ingesting one file would do: computed without writing anything."""

    outcome: FileOutcome
    rows: pl.DataFrame | None = None  # rows that pass the checks and would be loaded
    quarantine: pl.DataFrame | None = None
    samples: pl.DataFrame | None = None
    checked: pl.DataFrame | None = None  # parsed rows as the raw suite looked at them (prepare_raw; for GX)
    file_stats: pl.DataFrame | None = None  # one row for the `files` suite
    assays: pl.DataFrame | None = None  # one row per assay for the `olink_assays` suite (report only)
    handling: pl.DataFrame | None = None  # Olink Explore HT sample-handling (OSI) fields per sample


def plan_file(data: bytes, name: str, settings: Settings, known: set[str], key: bytes) -> FilePlan:
    """Parse and check one file's bytes; decide loaded / skipped / quarantined. No I/O."""
    thresholds = settings.thresholds()
    sha = _sha256(data)
    if sha in known:
        return FilePlan(FileOutcome.already_ingested(name, sha))
    try:
        options = {
            "msd_unit": settings.msd_unit,
            "hold_vendor_warnings": settings.hold_vendor_warnings,
            "luminex_mfi_section": settings.luminex_mfi_section,
        }
        result = read_or_refuse(data, source=name, sha256=sha, options=options)
    except ReaderFailure as exc:  # this file waits, the run goes on; the error goes to the log
        logging.getLogger("refranges").error("reading %s failed in refranges' reader", name, exc_info=exc.__cause__)
        reason = f"{exc} (the archive keeps it); the other files of the run are not held up"
        return FilePlan(FileOutcome(name, sha, "quarantined", reason=reason))
    except UnreadableFileError as exc:
        return FilePlan(FileOutcome(name, sha, "quarantined", reason=str(exc)))
    held = [result.quarantine]
    plan = FilePlan(FileOutcome(name, sha, "loaded", result.layout, result.rows_read, info=dict(result.info)))
    plan.assays, plan.handling = result.extras.get("assays"), result.extras.get("handling")
    if result.samples is not None:
        plan.samples = pseudonymise_subjects(result.samples, key)
        plan.outcome.rows_loaded = plan.samples.height
    else:
        plan.checked = prepare_raw(result.rows)
        outcome = quarantine_rows(plan.checked, load_suite("raw_measurements", thresholds=thresholds))
        held.append(outcome.quarantine)
        plan.rows = schema.conform(outcome.passed, schema.MEASUREMENT, categorical_text=True)
        plan.outcome.rows_loaded = plan.rows.height
    plan.quarantine = pl.concat(held)
    plan.outcome.rows_quarantined = plan.quarantine.height
    o = plan.outcome
    if o.rows_read != o.rows_loaded + o.rows_quarantined:  # a reader bug, never bad input
        msg = f"ledger does not balance for {name}: {o.rows_read} != {o.rows_loaded} + {o.rows_quarantined}"
        raise AssertionError(msg)
    plan.file_stats = file_statistics(o.rows_read, o.rows_quarantined, vendor_held(plan.quarantine)).with_columns(
        pl.lit(name).alias("file")
    )
    gate = quarantine_rows(plan.file_stats, load_suite("files", thresholds=thresholds))
    if gate.failed.height:  # file-level failure: the whole file is held back, with its row reasons kept
        unusable = plan.quarantine.filter(~pl.col("check").is_in(VENDOR_QC_CHECKS))  # the vendor's QC aside
        share = unusable.height / o.rows_read if o.rows_read else 0.0
        o.status = "quarantined"
        o.reason = (
            f"{name}: {gate.failed['why'][0]} ({unusable.height} of {o.rows_read} rows unusable, {share:.0%}"
            f"{commonest_reason(unusable, name)})"
        )
        o.rows_loaded, o.rows_quarantined = 0, o.rows_read
        plan.rows, plan.samples, plan.checked, plan.handling = None, None, None, None
    return plan


@dataclass
class ParsedFile:
    """A parsed file as tasks pass it: its outcome and Parquet paths of its frames (never the frames)."""

    path: storage.Location
    size_bytes: int
    outcome: FileOutcome
    frames: dict[str, str]  # rows | quarantine | samples | handling | gx | file_stats -> Parquet path
    unread: bool = False  # refused without reading it (a link out of the landing folder): nothing to copy
    archive: storage.Location | None = None  # where the parse task archived the bytes it read (loaded, quarantined)
    seen: loads.Seen | None = None  # a local file's stat before it was read (or found unchanged), its sha256, when

    def frame(self, name: str) -> pl.DataFrame | None:
        return pl.read_parquet(self.frames[name]) if name in self.frames else None


def gx_checks(plan: FilePlan) -> list[tuple[pl.DataFrame, str]]:
    """The (frame, suite) pairs Great Expectations validates for one parsed file's rows. The ``files`` suite's
    one row per file is validated once for all the run's files (:func:`_ingest`): a validation of one row
    cost GX about 45 ms of set-up, under the interpreter lock, for each file."""
    checks: list[tuple[pl.DataFrame, str]] = []
    if plan.checked is not None:
        checks.append((plan.checked, "raw_measurements"))
        if plan.assays is not None:
            checks.append((plan.assays, "olink_assays"))
    return checks


def _write_frames(frames: Mapping[str, pl.DataFrame | None], prefix: str) -> dict[str, str]:
    """Write a task's frames as ``<prefix>.<name>.parquet`` for the flow to read; returns name -> path. zstd's
    fastest level, as the raw store: a normalisation part's rows, which become a file of the normalised store,
    in 0.6 instead of 0.8 core-seconds (30 instead of 22 MB for 2 million rows)."""
    paths = {}
    for name, frame in frames.items():
        if frame is not None:
            paths[name] = f"{prefix}.{name}.parquet"
            frame.write_parquet(paths[name], compression=loads.RAW_COMPRESSION, compression_level=loads.RAW_LEVEL)
    return paths


#: A file whose times lie this close to the moment a run looked at it may have changed again within the same
#: clock tick (coarse file systems count in seconds): it is read again the next time.
RACY_NS = 2_000_000_000


def stat_of(path: storage.Location) -> loads.Stat | None:
    """Size, mtime, ctime and inode of a local file (following a link within the landing folder), or None."""
    if storage.is_url(path):
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def unchanged_since(stat: loads.Stat | None, seen: loads.Seen | None) -> str | None:
    """The sha256 a local file had when a run last read it, if it is unchanged since: the same size, mtime,
    ctime (which any write moves, and which cannot be set back by hand) and inode, with times well before
    that run looked. Else None: read and hash it. Unchanged files of a large landing folder were read and
    hashed again by every scheduled run (keep mode): 1.5 GB at 5,000 x 3,000, 6 GB at 20,000 x 3,000."""
    if stat is None or seen is None:
        return None
    was, sha, at = seen
    if stat != was or max(stat[1], stat[2]) >= at - RACY_NS:
        return None
    return sha


def found_unchanged(
    path: storage.Location, settings: Settings, known: Set[str], seen: loads.Seen | None
) -> ParsedFile | None:
    """A known landing file's outcome when it is unchanged since a run read it (:func:`unchanged_since`),
    found by the run itself with a stat, so that no parse task is started for it; None for a file that must
    be parsed (and for a link leading out of the landing folder, which the task refuses). Each task is a task
    run the Prefect server records, about 50 ms of its CPU: 229 of them made a run with nothing new at
    20,000 x 3,000 take 11.8 s."""
    if _link_outside_landing(path, settings) is not None:
        return None
    looked, stat = time.time_ns(), stat_of(path)
    same = unchanged_since(stat, seen)
    if same is None or same not in known or stat is None:
        return None
    name = landing_name(path, settings)
    return ParsedFile(path, stat[0], FileOutcome.already_ingested(name, same), {}, seen=(stat, same, looked))


#: Small files are parsed in groups of up to this many bytes and files, one task and one Great Expectations
#: validation per suite for the group: each task run and each validation has a fixed cost (about 55 ms of
#: Prefect's CPU and 0.1 s of GX's set-up), which made 105 MSD plate files of 150 kB take 0.5 s each
#: (docs/performance.md, "Many small files"). A file of at least GROUP_BYTES is a group of its own.
GROUP_BYTES = 4_000_000
GROUP_FILES = 32


def parse_groups(paths: list[storage.Location]) -> list[list[int]]:
    """Consecutive runs (in landing order) of ``paths`` as groups of indices for :func:`parse_files`: up to
    GROUP_FILES files and GROUP_BYTES bytes each; a file whose size is unknown (an object store) or at least
    GROUP_BYTES is a group of its own."""
    groups: list[list[int]] = []
    size_of_group = 0
    for k, path in enumerate(paths):
        stat = stat_of(path)
        size = stat[0] if stat is not None else GROUP_BYTES
        if not groups or size >= GROUP_BYTES or size_of_group + size > GROUP_BYTES or len(groups[-1]) >= GROUP_FILES:
            groups.append([k])
            size_of_group = size
        else:
            groups[-1].append(k)
            size_of_group += size
    return groups


@dataclass
class _Read:
    """One file of a group as :func:`parse_files` holds it until the group's GX validation."""

    parsed: ParsedFile
    checks: list[tuple[pl.DataFrame, str]]


def _parse_one(path: storage.Location, settings: Settings, known: frozenset[str], key: bytes, scratch: Path) -> _Read:
    """Read, parse and check one file, archive it when it is to be loaded and write its frames under
    ``scratch``; its GX checks are returned for the group's validation."""
    name = landing_name(path, settings)
    odd = not_a_file(path)
    outside = None if odd is not None else _link_outside_landing(path, settings)
    if odd is not None:  # nothing to read, or reading would wait for a writer
        sha = _sha256(f"not a file\0{name}\0{odd}".encode())  # by name: two pipes are two problems
        reason = f"{name}: {odd}; it was not read"
    elif outside is not None:  # never read: it may be any file of the machine
        sha = _sha256(f"symlink\0{outside}".encode())
        what = "the exports in it" if outside.is_dir() else "the export itself"
        reason = (
            f"{name}: a symbolic link to {outside}, outside the landing folder; it was not read. Copy {what} "
            "into the landing folder"
        )
    if odd is not None or outside is not None:
        # refused by an earlier run as it is now: the ledger's outcome, as for a known file (skipped_as_known)
        outcome = (
            FileOutcome.already_ingested(name, sha)
            if sha in known
            else FileOutcome(name, sha, "quarantined", reason=reason)
        )
        return _Read(ParsedFile(path, 0, outcome, {}, unread=True), [])
    looked, stat = time.time_ns(), stat_of(path)  # before reading: a change while it is read shows next time
    data = read_input(path)
    plan = plan_file(data, name, settings, set(known), key)
    plan.outcome.parsed_by = f"{socket.gethostname()}:{os.getpid()}"
    # one prefix per file and task: two files of the same content in one run are parsed at the same time, and
    # a prefix of the hash alone had both write the same scratch file (a torn raw file, a DuckDB read error)
    prefix = str(scratch / f"{plan.outcome.sha256}.{os.urandom(4).hex()}")
    frames: dict[str, str] = {}
    if plan.rows is not None:  # in the raw store's own form: loading then only moves the file
        loads.write_raw_parquet(plan.rows, frames.setdefault("rows", f"{prefix}.rows.parquet"))
    outputs = {
        "quarantine": plan.quarantine,
        "samples": plan.samples,
        "handling": plan.handling,
        "file_stats": plan.file_stats,
    }
    # a file to load or to quarantine is archived here, from the bytes that were hashed and parsed: the run's
    # own thread, which loads the files one by one, was the ingest's critical path with the copies in it (11.8 s
    # of 33.7 s at 5,000 x 3,000); a copy whose load never happens is the same bytes under the same name the
    # next time. A quarantined file's copy in quarantine/ goes by its name, and a later version of that name
    # replaced it: in move mode, which removes the landing file, the first version's bytes were lost.
    keep = plan.outcome.status in ("loaded", "quarantined")
    archive = _archive(settings, path, plan.outcome.sha256, data) if keep else None
    parsed = ParsedFile(
        path,
        len(data),
        plan.outcome,
        frames | _write_frames(outputs, prefix),
        archive=archive,
        seen=None if stat is None else (stat, plan.outcome.sha256, looked),
    )
    return _Read(parsed, gx_checks(plan))


def group_checks(read: list[tuple[str, list[tuple[pl.DataFrame, str]]]]) -> list[tuple[pl.DataFrame, str]]:
    """The GX checks of a group's files ((sha256, checks) each) as one frame per suite, in file order. A file
    whose content an earlier file of the group carries is left out, as the run skips it."""
    frames: dict[str, list[pl.DataFrame]] = {}
    seen: set[str] = set()
    for sha, checks in read:
        if sha in seen:
            continue
        seen.add(sha)
        for frame, suite in checks:
            frames.setdefault(suite, []).append(frame)
    return [(pl.concat(parts, how="diagonal_relaxed"), suite) for suite, parts in frames.items()]


def groups_gx(
    groups: list[list[int]],
    results: Mapping[int, pl.DataFrame],
    skipped: Set[int],
    paths: Sequence[storage.Location],
    settings: Settings,
    known: frozenset[str],
    key: bytes,
) -> list[pl.DataFrame]:
    """The GX results of the run's groups (group -> result), without the files the run skipped as the same
    content as an earlier file of the run (``skipped``, indices of ``paths``). A group without such a file
    keeps its result; a group of nothing else drops it; any other group (the same export landed twice, in
    two groups) is validated again from its other files, here, as its task saw them (``known``: the ledger's
    hashes when the run began): rare, and small files only."""
    out = []
    for g, group in enumerate(groups):
        result = results.get(g)
        if result is None or not skipped & set(group):
            out += [] if result is None else [result]
            continue
        kept = [
            paths[k]
            for k in group
            if k not in skipped and not_a_file(paths[k]) is None and _link_outside_landing(paths[k], settings) is None
        ]
        read = []
        for path in kept:
            plan = plan_file(read_input(path), landing_name(path, settings), settings, set(known), key)
            read.append((plan.outcome.sha256, gx_checks(plan)))
        if checks := group_checks(read):
            out.append(gx_results(settings, checks))
    return out


@task(cache_policy=NO_CACHE)
@collects_garbage  # a group's heap: reused by the next group, not trimmed
def parse_files(
    paths: list[storage.Location],
    settings: Settings,
    known: frozenset[str],
    key: bytes,
    scratch: Path,
) -> list[ParsedFile]:
    """Read, parse and check a group of files (:func:`parse_groups`; no warehouse access), and validate their
    rows with Great Expectations, once per suite for the group: runs on any worker of the task runner and
    writes its frames as Parquet under ``scratch`` (a folder every worker can reach). Memory follows the group
    (one large file, or small files up to GROUP_BYTES), never the run. The run starts it only for files that
    are not known and unchanged (:func:`found_unchanged`); what it saw of each file is kept in ``seen``. The
    group's GX result goes with its first file (``gx``); the run merges every group's."""
    read = [_parse_one(path, settings, known, key, scratch) for path in paths]
    checks = group_checks([(r.parsed.outcome.sha256, r.checks) for r in read])
    if checks:
        first = read[0].parsed
        prefix = str(scratch / f"group.{os.urandom(6).hex()}")
        first.frames |= _write_frames({"gx": gx_results(settings, checks)}, prefix)
    return [r.parsed for r in read]


def _load_parsed(
    parsed: ParsedFile, settings: Settings, run_id: str, con: Any, decided_under: str | None, retried: Set[str]
) -> FileOutcome:
    """Load one parsed file into the warehouse atomically (the flow's single writer does this, in order), on
    the run's open connection ``con`` (each file is its own transaction). ``decided_under``: the run's
    decision fingerprint, recorded with a file quarantined whole; ``retried``: the contents quarantined whole
    under another one, read again by this run (one that loads now leaves the quarantine folder)."""
    logger = get_run_logger()
    assert settings.warehouse is not None
    o, path = parsed.outcome, parsed.path
    if o.status == "skipped":
        return o
    if o.status == "quarantined":
        earlier = loads.loaded_versions(con, o.name)
        if earlier:  # a broken re-export never hides the good rows of the version before it
            o.reason = f"{o.reason}; the loaded version of {o.name} ({earlier[0][:12]}) stays in use"
        _quarantine_file(settings, path, o.reason or "", copy=not parsed.unread)
        archived = None if parsed.archive is None else str(parsed.archive)
        entry = o.ledger_entry(
            size_bytes=parsed.size_bytes, archive_path=archived, run_id=run_id, decided_under=decided_under
        )
        loads.load_file(con, entry, quarantine=parsed.frame("quarantine"))
        logger.warning("quarantined file %s", o.named_reason)
    else:
        archive = parsed.archive
        assert archive is not None, f"{o.name}: its parse task archives every file it plans to load"
        samples, quarantine = parsed.frame("samples"), parsed.frame("quarantine")
        if samples is not None and samples.height:  # what other manifests already say of these samples
            samples, contradicted = against_loaded(samples, loads.samples_listed_elsewhere(con, samples, o.name))
            if contradicted.height:
                quarantine = contradicted if quarantine is None else pl.concat([quarantine, contradicted])
                o.rows_loaded -= contradicted.height
                o.rows_quarantined += contradicted.height
        entry = o.ledger_entry(size_bytes=parsed.size_bytes, archive_path=str(archive), run_id=run_id)
        o.replaced = loads.load_file(
            con,
            entry,
            rows=Path(parsed.frames["rows"]) if "rows" in parsed.frames else None,
            quarantine=quarantine,
            samples=samples,
            handling=parsed.frame("handling"),
            defer_view=True,  # re-pointed once when the run's files are loaded (_ingest)
        )
        if o.sha256 in retried:  # quarantined whole before, loaded now: its copy and reason are stale
            _unquarantine(settings, parsed.path, o.sha256)
            logger.info("%s: quarantined whole under other settings or code before, loaded now", o.name)
        logger.info(
            "%s: %s, %d rows read, %d loaded, %d quarantined",
            o.name,
            o.layout,
            o.rows_read,
            o.rows_loaded,
            o.rows_quarantined,
        )
    return o


def _in_landing(path: storage.Location, settings: Settings) -> bool:
    """True for a file of the landing area, in a sub-folder too (files named on the command line elsewhere are
    never moved)."""
    assert settings.landing is not None
    return storage.relative_name(path, settings.landing) is not None


def gx_results(
    settings: Settings, checks: list[tuple[pl.DataFrame, str]], *, platform: str | None = None
) -> pl.DataFrame:
    """Validate each (frame, suite) with Great Expectations; one row per expectation (RESULT_SCHEMA)."""
    thresholds = settings.thresholds(platform)
    results = [
        validate_with_gx(frame, load_suite(name, thresholds=thresholds)) for frame, name in checks if frame.height
    ]
    if platform is not None:
        results = [r.with_columns(pl.concat_str([pl.col("suite"), pl.lit(f"[{platform}]")])) for r in results]
    return merge_results(results)


def _store_gx(settings: Settings, run_id: str, results: list[pl.DataFrame]) -> pl.DataFrame:
    """Merge GX results of disjoint parts (files, partitions) and store them in qc_results."""
    assert settings.warehouse is not None
    table = merge_results(results)
    if table.height:
        with _connect(settings) as con:
            loads.insert_qc_results(con, table, run_id=run_id)
    return table


@task(cache_policy=NO_CACHE)
@gives_back_memory  # parts one after another: keep the floor flat
def normalise_part(
    raw_files: list[str],
    keys: pl.DataFrame,
    samples: str,
    held_samples: str,
    lookup: pl.DataFrame,
    settings: Settings,
    out: str,
    run_id: str,
) -> dict[str, str]:
    """Normalise one part of the raw rows (``keys``: its platform, panel and analyte_raw, see
    transforms.partitions.plan_normalise), read from the raw store's ``raw_files``, with the plate-level and
    normalised-measurement suites applied, and validate the results with GX. Reads and writes Parquet only
    (any worker of the task runner); returns the paths of normalised (as the normalised store keeps them,
    with ``run_id``), held, anchors and gx."""
    rows = loads.read_raw_part(raw_files, keys)  # in (source_sha256, line_number) order: the files are in sha order
    prepared, held = prepare_measurements(rows, pl.read_parquet(samples), lookup, pl.read_parquet(held_samples))
    del rows
    stats = plate_statistics(prepared)
    per_platform = [(p, stats.filter(pl.col("platform") == p)) for p in stats["platform"].unique().sort().to_list()]
    failed: list[pl.DataFrame] = []
    for platform, part in per_platform:  # thresholds can differ per platform
        plates: SuiteOutcome = quarantine_rows(part, load_suite("plates", thresholds=settings.thresholds(platform)))
        failed.append(plates.failed)
    kept, held_plates = hold_plates(prepared, pl.concat(failed, how="diagonal_relaxed") if failed else stats.clear())
    del prepared
    corrected_by_controls = [p for p in kept["platform"].unique().to_list() if settings.methods.get(p) != "none"]
    anchors = plate_control_anchors(kept.filter(pl.col("platform").is_in(corrected_by_controls)))
    fit: list[pl.DataFrame] = []
    normalised = finish_measurements(
        kept,
        settings.methods,
        combat_fit=fit,
        combat_min_batch=settings.combat_min_batch,
        min_bridges=settings.min_bridges,
    )
    plate_levels = schema.conform(anchors.with_columns(pl.lit("plate_control").alias("kind")), ANCHOR_SCHEMA)
    anchors = pl.concat([plate_levels, combat_anchors(fit)], how="vertical")
    del kept
    checked = quarantine_rows(normalised, load_suite("normalised_measurements", thresholds=settings.thresholds()))
    normalised = schema.conform(checked.passed, schema.NORMALISED)
    gx = [gx_results(settings, [(normalised, "normalised_measurements")])]
    gx += [gx_results(settings, [(part, "plates")], platform=platform) for platform, part in per_platform]
    frames = {
        "normalised": normalised.with_columns(
            pl.lit(run_id, pl.Enum([run_id])).alias("run_id")
        ),  # one dictionary entry
        "held": pl.concat([held, held_plates, checked.quarantine], how="vertical"),
        "anchors": anchors,
        "gx": merge_results(gx),
    }
    return _write_frames(frames, out)


@task(cache_policy=NO_CACHE)
def normalise_all(settings: Settings, run_id: str) -> tuple[int, dict[str, int], int, list[str]]:
    """Rebuild the normalised measurements from every loaded raw row and every manifest, in parts by analyte
    (``partition_rows``) on the task runner, and swap them into the warehouse in one transaction (the parts'
    files become the normalised store's generation ``run_id``: loads.replace_derived). When the
    inputs (loaded files and manifests quarantined whole, settings, dictionary, code) are those the tables were
    last built from, they are left as they are (0 parts): a run that found nothing new costs no normalisation."""
    assert settings.warehouse is not None
    dictionary, dictionary_sha = read_analyte_dictionary(extra=settings.analyte_dictionary_extra)
    lookup = dictionary_lookup(dictionary)
    with _connect(settings) as con:
        # the loaded files, and the manifests quarantined whole: the rows of their samples say why they wait
        files = [
            r[0]
            for r in con.sql(
                "select sha256 from files where status = 'loaded' or (status = 'quarantined' and layout = 'manifest')"
            ).fetchall()
        ]
        fingerprint = input_fingerprint(settings, files, f"{dictionary_sha}:{code_version()}")
        if loads.derived_fingerprint(con, "normalise") == fingerprint:
            return (*_normalised_counts(con), 0, [])
    scratch = _scratch(settings, f"{run_id}-normalise")
    with _connect(settings) as con:
        names = loads.raw_names(con)
        plan = plan_normalise(names, lookup, settings.methods, max_rows=settings.partition_rows)
        raw_files = loads.loaded_raw_files(con)
        loads.read_samples(con).write_parquet(scratch / "samples.parquet")
        loads.held_manifest_samples(con).write_parquet(scratch / "held_samples.parquet")
    # each part reads its rows from the raw store itself (loads.read_raw_part): no serial copy of every raw
    # row into part files first (DuckDB's export was 8 s and 14 core-seconds of a 5,000 x 3,000 run)
    parts = plan.partition_by("part", as_dict=True, maintain_order=True, include_key=False)
    keys = [parts[(k,)] for k in range(len(parts))]
    outputs: list[dict[str, str]] = []
    report("normalisation parts", 0, len(keys))
    futures = normalise_part.map(
        unmapped(raw_files),
        keys,
        unmapped(str(scratch / "samples.parquet")),
        unmapped(str(scratch / "held_samples.parquet")),
        unmapped(lookup),
        unmapped(settings),
        [str(scratch / f"part-{k}") for k in range(len(keys))],
        unmapped(run_id),
    )
    for future in futures:  # in part order, so the warehouse gets the same rows in the same order anywhere
        outputs.append(future.result())
        report("normalisation parts", len(outputs), len(keys))
    with _connect(settings) as con:
        loads.replace_derived(
            con,
            normalised=[o["normalised"] for o in outputs],
            held=[o["held"] for o in outputs],
            anchors=[o["anchors"] for o in outputs],
            run_id=run_id,
            fingerprint=fingerprint,
        )
    _store_gx(settings, run_id, [pl.read_parquet(o["gx"]) for o in outputs])
    with _connect(settings) as con:
        counts = _normalised_counts(con)
    shutil.rmtree(scratch, ignore_errors=True)
    return (*counts, len(keys), named_by_uniprot(names, lookup))


def _normalised_counts(con: Any) -> tuple[int, dict[str, int]]:
    """Rows of the normalised measurements, and the rows held back so far by check."""
    n_rows = con.sql("select count(*) from measurements_normalised").fetchall()[0][0]
    held = con.sql('select "check", count(*) from quarantine group by all').fetchall()
    return int(n_rows), {str(k): int(v) for k, v in held}


def decision_fingerprint(settings: Settings) -> str:
    """What decides a file's outcome besides its bytes: the settings, the analyte dictionary and refranges
    itself. A file quarantined whole under another fingerprint is read again (loads.quarantined_under_other): a raised
    threshold, a completed dictionary or a reader that now knows the layout may load it."""
    _, dictionary_sha = read_analyte_dictionary(extra=settings.analyte_dictionary_extra)
    return input_fingerprint(settings, [], f"{dictionary_sha}:{code_version()}")


def input_fingerprint(settings: Settings, file_hashes: list[str], dictionary_sha: str) -> str:
    payload = {
        "files": sorted(file_hashes),
        "parameters": settings.parameters(),
        "dictionary": dictionary_sha,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


BUILD_TABLES = ("intervals", "quantiles", "outliers", "skipped")  # the fields of a ReferenceBuild, in order


@dataclass
class ReferenceOutcome:
    """What the reference stage computes from the normalised measurements (combined over all parts)."""

    build: ReferenceBuild
    comparison: pl.DataFrame
    variation: pl.DataFrame
    parts: int = 0


def _reference_of(rows: pl.DataFrame, settings: Settings) -> dict[str, pl.DataFrame]:
    """Reference groups, retest variation and cohort comparisons (without q-values) of some analytes."""
    healthy_visits = rows.filter(pl.col("cohort") == "healthy")
    # every person counts once in a reference group; repeat visits of healthy people give the RCV
    healthy = first_visits(healthy_visits)
    patients = first_visits(rows.filter(pl.col("cohort") == "patient"))
    del rows
    build = build_reference(
        healthy,
        min_n=settings.min_n,
        min_n_small=settings.min_n_small,
        coverage=settings.coverage,
        ci_level=settings.ci_level,
        k_privacy=settings.quantile_k,
        age_bands=settings.age_bands,
        outliers=settings.outlier_rule,
    )
    return {
        "intervals": build.intervals,
        "quantiles": build.quantiles,
        "outliers": build.outliers,
        "skipped": build.skipped,
        "comparison": compare_cohorts(
            patients,
            healthy,
            build.intervals,
            early_years=settings.early_years,
            q_values=False,
            covariates=settings.comparison_covariates,
        ),
        "variation": retest_variation(
            healthy_visits, min_subjects=settings.rcv_min_subjects, probability=settings.rcv_probability
        ),
    }


def read_for_reference(files: list[str], analytes: list[str], samples: pl.DataFrame) -> pl.DataFrame:
    """The normalised rows of ``analytes`` in ``files`` (of the normalised store) that belong to a study
    sample, with the sample's fields (``samples``: loads.study_samples): what the `measurements` view gives for
    healthy and patient samples, in the columns the reference stage reads, in file order."""
    rows = (
        pl.scan_parquet(files, hive_partitioning=False)
        .filter(pl.col("analyte").is_in(analytes))
        .select(loads.FOR_REFERENCE)
        .collect()
    )
    rows = schema.conform(rows, {c: schema.NORMALISED[c] for c in loads.FOR_REFERENCE})
    return rows.join(samples, on="sample_id", how="inner", maintain_order="left")


@task(cache_policy=NO_CACHE)
@gives_back_memory  # parts one after another: keep the floor flat
def reference_part(files: list[str], analytes: list[str], samples: str, settings: Settings, out: str) -> dict[str, str]:
    """:func:`_reference_of` one part of the analytes (groups never span analytes, so parts are independent),
    read from the normalised store's ``files``. Reads and writes Parquet only (any worker of the task runner)."""
    # no name holds the rows here, so _reference_of can free them once it has split them by cohort
    return _write_frames(
        _reference_of(
            schema.sort_rows(
                read_for_reference(files, analytes, pl.read_parquet(samples)),
                ["sample_id", "analyte", "platform", "panel"],
            ),
            settings,
        ),
        out,
    )


def _scratch(settings: Settings, name: str) -> Path:
    """A run's folder for Parquet handed between tasks (beside the warehouse; removed when the step ends)."""
    assert settings.warehouse is not None
    path = settings.warehouse.parent / ".scratch" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def build_partitioned(settings: Settings, scratch: Path) -> ReferenceOutcome:
    """Reference groups, retest variation and cohort comparisons in parts by analyte (``partition_rows``
    measurements each) on the task runner, each part reading its analytes from the normalised store's files.
    The parts are combined in one fixed order and the q-values are computed across all markers at the end,
    so the result does not depend on the parts or where they ran."""
    assert settings.warehouse is not None
    with _connect(settings) as con:
        sizes = loads.reference_sizes(con)
        loads.study_samples(con).write_parquet(scratch / "samples.parquet")
        empty = con.sql("select * from measurements limit 0").pl() if sizes.height == 0 else None
    if empty is not None:  # nothing measured yet: the empty tables, with their columns
        nothing = _reference_of(empty, settings)
        build = ReferenceBuild(*(nothing[f] for f in BUILD_TABLES))
        return ReferenceOutcome(build, nothing["comparison"], nothing["variation"])
    plan = plan_reference(sizes, max_rows=settings.partition_rows)
    where = sizes.join(plan, on="analyte")
    parts = [
        (
            sorted(where.filter(pl.col("part") == k)["file"].unique().to_list()),
            plan.filter(pl.col("part") == k)["analyte"].to_list(),
        )
        for k in range(int(plan["part"].max()) + 1)  # type: ignore[arg-type]
    ]
    outputs: list[dict[str, str]] = []
    report("reference parts built", 0, len(parts))
    futures = reference_part.map(
        [files for files, _ in parts],
        [analytes for _, analytes in parts],
        unmapped(str(scratch / "samples.parquet")),
        unmapped(settings),
        [str(scratch / f"part-{k}") for k in range(len(parts))],
    )
    for future in futures:
        outputs.append(future.result())
        report("reference parts built", len(outputs), len(parts))

    def gather(name: str, order: list[str]) -> pl.DataFrame:  # parts hold whole analytes: a stable sort orders them
        return pl.concat([pl.read_parquet(o[name]) for o in outputs], how="vertical").sort(
            order, nulls_last=False, maintain_order=True
        )

    build = combine_builds([ReferenceBuild(*(pl.read_parquet(o[f]) for f in BUILD_TABLES)) for o in outputs])
    comparison = finish_comparison(gather("comparison", [*GROUP_ORDER, "cohort"]))
    outcome = ReferenceOutcome(build, comparison, gather("variation", schema.MARKER_KEYS), len(outputs))
    shutil.rmtree(scratch, ignore_errors=True)
    return outcome


def _unchanged_release(settings: Settings, version: str) -> dict[str, Any]:
    """The outcome of a run whose inputs are those of the latest release ``version``: nothing published, and
    the release's files checked against its manifest, since downstream apps keep pulling it (a folder
    edited, truncated or half restored is reported on every run until it is restored)."""
    assert settings.releases is not None
    message = f"inputs unchanged since release {version}: nothing published"
    try:
        damaged = releases.verify(settings.releases, version)
    except releases.ReleaseError as exc:  # its manifest unreadable: the message says which file and what to do
        damaged = [str(exc)]
    if not damaged:
        return {"version": None, "message": message}
    get_run_logger().warning("release %s no longer matches its manifest: %s", version, "; ".join(damaged))
    return {
        "version": None,
        "message": f"{message}, but release {version} no longer matches its manifest ({'; '.join(damaged)}): "
        f"restore its folder from a backup; `refranges releases verify {version}` checks it",
        "damaged": True,
    }


def build_and_publish(settings: Settings, run_id: str) -> dict[str, Any]:
    """Reference groups from healthy samples; publish a release when the inputs changed."""
    assert settings.warehouse is not None and settings.releases is not None
    _, dictionary_sha = read_analyte_dictionary(extra=settings.analyte_dictionary_extra)
    with _connect(settings) as con:
        files = con.sql("select file_name, sha256 from files where status = 'loaded' order by file_name").fetchall()
        fingerprint = input_fingerprint(settings, [s for _, s in files], dictionary_sha)
        registered = loads.registered_releases(con)
        index = releases.read_index(settings.releases)
        missing = releases.missing_registered(settings.releases, registered, index)
        if missing:  # never publish into a store that lost what the warehouse says it holds
            return _store_lost(settings, missing)
        last = index[-1] if index else None
        unregistered = None  # the latest release, made from these inputs by a run killed before its swap
        if last is not None and last["input_fingerprint"] == fingerprint:
            if loads.release_recorded(con, last["version"]):
                return _unchanged_release(settings, last["version"])
            unregistered = last["version"]
        anchors = con.sql(
            "select * exclude (run_id) from normalisation_anchors order by platform, panel, analyte, control_id"
        ).pl()
    reference = build_partitioned(settings, _scratch(settings, f"{run_id}-reference"))
    build, comparison, variation = reference.build, reference.comparison, reference.variation
    skipped = [f"{r['analyte']} {r['platform']} {r['matrix']}: {r['why']}" for r in build.skipped.iter_rows(named=True)]
    extra = [c for c in build.intervals.columns if c not in schema.REFERENCE_INTERVAL]
    checks = release_checks(build.intervals, build.quantiles, extra_columns=extra)
    gate = quarantine_rows(checks, load_suite("release", thresholds=settings.thresholds()))
    _store_gx(settings, run_id, [gx_results(settings, [(checks, "release")])])
    blocked = gate.results.filter(~pl.col("success") & (pl.col("action") == "block"))
    if blocked.height:
        why = "; ".join(f"{r['why']} ({r['unexpected_count']} groups)" for r in blocked.iter_rows(named=True))
        return {
            "version": None,
            "message": f"release blocked by the release suite: {why}",
            "skipped": skipped,
            "blocked": True,
        }
    if build.intervals.height == 0:
        return {
            "version": None,
            "message": "no reference group reached the minimum n: nothing published",
            "skipped": skipped,
        }
    tables = {
        "reference_intervals": build.intervals,
        "reference_quantiles": build.quantiles,
        "cohort_comparison": comparison,
        "retest_variation": variation,
        "normalisation_anchors": anchors,
    }
    published = _published_copy(settings, unregistered, tables) if unregistered else None
    if published is not None:  # register it, do not publish the same content twice
        created = datetime.fromisoformat(published.manifest["created_at"].removesuffix("Z"))
        message = f"registered release {published.version}, published by a run that ended before it finished"
    else:
        created = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
        message = ""
        published = publish_release(
            settings.releases,
            tables=tables,
            created_at=created,
            parameters=settings.parameters() | {"analyte_dictionary_sha256": dictionary_sha},
            inputs=[{"file": n, "sha256": s} for n, s in files],
            input_fingerprint=fingerprint,
            code_version=code_version(),
            report_max_plots=settings.report_max_plots,
            taken=[v for v, _ in registered],
        )
    with _connect(settings) as con:
        loads.record_release(
            con,
            version=published.version,
            created_at=created,
            input_fingerprint=fingerprint,
            previous_version=published.manifest["previous_version"],
            path=str(published.path),
            intervals=build.intervals,
            quantiles=build.quantiles,
            outliers=build.outliers,
            run_id=run_id,
            comparison=comparison,
            variation=variation,
            anchors=anchors,
        )
    return {
        "version": published.version,
        "path": str(published.path),
        "groups": build.intervals.height,
        "parts": reference.parts,
        "message": message or f"published release {published.version}",
        "skipped": skipped,
    }


def _store_lost(settings: Settings, missing: list[str]) -> dict[str, Any]:
    """The release step's outcome when the release store's index lacks releases the warehouse registered in
    it: nothing is built or published (a new release there would start a second history, or land on the local
    disk under a share's mount point), and the run ends with problems, saying what to do."""
    assert settings.releases is not None
    lost = releases.lost_store(settings.releases, missing)
    get_run_logger().warning("%s", lost)
    return {
        "version": None,
        "message": f"{lost}. Nothing was published: restore the store (from a backup, or mount the share), or "
        "point `releases` at where it is now; to start a new store, point `releases` at a new folder (its "
        "versions never reuse the warehouse's)",
        "damaged": True,
    }


def _published_copy(settings: Settings, version: str, tables: dict[str, pl.DataFrame]) -> releases.Published | None:
    """Release ``version`` when it verifies and holds exactly ``tables`` (a run published it and was killed
    before the warehouse recorded it), else None (then a new version is published)."""
    assert settings.releases is not None
    if releases.verify(settings.releases, version):
        return None
    manifest = releases.read_manifest(settings.releases, version)
    if set(manifest["files"]) - {"report.html"} != {f"{name}.parquet" for name in tables}:
        return None
    for name, frame in tables.items():
        if not releases.read_table(settings.releases, version, name).equals(frame):
            return None
    return releases.Published(version, storage.join(settings.releases, version), manifest)


def _connect(settings: Settings) -> Any:
    """A read-write connection to the run's warehouse, with DuckDB's memory capped (``duckdb_memory_limit``)."""
    assert settings.warehouse is not None
    return db.connect(settings.warehouse, memory_limit=settings.duckdb_memory_limit)


def _new_run(settings: Settings) -> RunSummary:
    assert settings.warehouse is not None
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + os.urandom(3).hex()
    with _connect(settings) as con:
        loads.start_run(con, run_id)
    return RunSummary(run_id=run_id, warehouse=str(settings.warehouse))


def gone_from_landing(gone: list[tuple[str, str]], settings: Settings, con: Any, present: Set[str]) -> list[str]:
    """The names of the files that left the landing folder since a run read them (``gone``: path, sha256)
    whose content is still loaded and not at another place of the folder now (``present``: the contents this
    run saw): removing an export by hand leaves its rows in use, which a person who removed it may not expect
    (`refranges files retract` takes them out)."""
    if not gone:
        return []
    loaded = {r[0] for r in con.execute("select sha256 from files where status = 'loaded'").fetchall()}
    return [
        landing_name(path, settings)
        for path, sha in gone
        if sha in loaded and sha not in present and _in_landing(path, settings)
    ]


def too_recent(paths: Sequence[storage.Location], settings: Settings, now_ns: int) -> dict[int, float]:
    """Index -> age in seconds of the local ``paths`` whose content or metadata changed (the later of mtime
    and ctime; a copy keeps an old mtime but not its ctime) less than ``landing_min_age_seconds`` before
    ``now_ns``, as a copy still being written would be. Files on an object store appear whole: never listed."""
    if settings.landing_min_age_seconds <= 0:
        return {}
    ages = {}
    for k, path in enumerate(paths):
        stat = stat_of(path)
        age = None if stat is None else (now_ns - max(stat[1], stat[2])) / 1e9
        if age is not None and age < settings.landing_min_age_seconds:
            ages[k] = max(age, 0.0)
    return ages


def _ingest(
    paths: Sequence[storage.Location], settings: Settings, summary: RunSummary, *, settle: bool = False
) -> None:
    """Ingest files one by one (each atomic, each validated with GX where it is parsed), then rebuild the
    derived tables. ``settle``: ``paths`` are what the run found in the landing folder, and those it would read
    that changed too recently are left for a later run (:func:`too_recent`); files named by hand are read as
    they are."""
    assert settings.warehouse is not None
    key = subject_key(settings)
    decided_under = decision_fingerprint(settings)
    with _connect(settings) as con:
        if archived := _archive_left_quarantines(settings, con):
            get_run_logger().info("archived %d files an older refranges quarantined without archiving them", archived)
        retried = loads.quarantined_under_other(con, decided_under)  # what held them back may have changed
        ledger = loads.known_files(con)  # what became of each content it knows: a skipped file is told by it
        known = set(ledger) - retried
        seen = loads.landing_seen(con)
    gx: list[pl.DataFrame] = []
    file_stats: list[pl.DataFrame] = []
    scratch = _scratch(settings, summary.run_id)
    # parsing runs in parallel on the task runner (threads here, processes on a Dask cluster); loading runs
    # here, one file at a time and in landing order, as the warehouse has one writer
    started = time.perf_counter()
    last_seen = [seen.get(os.path.abspath(p)) if not storage.is_url(p) else None for p in paths]
    ready = [found_unchanged(p, settings, known, was) for p, was in zip(paths, last_seen, strict=True)]
    if settle:  # of the files the run would read, those changed too recently wait (known, unchanged ones do not)
        unread = [k for k, r in enumerate(ready) if r is None]
        recent = too_recent([paths[k] for k in unread], settings, time.time_ns())
        late = {  # one a run read and that has not changed since (within the same clock tick) is not being written
            unread[i]: age
            for i, age in recent.items()
            if (was := last_seen[unread[i]]) is None or was[0] != stat_of(paths[unread[i]])
        }
        if late:
            summary.landing_waiting = [
                f"{landing_name(paths[k], settings)} (changed {age:.0f} s before the run)" for k, age in late.items()
            ]
            paths = [p for k, p in enumerate(paths) if k not in late]
            ready = [r for k, r in enumerate(ready) if k not in late]
            get_run_logger().info(
                "%d landing files changed less than %s s ago, left for a later run: %s",
                len(late),
                f"{settings.landing_min_age_seconds:g}",
                "; ".join(summary.landing_waiting),
            )
    to_parse = [k for k, r in enumerate(ready) if r is None]
    groups = [[to_parse[i] for i in group] for group in parse_groups([paths[k] for k in to_parse])]
    known_before = frozenset(known)  # what the parse tasks are given: the ledger's hashes as the run began
    futures = (
        parse_files.map(
            [[paths[k] for k in group] for group in groups],
            unmapped(settings),
            unmapped(known_before),
            unmapped(key),
            unmapped(scratch),
        )
        if groups
        else []
    )
    parsing = {k: (future, i) for group, future in zip(groups, futures, strict=True) for i, k in enumerate(group)}
    group_of = {k: g for g, group in enumerate(groups) for k in group}
    group_results: dict[int, pl.DataFrame] = {}  # a group's GX validation, merged once the run knows its files
    skipped_twice: set[int] = set()  # files whose content an earlier file of this run carries
    looked: dict[str, loads.Seen] = {}  # what this run saw of the local files whose content the ledger now holds
    first_in_run: dict[str, str] = {}  # sha256 -> the file of this run that carried it first
    report("files parsed and loaded", 0, len(paths))
    with _connect(settings) as con:  # one connection for the loads (opening one per file cost 0.1 s each)
        for k in range(len(paths)):  # in landing order
            if (parsed := ready[k]) is None:  # read in this run: its group's task holds it
                future, i = parsing[k]
                parsed = future.result()[i]
            if (results := parsed.frame("gx")) is not None:  # its group's validation, whatever this file is
                group_results[group_of[k]] = results
            name, sha = parsed.outcome.name, parsed.outcome.sha256
            if sha in known and parsed.outcome.status != "skipped":  # same content twice
                skipped_twice.add(k)
                twice = skipped_as_twice(name, sha, first_in_run.get(sha))
                parsed = ParsedFile(parsed.path, parsed.size_bytes, twice, {}, seen=parsed.seen)
            elif parsed.outcome.status == "skipped":  # the ledger knew it when the run began
                parsed.outcome = skipped_as_known(name, sha, ledger.get(sha))
            outcome = _load_parsed(parsed, settings, summary.run_id, con, decided_under, retried)
            known.add(outcome.sha256)
            first_in_run.setdefault(outcome.sha256, outcome.name)
            if parsed.seen is not None and not parsed.unread:
                looked[os.path.abspath(parsed.path)] = parsed.seen
            if settings.landing_mode == "move" and not parsed.unread and _in_landing(parsed.path, settings):
                summary.landing_removed.append(str(parsed.path))  # removed once the warehouse holds it
            summary.files.append(outcome)
            report("files parsed and loaded", k + 1, len(paths))
            if outcome.status != "skipped" and (stats := parsed.frame("file_stats")) is not None:
                file_stats.append(stats)
        loaded_now = {o.sha256: o for o in summary.files if o.status == "loaded"}
        for old, by in _supersede_fixed(settings, con):  # this run's corrected exports, and older runs' left over
            if by in loaded_now:
                loaded_now[by].replaced.append(old)
        loads.ensure_raw_store(con)  # the view over the loaded files, once for all of them
        gone = loads.record_landing_seen(con, looked)
        if settings.landing_mode == "keep":  # move mode removes what it loaded: nothing to tell
            summary.landing_gone = gone_from_landing(gone, settings, con, {seen[1] for seen in looked.values()})
            if summary.landing_gone:
                get_run_logger().warning(
                    "%d loaded files were removed from the landing folder; their rows stay in use (`refranges "
                    "files retract NAME --reason TEXT` takes one out): %s",
                    len(summary.landing_gone),
                    ", ".join(summary.landing_gone),
                )
    gx += groups_gx(groups, group_results, skipped_twice, paths, settings, known_before, key)
    if file_stats:  # the files suite over the run's new files at once (gx_checks)
        gx.append(gx_results(settings, [(pl.concat(file_stats, how="vertical"), "files")]))
    _store_gx(settings, summary.run_id, gx)  # one row per expectation for the run's new files
    summary.stage_seconds["ingest"] = time.perf_counter() - started
    shutil.rmtree(scratch, ignore_errors=True)
    started = time.perf_counter()
    normalised = normalise_all(settings, summary.run_id)
    summary.normalised_rows, summary.held_by_check, summary.parts["normalise"], summary.analytes_by_uniprot = normalised
    summary.stage_seconds["normalise"] = time.perf_counter() - started


def write_report(settings: Settings, summary: RunSummary) -> Path:
    """The offline HTML QC report of a run (<home>/reports/qc-<run_id>.html)."""
    assert settings.warehouse is not None and settings.reports is not None
    with _connect(settings) as con:
        results = con.sql(
            "select suite, expectation, action, why, success, element_count, unexpected_count, unexpected_sample "
            "from qc_results where run_id = ? order by checked_at, suite",
            params=[summary.run_id],
        ).pl()
        held = con.sql(
            'select stage, "check", count(*) as n, any_value(reason) as example from quarantine '
            "group by all order by n desc"
        ).pl()
    files = pl.DataFrame(
        [
            {
                "file": f.name,
                "status": f.status,
                "layout": f.layout,
                "rows_read": f.rows_read,
                "rows_loaded": f.rows_loaded,
                "rows_quarantined": f.rows_quarantined,
                "reason": f.reason,
            }
            for f in summary.files
            if f.status != "skipped"
        ],
        schema={
            "file": pl.String,
            "status": pl.String,
            "layout": pl.String,
            "rows_read": pl.Int64,
            "rows_loaded": pl.Int64,
            "rows_quarantined": pl.Int64,
            "reason": pl.String,
        },
    )
    page = render_report(
        run_id=summary.run_id, results=results, quarantine=held, files=files, release=summary.release_message or "-"
    )
    settings.reports.mkdir(parents=True, exist_ok=True)
    path = settings.reports / f"qc-{summary.run_id}.html"
    path.write_text(page, encoding="utf-8")
    return path


def _finish(settings: Settings, summary: RunSummary) -> State:
    """Record the run; a run that quarantined whole files ends as 'CompletedWithProblems'."""
    assert settings.warehouse is not None
    bad = [f for f in summary.files if f.status == "quarantined"]
    if bad or summary.release_blocked or summary.release_damaged:
        summary.status = "completed_with_problems"
    summary.report_path = str(write_report(settings, summary))
    from flows.summary import summary_text

    get_run_logger().info("run summary\n%s", summary_text(summary))
    with _connect(settings) as con:
        loads.finish_run(con, summary.run_id, status=summary.status, summary=summary.as_dict())
    if summary.status != "completed":
        problems = [f"{len(bad)} file(s) quarantined: " + "; ".join(f.name for f in bad)] if bad else []
        if summary.release_blocked or summary.release_damaged:
            problems.append(summary.release_message)
        return Completed(message=" | ".join(problems), name="CompletedWithProblems", data=summary)
    return Completed(message=summary.release_message or "ok", data=summary)


@contextmanager
def _writing(settings: Settings) -> Iterator[tuple[Settings, RunSummary]]:
    """Hold the warehouse writer lock and run on a private copy of the warehouse, swapped into place when
    the block ends without an error: analysts' read-only sessions never block a run or see half of one,
    and a failed run leaves no trace. After the swap, the normalised store keeps the generation the
    warehouse reads and the one it read before the run (sessions opened before the swap read that one); older
    generations and those of killed runs are removed. Yields the run's settings (pointing at the copy) and
    its summary."""
    assert settings.warehouse is not None
    public = settings.warehouse
    with db.writer_lock(public, wait_seconds=settings.writer_wait_seconds):
        _clear_leftovers(public)
        if public.is_file():  # a raw store without a loaded file's rows: one clear reason, nothing changed
            loads.check_raw_store_of(public)
        work = db.open_work_copy(public)
        on_copy = replace(settings, warehouse=work)
        with _connect(on_copy) as con:
            before = loads.normalised_generations(con)  # what analysts' open sessions may read
        summary = _new_run(on_copy)
        summary.warehouse = str(public)
        loads.record_attempt(public, summary.run_id)  # `refranges status` tells a run that fails or is killed
        try:
            yield on_copy, summary
            with _connect(on_copy) as con:
                now = loads.normalised_generations(con)
            db.publish_work_copy(work, public)
        except BaseException as exc:
            loads.record_attempt(public, summary.run_id, error=exc)
            raise
        loads.clear_attempt(public)
        loads.prune_normalised(public.parent, keep=before | now)
        summary.landing_kept = _remove_from_landing(summary.landing_removed)
        if summary.landing_kept:  # loaded all the same: the next run skips them by their hash
            get_run_logger().warning(
                "%d loaded file(s) could not be removed from the landing folder: %s",
                len(summary.landing_kept),
                "; ".join(summary.landing_kept),
            )


def _clear_leftovers(warehouse: Path) -> None:
    """Delete what a killed run left beside the warehouse: its scratch Parquet and half-written raw and
    normalised files (``.<name>.<pid>.tmp``). Called holding the writer lock, so no other run is using them."""
    shutil.rmtree(warehouse.parent / ".scratch", ignore_errors=True)
    for pattern in (f"{loads.RAW_DIR}/.*.tmp", f"{loads.NORMALISED_DIR}/*/.*.tmp"):
        for tmp in warehouse.parent.glob(pattern):
            tmp.unlink(missing_ok=True)


def _remove_from_landing(paths: list[str]) -> list[str]:
    """Move mode: delete landing files whose content the swapped-in warehouse now holds (its archive copy,
    or its quarantine copy and reason). Only after the swap: a run killed before it leaves them in place, and
    the next run reads them again (already archived ones are skipped by their hash, then removed). Returns
    the files that could not be removed, each with why (a share the run may read but not change): the run
    has loaded them, so it reports them instead of failing, which said that nothing had changed."""
    kept = []
    for path in paths:
        try:
            storage.remove(path)
        except FileNotFoundError:  # removed by hand meanwhile
            continue
        except OSError as exc:
            kept.append(f"{path} ({exc.strerror or exc})")
    return kept


@flow(name="refranges-run", log_prints=True)
def run_pipeline(settings: Settings) -> RunSummary:
    """One pass: ingest new files, quality checks, normalise, build reference groups, publish (see
    :func:`_writing` for how the warehouse is written)."""
    assert settings.landing is not None
    check_landing(settings)
    freeze_modules()  # before any task: later collections skip the modules' objects
    with _writing(settings) as (settings, summary):
        _ingest(list_landing(settings.landing), settings, summary, settle=True)
        started = time.perf_counter()
        release = build_and_publish(settings, summary.run_id)
        summary.stage_seconds["reference_and_publish"] = time.perf_counter() - started
        summary.release_version = release.get("version")
        summary.release_path = release.get("path")
        summary.groups_published = int(release.get("groups", 0))
        summary.parts["reference"] = int(release.get("parts", 0))
        summary.groups_skipped = list(release.get("skipped", []))
        summary.release_message = str(release["message"])
        summary.release_blocked = bool(release.get("blocked", False))
        summary.release_damaged = bool(release.get("damaged", False))
        state = _finish(settings, summary)
    return state  # type: ignore[return-value]  # the flow returns the state's data


@flow(name="refranges-ingest", log_prints=True)
def ingest_paths(settings: Settings, paths: list[Path], settle: bool = False) -> RunSummary:
    """Ingest the given files into the warehouse (no release is built), written as run_pipeline writes it.
    ``settle``: the paths are a listing of the landing folder (the scheduled ingest), and files changed too
    recently are left for a later run (:func:`too_recent`)."""
    freeze_modules()
    with _writing(settings) as (settings, summary):
        _ingest(paths, settings, summary, settle=settle)
        summary.release_message = "ingest only: no release built"
        state = _finish(settings, summary)
    return state  # type: ignore[return-value]


def on_runner(flow_: Any, settings: Settings) -> Any:
    """``flow_`` with the task runner of the configuration (threads, or a Dask cluster)."""
    return flow_.with_options(task_runner=task_runner(settings))


def dry_run(paths: list[Path], settings: Settings) -> tuple[list[FileOutcome], pl.DataFrame]:
    """What ingesting these files would load and quarantine; writes nothing (no flow, no warehouse write).
    Also the rows each file would hold back, by check (:func:`held_by_check`): a dry run that said only
    "2 of 2 rows unusable" left the user to guess why."""
    assert settings.warehouse is not None
    ledger: dict[str, loads.Known] = {}
    retried: set[str] = set()
    if settings.warehouse.exists():
        with db.connect(settings.warehouse, read_only=True) as con:
            ledger = loads.known_files(con)
            retried = loads.quarantined_under_other(con, decision_fingerprint(settings))
    known = set(ledger) - retried
    outcomes, held = [], []
    first: dict[str, str] = {}
    for path in paths:
        odd = not_a_file(path)
        if odd is not None:  # nothing to read (a dangling link), or reading would wait for a writer (a pipe)
            name = landing_name(path, settings)
            outcomes.append(FileOutcome(name, "", "quarantined", reason=f"{name}: {odd}; it was not read"))
            continue
        plan = plan_file(path.read_bytes(), landing_name(path, settings), settings, known, b"dry-run")
        o = plan.outcome
        if o.status == "skipped":
            o = plan.outcome = (
                skipped_as_known(o.name, o.sha256, ledger[o.sha256])
                if o.sha256 in ledger and o.sha256 not in first
                else skipped_as_twice(o.name, o.sha256, first.get(o.sha256))
            )
        known.add(o.sha256)
        first.setdefault(o.sha256, o.name)
        outcomes.append(o)
        if plan.quarantine is not None and plan.quarantine.height:
            held.append(held_by_check(plan.quarantine, plan.outcome.name))
    return outcomes, pl.concat(held) if held else held_by_check(schema.empty(schema.QUARANTINE), "")


def commonest_reason(quarantine: pl.DataFrame | None, name: str) -> str:
    """ "; 150 of them: no matrix (...)": how many rows the commonest check held back and its first reason
    without the file and line, for the reason of a file quarantined whole (it said only "150 of 150 rows
    unusable", and the rows' reasons were a query away); nothing when no row was held."""
    if quarantine is None or quarantine.height == 0:
        return ""
    top = held_by_check(quarantine, name).sort("rows", descending=True, maintain_order=True).row(0, named=True)
    said = re.sub(rf"^{re.escape(name)}: (line \d+: )?", "", str(top["example"]))
    return f"; {top['rows']} of them: {said}"


def held_by_check(quarantine: pl.DataFrame, name: str) -> pl.DataFrame:
    """file, check, rows and the first row's reason (in line order) of the rows a file holds back."""
    return (
        quarantine.sort("line_number", nulls_last=True)
        .group_by("check", maintain_order=True)
        .agg(pl.len().alias("rows"), pl.col("reason").first().alias("example"))
        .select(pl.lit(name).alias("file"), "check", pl.col("rows").cast(pl.Int64), "example")
    )


__all__ = ["RunSummary", "run_pipeline"]
