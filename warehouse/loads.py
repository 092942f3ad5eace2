"""Idempotent loads into the warehouse. Every write of one input file is one transaction."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np
import polars as pl

from transforms import schema
from transforms.readers.olink_explore import HANDLING_FIELDS
from warehouse import NORMALISED_DIR, RAW_DIR, storage


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class LedgerEntry:
    sha256: str
    file_name: str
    layout: str | None
    size_bytes: int
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    status: str
    reason: str | None
    archive_path: str | None
    run_id: str
    info: dict[str, object] | None = None  # what the file says of itself (Olink product, versions, LOD rule)
    decided_under: str | None = None  # a quarantined file: the settings, dictionary and code that decided it


#: The file facts that have columns of their own in ``files`` (the rest are in ``file_info_json``).
FILE_INFO_COLUMNS = ("product", "data_file_type", "software_version", "data_analysis_ref_id")


@dataclass(frozen=True)
class Known:
    """What the ledger says of a content it holds: the file's name then, its status (loaded, quarantined,
    replaced, retracted) and the reason given with that status."""

    name: str
    status: str
    reason: str | None


def known_files(con: duckdb.DuckDBPyConnection) -> dict[str, Known]:
    """sha256 -> :class:`Known`, for every content the ledger knows. A run reads none of them again, except
    those :func:`quarantined_under_other` settings, dictionary or code (the callers take those out); a file it
    skips is told by what became of its content then (flows.pipeline.skipped_as_known)."""
    rows = con.execute("select sha256, file_name, status, reason from files").fetchall()
    return {sha: Known(name, status, reason) for sha, name, status, reason in rows}


def quarantined_under_other(con: duckdb.DuckDBPyConnection, decided_under: str) -> set[str]:
    """The sha256 of files quarantined whole under a decision fingerprint other than ``decided_under`` (or
    before the ledger recorded one)."""
    recorded = con.execute(  # a read-only look at a warehouse not yet migrated (ingest --dry-run) has no column
        "select count(*) from duckdb_columns() where table_name = 'files' and column_name = 'decided_under'"
    ).fetchall()[0][0]
    if not recorded:
        return {r[0] for r in con.execute("select sha256 from files where status = 'quarantined'").fetchall()}
    query = "select sha256 from files where status = 'quarantined' and decided_under is distinct from ?"
    return {r[0] for r in con.execute(query, [decided_under]).fetchall()}


#: A local landing file as a run saw it: size in bytes, mtime_ns, ctime_ns, inode.
Stat = tuple[int, int, int, int]
#: What a run saw of a landing file it read: its Stat, the sha256 of the content read, when it looked (ns).
Seen = tuple[Stat, str, int]


def landing_seen(con: duckdb.DuckDBPyConnection) -> dict[str, Seen]:
    """Path -> what the last run that read it saw (table landing_seen)."""
    rows = con.execute(
        "select path, size_bytes, mtime_ns, ctime_ns, inode, sha256, seen_at_ns from landing_seen"
    ).fetchall()
    return {r[0]: ((r[1], r[2], r[3], r[4]), r[5], r[6]) for r in rows}


def record_landing_seen(con: duckdb.DuckDBPyConnection, seen: dict[str, Seen]) -> list[tuple[str, str]]:
    """Keep what this run saw of the landing files it looked at (one transaction), and forget files that are
    no longer there (removed by move mode or by hand). Returns those forgotten: (path, sha256 last read)."""
    frame = pl.DataFrame(
        [(path, *stat, sha, at) for path, (stat, sha, at) in seen.items()],
        schema=["path", "size_bytes", "mtime_ns", "ctime_ns", "inode", "sha256", "seen_at_ns"],
        orient="row",
    )
    with _transaction(con):
        remembered = con.execute("select path, sha256 from landing_seen").fetchall()
        gone = [(path, sha) for path, sha in remembered if not os.path.lexists(path)]
        if gone:
            con.execute("delete from landing_seen where list_contains(?, path)", [[path for path, _ in gone]])
        if frame.height:
            con.register("__seen", frame.to_arrow())
            con.execute("insert or replace into landing_seen by name select * from __seen")
            con.unregister("__seen")
    return gone


def _insert(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> None:
    if frame.height == 0:
        return
    con.register("__frame", frame.to_arrow())
    try:
        con.execute(f"insert into {table} by name select * from __frame")  # table names are ours, not data
    finally:
        con.unregister("__frame")


def raw_dir(con: duckdb.DuckDBPyConnection) -> Path:
    """The raw store of the warehouse open on ``con``: the folder ``raw`` beside its file (the same for a
    run's work copy, which lies in the same folder)."""
    path = con.execute("select path from duckdb_databases() where database_name = current_database()").fetchone()
    if path is None or not path[0]:
        msg = "the warehouse must be a file (its raw store lies beside it), not an in-memory database"
        raise ValueError(msg)
    return Path(path[0]).resolve().parent / RAW_DIR


def _store_raw(rows: pl.DataFrame | Path, folder: Path, sha256: str) -> str:
    """Write one file's parsed rows as ``<sha256>.parquet`` in the raw store, atomically (a temporary name,
    then a rename); a Parquet file from the parse task is moved there when it can be. Returns the name."""
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        msg = f"not a sha256: {sha256!r}"
        raise ValueError(msg)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{sha256}.parquet"
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    if isinstance(rows, Path):
        _move(rows, tmp)
    else:
        write_raw_parquet(rows, tmp)
    os.replace(tmp, folder / name)
    return name


def write_raw_parquet(rows: pl.DataFrame, path: Path | str) -> None:
    """Write parsed rows (schema.MEASUREMENT) as the raw store keeps them. A text column with one value in
    every row (file name, hash, platform, often panel and unit, or nulls only) is written as a one-value
    Enum: Parquet then stores one dictionary entry instead of hashing every row, several times faster;
    readers (DuckDB, the view) see text as before.

    The rows are kept in the order of their raw analyte name, then of their lines (``line_number`` gives the
    export's own order), in row groups of RAW_ROW_GROUP rows: a normalisation part, which needs a few
    analytes of every file, then reads only the row groups whose names can hold its own (Parquet's min/max
    statistics, :func:`read_raw_part`), not the whole store."""
    rows = schema.conform(rows, schema.MEASUREMENT, categorical_text=True)  # dictionary-coded text stays so
    text = [name for name, dtype in rows.schema.items() if dtype == pl.String]
    constant = [  # a column of nulls only (no well, no QC note) the same way: a third of the time
        pl.lit(value, dtype=pl.Enum(["" if value is None else value])).alias(name)
        for name, value in schema.constant_columns(rows, text).items()
    ]
    storage.write_parquet(
        _in_name_order(rows.with_columns(constant)),  # one value per column: nothing to reorder there
        path,
        compression=RAW_COMPRESSION,
        compression_level=RAW_LEVEL,
        row_group_size=RAW_ROW_GROUP,
    )


def _in_name_order(rows: pl.DataFrame) -> pl.DataFrame:
    """``rows`` by analyte_raw (nulls last), each name's rows in their order: the rank of each row's name among
    the few distinct names, then numpy's stable sort of those small integers (a radix sort). polars' own
    stable sort by the text took 5.1 core-seconds for a 20-million-row Olink Explore HT file, this 0.9."""
    names = rows.get_column("analyte_raw")
    if names.is_sorted(nulls_last=True):  # an export in name order already is kept as it is
        return rows
    distinct = names.unique().sort(nulls_last=True)
    rank_type = pl.UInt16 if distinct.len() <= 2**16 else pl.UInt32
    ranks = pl.DataFrame({"analyte_raw": distinct, "__rank": pl.int_range(distinct.len(), dtype=rank_type, eager=True)})
    of_row = rows.select("analyte_raw").join(
        ranks, on="analyte_raw", how="left", nulls_equal=True, maintain_order="left"
    )
    return rows[np.argsort(of_row.get_column("__rank").to_numpy(), kind="stable")]


RAW_COMPRESSION: Literal["zstd"] = "zstd"  # raw files are kept for good
RAW_LEVEL = 1  # zstd's fastest level: 10 M Olink rows in 120 MB instead of 97 MB at level 3, in 2/3 of the time
#: Rows per row group of a raw file: a 270,000-row Olink plate file in 17 groups of about 180 analytes each
#: (its size within 1 % of one group per 135,000 rows).
RAW_ROW_GROUP = 16_384


@contextmanager
def _transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """One DuckDB transaction around the block: committed when it ends, rolled back when it raises."""
    con.execute("begin")
    try:
        yield
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise


def _move(source: Path | str, target: Path) -> None:
    """Move a file the run wrote (a parse or part task's Parquet) to ``target``: a rename on the same file
    system, else a copy."""
    try:
        os.replace(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _define_parquet_view(
    con: duckdb.DuckDBPyConnection,
    view: str,
    files: list[Path],
    columns: dict[str, pl.DataType],
    *,
    temp: bool = False,
) -> None:
    """(Re)define ``view`` as the rows of ``files`` (Parquet, read in this order) with ``columns`` typed as
    given; a file written before a column was added gives it typed nulls. No file: an empty view with the
    same columns. The definition's digest is kept as the view's comment, so an unchanged view costs no
    catalog write (the case on most connections). ``temp``: on a read-only connection, a view that differs
    is defined as a temporary view of the connection instead, which the warehouse's own views then read."""
    names = ", ".join(f'"{c}"' for c in columns)
    typed = ", ".join(f'cast(null as {_SQL_TYPES[type(t)]}) as "{c}"' for c, t in columns.items())
    if files:
        paths = ", ".join(_sql_text(str(f)) for f in files)
        body = (
            f"select {names} from (select {typed} where false "
            f"union all by name select * from read_parquet([{paths}], union_by_name = true))"
        )
    else:
        body = f"select {typed} where false"
    digest = hashlib.sha256(body.encode()).hexdigest()
    comments = con.execute(  # every row fetched: a result left open blocks the connection's next query
        "select comment from duckdb_views() where database_name = current_database() and schema_name = 'main' "
        "and view_name = ?",
        [view],
    ).fetchall()
    if comments and comments[0][0] == digest:
        return
    if temp:
        con.execute(f"create or replace temp view {view} as {body}")
        return
    con.execute(f"create or replace view {view} as {body}")  # view names are ours, not data
    con.execute(f"comment on view {view} is '{digest}'")  # hex: safe to inline


class RawStoreDamagedError(RuntimeError):
    """A loaded file's rows are missing from the raw store; the message names them and says what to do."""


def check_raw_store(con: duckdb.DuckDBPyConnection) -> None:
    """Raise RawStoreDamagedError when a file the ledger lists as loaded has no raw file in the store (the
    folder ``raw/`` cleaned or restored without the warehouse file): the view over it, and every run, stopped
    in DuckDB's IOException with a traceback naming the run's private copy. The message names each missing
    file, the export whose rows it held and where the archive keeps that export."""
    folder = raw_dir(con)
    try:
        listed = con.execute(
            f"select raw_file, file_name, archive_path {WITH_RAW_FILE} order by ingested_at, sha256"
        ).fetchall()
    except duckdb.Error:  # a warehouse from before the raw store: nothing listed yet (ensure_raw_store moves it)
        return
    missing = [(name, source, archive) for name, source, archive in listed if not (folder / name).is_file()]
    if not missing:
        return
    shown = "; ".join(
        f"{folder / name} (the rows of {source}{'' if archive is None else f', archived as {archive}'})"
        for name, source, archive in missing[:3]
    )
    more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
    msg = (
        f"the raw store lacks {len(missing)} of the {len(listed)} loaded files' rows: {shown}{more}; the run "
        f"changed nothing. Restore {folder} from the backup taken with the warehouse file (they belong together: "
        "docs/warehouse.md, Raw store)"
    )
    raise RawStoreDamagedError(msg)


def check_raw_store_of(path: Path) -> None:
    """:func:`check_raw_store` of the warehouse file at ``path``, opened read-only. A file that another process
    holds open for writing (an analyst's read-write DuckDB session: DuckDB's file lock) is not checked here;
    a run works on a copy of it all the same."""
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error:
        return
    try:
        check_raw_store(con)
    finally:
        con.close()


def raw_files(con: duckdb.DuckDBPyConnection) -> list[Path]:
    """The raw files of the loaded files the ledger lists, in the order they were ingested."""
    folder = raw_dir(con)
    return [folder / r[0] for r in con.execute(RAW_FILES).fetchall()]


def refresh_raw_view(con: duckdb.DuckDBPyConnection) -> None:
    """(Re)define ``raw_measurements`` as the raw files of the loaded files the ledger lists, in the order they
    were ingested. Runs inside the caller's transaction: the view changes with the ledger or not at all."""
    _define_parquet_view(con, "raw_measurements", raw_files(con), schema.MEASUREMENT)


def point_views_here(con: duckdb.DuckDBPyConnection) -> None:
    """On a read-only connection to a warehouse whose folder was moved (restored elsewhere from a backup, a
    disk mounted at a new place) since a run last defined its views: the views over the raw and normalised
    stores name the files where they were, and every query of them failed until the next run re-pointed
    them. Defines the two as temporary views of this connection over the stores beside the warehouse now, so
    that they and every view built on them read the files here (nothing when they point here already, or the
    warehouse predates the stores)."""
    kinds = dict(
        con.execute(
            "select table_name, table_type from information_schema.tables where table_catalog = current_database() "
            "and table_schema = 'main' and table_name in ('raw_measurements', 'measurements_normalised')"
        ).fetchall()
    )
    if kinds.get("raw_measurements") != "VIEW" or kinds.get("measurements_normalised") != "VIEW":
        return
    _define_parquet_view(con, "raw_measurements", raw_files(con), schema.MEASUREMENT, temp=True)
    _define_parquet_view(con, "measurements_normalised", normalised_files(con), NORMALISED_STORE, temp=True)


#: The ledger's loaded files that have a raw file: the view lists them in the order they were ingested.
WITH_RAW_FILE = "from files where status = 'loaded' and raw_file is not null"
RAW_FILES = f"select raw_file {WITH_RAW_FILE} order by ingested_at, sha256"
_SQL_TYPES = {pl.String: "varchar", pl.Int64: "bigint", pl.Float64: "double", pl.Date: "date"}


def ensure_raw_store(con: duckdb.DuckDBPyConnection) -> int:
    """Move a warehouse whose raw rows are still a table (before the raw store) to the raw store: one
    Parquet file per loaded file, then the view. Also re-points the view when the warehouse folder moved.
    Returns the number of files written (0 when there was nothing to move)."""
    kind = con.execute(
        "select table_type from information_schema.tables where table_schema = 'main' "
        "and table_name = 'raw_measurements'"
    ).fetchone()
    written = 0
    with _transaction(con):
        if kind is not None and kind[0] == "BASE TABLE":
            folder = raw_dir(con)
            for (sha,) in con.execute(
                "select distinct r.source_sha256 from raw_measurements r join files f "
                "on f.sha256 = r.source_sha256 and f.status = 'loaded' order by 1"
            ).fetchall():
                rows = schema.conform(
                    con.sql("select * from raw_measurements where source_sha256 = ?", params=[sha]).pl(),
                    schema.MEASUREMENT,
                )
                name = _store_raw(rows, folder, sha)
                con.execute("update files set raw_file = ? where sha256 = ?", [name, sha])
                written += 1
            con.execute("drop table raw_measurements")
        refresh_raw_view(con)
    return written


#: The columns of ``measurements_normalised``: a run's normalised rows, with the run that built them.
NORMALISED_STORE: dict[str, pl.DataType] = {**schema.NORMALISED, "run_id": pl.String()}
NORMALISED_FILES = "select file from normalised_parts order by part"


def normalised_dir(con: duckdb.DuckDBPyConnection) -> Path:
    """The normalised store of the warehouse open on ``con``: the folder ``normalised`` beside its file."""
    return raw_dir(con).parent / NORMALISED_DIR


def normalised_files(con: duckdb.DuckDBPyConnection) -> list[Path]:
    """The Parquet files of the current normalised measurements, in part order."""
    folder = normalised_dir(con)
    return [folder / r[0] for r in con.execute(NORMALISED_FILES).fetchall()]


def refresh_normalised_view(con: duckdb.DuckDBPyConnection) -> None:
    """(Re)define ``measurements_normalised`` as the files ``normalised_parts`` lists, in part order."""
    _define_parquet_view(con, "measurements_normalised", normalised_files(con), NORMALISED_STORE)


def ensure_normalised_store(con: duckdb.DuckDBPyConnection) -> bool:
    """Move a warehouse whose normalised measurements are still a table to the normalised store: its rows,
    in their order, become one Parquet file of a generation named after the run that built them, and the
    table becomes a view over it. Also re-points the view when the warehouse folder moved. Returns whether
    rows were moved."""
    kind = con.execute(
        "select table_type from information_schema.tables where table_schema = 'main' "
        "and table_name = 'measurements_normalised'"
    ).fetchone()
    moved = False
    with _transaction(con):
        if kind is not None and kind[0] == "BASE TABLE":
            built_by = [r[0] for r in con.execute("select distinct run_id from measurements_normalised").fetchall()]
            if built_by:
                generation = built_by[0] if len(built_by) == 1 else "migrated"
                _check_generation(generation)
                target = normalised_dir(con) / generation / "part-00000.parquet"
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
                con.execute(f"copy (select * from measurements_normalised) to {_sql_text(str(tmp))} (format parquet)")
                os.replace(tmp, target)
                con.execute("delete from normalised_parts")
                con.execute(
                    "insert into normalised_parts values (0, ?, ?)", [f"{generation}/{target.name}", generation]
                )
                moved = True
            con.execute("drop table measurements_normalised")
        refresh_normalised_view(con)
    return moved


def _check_generation(name: str) -> None:
    if not re.fullmatch(r"[0-9A-Za-z][0-9A-Za-z_.-]*", name):
        msg = f"not a run id usable as a folder name: {name!r}"
        raise ValueError(msg)


def normalised_generations(con: duckdb.DuckDBPyConnection) -> set[str]:
    """The generations (folders of the normalised store) the warehouse on ``con`` reads."""
    return {r[0] for r in con.execute("select distinct run_id from normalised_parts").fetchall()}


def prune_normalised(folder: Path, *, keep: set[str]) -> list[str]:
    """Remove the generations of the normalised store in ``folder`` (the warehouse's folder) other than
    ``keep``: those of runs that rebuilt them since, and those of runs killed before their swap. The caller
    keeps the generation the warehouse reads and the one it read before the run, which analysts' sessions
    opened before the swap still read. Returns the names removed."""
    store = folder / NORMALISED_DIR
    removed = []
    if store.is_dir():
        for path in sorted(store.iterdir()):
            if path.is_dir() and path.name not in keep:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
    return removed


#: The statuses of the ledger's files (table ``files``), as `refranges files list --status` takes them.
FILE_STATUSES = ("loaded", "quarantined", "replaced", "retracted")
#: What `refranges files list` shows of each file, in this order.
LEDGER_COLUMNS = (
    "file_name",
    "status",
    "layout",
    "rows_read",
    "rows_loaded",
    "rows_quarantined",
    "ingested_at",
    "run_id",
    "sha256",
    "reason",
    "archive_path",
    "replaced_by",
)


def ledger_files(con: duckdb.DuckDBPyConnection, status: str | None = None) -> duckdb.DuckDBPyRelation:
    """The ledger's files (LEDGER_COLUMNS), by name and then by when they were ingested; only those of
    ``status`` (one of FILE_STATUSES) when given. A relation, so that a caller can write it in batches."""
    if status is not None and status not in FILE_STATUSES:
        raise ValueError(f"status must be one of {', '.join(FILE_STATUSES)}, not {status!r}")
    where = f"where status = '{status}'" if status else ""  # one of FILE_STATUSES: never the user's text
    return con.sql(f"select {', '.join(LEDGER_COLUMNS)} from files {where} order by file_name, ingested_at, sha256")


def loaded_versions(con: duckdb.DuckDBPyConnection, file_name: str, *, besides: str = "") -> list[str]:
    """The sha256 of the loaded files named ``file_name`` (other than ``besides``)."""
    query = "select sha256 from files where file_name = ? and sha256 <> ? and status = 'loaded'"
    return [r[0] for r in con.execute(query, [file_name, besides]).fetchall()]


def samples_listed_elsewhere(con: duckdb.DuckDBPyConnection, samples: pl.DataFrame, file_name: str) -> pl.DataFrame:
    """The loaded samples (schema.SAMPLE) of manifests other than ``file_name`` that share a sample id or a
    subject with ``samples``: what a new manifest must agree with (an earlier version of ``file_name`` is
    replaced, not compared)."""
    con.register("__new", samples.select("sample_id", "subject_key").to_arrow())
    try:
        rows = con.sql(
            "select s.* from samples s where (s.sample_id in (select sample_id from __new) "
            "or s.subject_key in (select subject_key from __new)) and s.source_sha256 not in "
            "(select sha256 from files where file_name = ? and status = 'loaded') "
            "order by s.source_file, s.line_number",
            params=[file_name],
        ).pl()
    finally:
        con.unregister("__new")
    return schema.conform(rows, schema.SAMPLE)


def load_file(
    con: duckdb.DuckDBPyConnection,
    entry: LedgerEntry,
    *,
    rows: pl.DataFrame | Path | None = None,
    quarantine: pl.DataFrame | None = None,
    samples: pl.DataFrame | None = None,
    handling: pl.DataFrame | None = None,
    defer_view: bool = False,
) -> list[str]:
    """Load one file: its parsed rows go to the raw store (``raw/<sha256>.parquet`` beside the warehouse,
    see :func:`raw_dir`), its quarantine records, samples and ledger entry into the warehouse in one
    transaction, which also re-points the ``raw_measurements`` view. ``rows`` may be a Parquet file in
    schema.MEASUREMENT (as the parse task writes it): it is moved into the store (the caller's path is
    gone afterwards), not read.

    The raw file is written before the transaction, under a name only the ledger entry makes visible; if
    the transaction fails the file is removed again. A failure leaves the warehouse as it was (a process
    killed in between leaves at most an unlisted file in the store, which the next load of the same content
    overwrites). A loaded file with the same name and different content
    is marked replaced: the ledger, the archive and its raw file keep its history, the view no longer
    shows its rows. A new version that is quarantined whole replaces nothing: the loaded version stays in
    use. (Versions of the name quarantined whole before it loaded are superseded after the run's loads:
    :func:`superseded_quarantines`.) Returns the sha256 of files it replaced.

    ``defer_view``: leave the view as it is; the caller re-points it once after a batch of loads
    (:func:`ensure_raw_store`). Re-pointing reads the footer of every listed file, so doing it per load costs
    the square of the number of files (a run's loads go to its private copy: nobody sees the view between).
    """
    raw_file = None
    if isinstance(rows, Path) or (rows is not None and rows.height):
        raw_file = _store_raw(rows, raw_dir(con), entry.sha256)
    try:
        with _transaction(con):
            # a file quarantined whole before, read again under new settings or code: its new outcome replaces
            # the old one (its reason and held rows), loaded or quarantined again
            con.execute(
                "delete from quarantine_rows where source_sha256 = ? and source_sha256 in "
                "(select sha256 from files where status = 'quarantined')",
                [entry.sha256],
            )
            con.execute("delete from files where sha256 = ? and status = 'quarantined'", [entry.sha256])
            replaced = loaded_versions(con, entry.file_name, besides=entry.sha256) if entry.status == "loaded" else []
            for old in replaced:
                _take_out_of_use(con, old, "replaced", "a newer file with the same name replaced it", entry.sha256)
            if quarantine is not None:
                _insert(con, "quarantine_rows", schema.conform(quarantine, schema.QUARANTINE))
            if samples is not None and samples.height:
                con.register("__ids", samples.select("sample_id").to_arrow())
                con.execute("delete from samples where sample_id in (select sample_id from __ids)")
                con.unregister("__ids")
                _insert(con, "samples", schema.conform(samples, schema.SAMPLE))
            if handling is not None and handling.height:
                _insert(con, "sample_handling", handling.with_columns(pl.lit(entry.sha256).alias("source_sha256")))
            info = entry.info or {}
            con.execute(
                "insert into files (sha256, file_name, layout, size_bytes, rows_read, rows_loaded, "
                "rows_quarantined, status, reason, archive_path, run_id, ingested_at, raw_file, product, "
                "data_file_type, software_version, data_analysis_ref_id, file_info_json, decided_under) "
                "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    entry.sha256,
                    entry.file_name,
                    entry.layout,
                    entry.size_bytes,
                    entry.rows_read,
                    entry.rows_loaded,
                    entry.rows_quarantined,
                    entry.status,
                    entry.reason,
                    entry.archive_path,
                    entry.run_id,
                    now(),
                    raw_file,
                    *(None if info.get(k) is None else str(info[k]) for k in FILE_INFO_COLUMNS),
                    json.dumps(info, sort_keys=True, default=str) if info else None,
                    entry.decided_under if entry.status == "quarantined" else None,
                ],
            )
            if (raw_file is not None or replaced) and not defer_view:
                refresh_raw_view(con)
    except Exception:
        if raw_file is not None:  # no ledger entry ever named it (known contents are never loaded again)
            (raw_dir(con) / raw_file).unlink(missing_ok=True)
        raise
    return replaced


@dataclass(frozen=True)
class Retracted:
    """What :func:`retract_file` took out: the sha256 of the version, and the status it had."""

    sha256: str
    was: str  # loaded | quarantined
    archive_path: str | None  # where it was archived, as the ledger recorded it


def retract_file(con: duckdb.DuckDBPyConnection, file_name: str, reason: str) -> Retracted:
    """Take the loaded file ``file_name`` out of use by hand (a delivery that was not this study's, a file
    that must leave every reference): as a replaced file, its held rows, samples and sample handling leave
    the warehouse and the view no longer shows its rows; the ledger (status ``retracted``, with ``reason``),
    the archive and its raw file keep it. Its content stays known, so no run loads it again until
    :func:`restore_file`. The next run rebuilds normalisation and publishes a release without it.

    A name with no loaded version but versions quarantined whole (a stray file, an export the lab will not
    send again) has those closed the same way: they leave the open problems (the ``quarantine`` view,
    ``refranges status``), which nothing else closed but a corrected export of the same name. Raises
    LookupError when no loaded or quarantined file has that name."""
    loaded = loaded_versions(con, file_name)
    was = "loaded"
    if not loaded:
        query = "select sha256 from files where file_name = ? and status = 'quarantined' order by ingested_at desc"
        loaded, was = [r[0] for r in con.execute(query, [file_name]).fetchall()], "quarantined"
    if not loaded:
        msg = (
            f"no loaded or quarantined file is named {file_name}: a file goes by its path below the landing "
            "folder (`refranges files list --status loaded` or `--status quarantined` lists them)"
        )
        raise LookupError(msg)
    with _transaction(con):
        for sha in loaded:
            _take_out_of_use(con, sha, "retracted", reason)
        refresh_raw_view(con)
    archived = con.execute("select archive_path from files where sha256 = ?", [loaded[0]]).fetchall()
    return Retracted(loaded[0], was, archived[0][0])


def superseded_quarantines(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str]]:
    """(sha256, file name, sha256 of the loaded version) of the files quarantined whole before a version of
    the same name loaded (the lab's corrected export): their problems are fixed, yet the ``quarantine`` view
    would list them as open (:func:`supersede_quarantined`). A version quarantined after the loaded one is a
    problem still open, and is not listed."""
    rows = con.execute(
        "select q.sha256, q.file_name, l.sha256 from files q join files l on q.file_name = l.file_name "
        "where q.status = 'quarantined' and l.status = 'loaded' and q.ingested_at < l.ingested_at "
        "order by q.file_name, q.ingested_at"
    ).fetchall()
    return [(q, name, by) for q, name, by in rows]


def unarchived_quarantines(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """(sha256, file name) of the files quarantined whole whose bytes no archive holds: those refranges
    quarantined before it archived quarantined files (and files never read, such as a link out of the landing
    folder). Their one copy is the quarantine folder's, which the next quarantined version of the name
    overwrites: only the latest quarantined version of each name is listed (the folder holds no other)."""
    rows = con.execute(
        "select f.sha256, f.file_name from files f where f.status = 'quarantined' and f.archive_path is null "
        "and not exists (select 1 from files g where g.file_name = f.file_name and g.status = 'quarantined' "
        "and g.ingested_at > f.ingested_at) order by f.file_name"
    ).fetchall()
    return [(sha, name) for sha, name in rows]


def set_archive_path(con: duckdb.DuckDBPyConnection, sha256: str, archive_path: str) -> None:
    """Record where the bytes of the file ``sha256`` were archived."""
    with _transaction(con):
        con.execute("update files set archive_path = ? where sha256 = ?", [archive_path, sha256])


def supersede_quarantined(con: duckdb.DuckDBPyConnection, old: str, by: str, archive_path: str | None = None) -> None:
    """The version ``old``, quarantined whole, is superseded by ``by``, a loaded file of its name (see
    :func:`superseded_quarantines`), in one transaction: it becomes ``replaced`` (its quarantine reason kept)
    and its held rows leave the warehouse; ``archive_path``: where its bytes were archived, if they were."""
    with _transaction(con):
        held = con.execute("select reason from files where sha256 = ?", [old]).fetchall()[0][0]
        why = f"a newer file with the same name was loaded in its place; it had been quarantined: {held}"
        _take_out_of_use(con, old, "replaced", why, by)
        if archive_path is not None:
            con.execute("update files set archive_path = ? where sha256 = ?", [archive_path, old])


def _take_out_of_use(
    con: duckdb.DuckDBPyConnection, sha: str, status: str, reason: str, replaced_by: str | None = None
) -> None:
    """A loaded file's held rows, samples and sample handling leave the warehouse, and its ledger row takes
    ``status`` and ``reason`` (replaced, retracted); the caller re-points the raw view, in its transaction."""
    for table in ("quarantine_rows", "samples", "sample_handling"):
        con.execute(f"delete from {table} where source_sha256 = ?", [sha])
    con.execute(
        "update files set status = ?, reason = ?, replaced_by = ? where sha256 = ?", [status, reason, replaced_by, sha]
    )


#: The shortest content-hash prefix `files restore --sha` takes (as `files list` shows 12 characters).
MIN_SHA_PREFIX = 6


@dataclass(frozen=True)
class Restored:
    """A version :func:`restore_file` took back: its sha256 and archive path, and the status it had."""

    sha256: str
    archive_path: str | None
    was: str


def restore_file(con: duckdb.DuckDBPyConnection, file_name: str, sha_prefix: str | None = None) -> Restored:
    """Take a version of ``file_name`` back into use: its ledger row is removed, so that the next run reads
    its content again and loads it as new (rows, samples and held rows from the file itself). Without
    ``sha_prefix``, the last retracted version (undoing :func:`retract_file`); with it, the retracted or
    replaced version whose sha256 begins so (going back to an earlier export, after retracting the one that
    replaced it). The caller puts the archived copy back where the run reads it. Raises LookupError when
    another version of the name is loaded (restoring would replace it), and when no version, or more than
    one, matches."""
    if loaded_versions(con, file_name):
        msg = (
            f"a version of {file_name} is loaded: restoring another would replace it; "
            f"`refranges files retract {file_name}` it first"
        )
        raise LookupError(msg)
    if sha_prefix is not None:
        prefix = sha_prefix.strip().lower()
        if len(prefix) < MIN_SHA_PREFIX or not re.fullmatch(r"[0-9a-f]+", prefix):
            msg = (
                f"--sha takes at least {MIN_SHA_PREFIX} hexadecimal characters of the content hash, not {sha_prefix!r}"
            )
            raise LookupError(msg)
        query = (
            "select sha256, archive_path, status from files where file_name = ? and status in ('retracted', "
            "'replaced') and starts_with(sha256, ?) order by ingested_at desc"
        )
        rows = con.execute(query, [file_name, prefix]).fetchall()
        if len(rows) > 1:
            raise LookupError(f"{len(rows)} versions of {file_name} begin with {prefix}: give more of the hash")
    else:
        query = (
            "select sha256, archive_path, status from files where file_name = ? and status = 'retracted' "
            "order by ingested_at desc limit 1"
        )
        rows = con.execute(query, [file_name]).fetchall()
    if not rows:
        earlier = con.execute(
            "select sha256 from files where file_name = ? and status in ('retracted', 'replaced') "
            "order by ingested_at desc",
            [file_name],
        ).fetchall()
        what = (
            f"no retracted or replaced version of {file_name} begins with {prefix}"
            if sha_prefix
            else (f"no retracted file is named {file_name}")
        )
        if earlier:
            hashes = ", ".join(r[0][:12] for r in earlier)
            what += f"; its versions out of use: {hashes} (`refranges files restore {file_name} --sha HASH`)"
        raise LookupError(what)
    sha, archive, was = rows[0]
    with _transaction(con):
        con.execute("delete from files where sha256 = ?", [sha])
    return Restored(sha, archive, was)


LOADED_RAW = "raw_measurements r"  # the view lists the raw files of loaded files only
#: Raw rows that are analytes: Olink's internal control assays stay in the raw store for QC only.
ANALYTE_ROWS = "(r.assay_type is null or r.assay_type in ('" + "', '".join(schema.ANALYTE_ASSAY_TYPES) + "'))"


def read_raw(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Raw rows of every currently loaded file."""
    return schema.conform(con.sql(f"select r.* from {LOADED_RAW}").pl(), schema.MEASUREMENT)


def raw_names(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """platform, panel, analyte_raw, uniprot_raw and n (rows) of every currently loaded file: what partitions
    are planned on."""
    return con.sql(
        f"select r.platform, r.panel, r.analyte_raw, r.uniprot_raw, count(*) as n from {LOADED_RAW} "
        f"where {ANALYTE_ROWS} group by all order by all"
    ).pl()


IN_STUDY = "m.cohort in ('healthy', 'patient')"  # rows of `measurements m` that reference and comparisons use


#: Raw columns normalisation never reads (the well, run date and unit note, and what Olink Explore files
#: carry for QC and rebuilds: assay id and type, block, counts, ExtNPX, PCNormalizedNPX, normalization). They
#: stay in the raw store; a part does not read them (FOR_NORMALISATION).
NOT_FOR_NORMALISATION = (
    "well",
    "run_date",
    "unit_note",
    "assay_id",
    "assay_type",
    "block",
    "read_count",
    "ext_npx",
    "pc_normalized_npx",
    "normalization",
)
#: The raw columns a normalisation part reads (:func:`read_raw_part`).
FOR_NORMALISATION: dict[str, pl.DataType] = {
    c: t for c, t in schema.MEASUREMENT.items() if c not in NOT_FOR_NORMALISATION
}


def loaded_raw_files(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The raw store's files of the loaded files, in the order of their content's sha256 (``source_sha256``
    of their rows): :func:`read_raw_part` then gives a part's rows in (source_sha256, line_number) order."""
    folder = raw_dir(con)
    return [str(folder / r[0]) for r in con.execute(f"select raw_file {WITH_RAW_FILE} order by sha256").fetchall()]


def read_raw_part(files: Sequence[str], keys: pl.DataFrame) -> pl.DataFrame:
    """The loaded raw rows of one normalisation part: the analyte rows (ANALYTE_ROWS) of ``files`` (raw store
    files, :func:`loaded_raw_files`) whose platform, panel and analyte_raw are a row of ``keys``, in the
    columns of FOR_NORMALISATION (without NOT_FOR_NORMALISATION: every copy a part makes of its frame would
    copy them too). The rows are in the order of ``files``, each file's in line order (the rows of one line,
    a wide export's analytes, in name order).

    Read with polars, column-projected, straight from the raw store (no copy of the rows for the parts): a raw
    file keeps its rows in analyte-name order (:func:`write_raw_parquet`), so the range of the part's names
    skips the row groups that cannot hold them by their statistics, and a file written before that is read
    whole and filtered the same way. Each file is its own scan: its one-value text columns are Enums of their
    own values (cast to text here), and a file written before a column existed lacks it (null here)."""
    keys = keys.select("platform", "panel", "analyte_raw").drop_nulls("analyte_raw").unique()
    if not files or keys.is_empty():
        return pl.DataFrame(schema=FOR_NORMALISATION)
    # per platform and panel, its names: a name can be another platform's too, in another part
    name, wanted_rows = pl.col("analyte_raw").cast(pl.String), pl.lit(False)
    for platform, panel, names in keys.group_by("platform", "panel").agg(pl.col("analyte_raw").sort()).iter_rows():
        of = _is(pl.col("platform"), platform) & _is(pl.col("panel"), panel)
        listed = pl.Series(names, dtype=pl.String).implode()
        wanted_rows |= of & name.is_between(pl.lit(names[0]), pl.lit(names[-1])) & name.is_in(listed)
    scans = []
    for path in files:
        scan = pl.scan_parquet(path, hive_partitioning=False)
        present = scan.collect_schema()
        keep = wanted_rows
        if "assay_type" in present:  # Olink's internal control assays stay in the raw store
            assay = pl.col("assay_type").cast(pl.String)
            keep &= assay.is_null() | assay.is_in(schema.ANALYTE_ASSAY_TYPES)
        scans.append(
            scan.filter(keep)
            .select([c for c in FOR_NORMALISATION if c in present])
            .with_columns(pl.col(pl.Categorical, pl.Enum).cast(pl.String))
            # the file's own order again (files come in hash order): the normalised store then keeps the rows of
            # an export listed sample by sample in that order, which makes the reference parts' sort by sample
            # cheap (without this sort: 0.48 instead of 0.84 s a part here, 0.68 instead of 0.2 s there)
            .sort("line_number", maintain_order=True)
        )
    return schema.conform(pl.concat(scans, how="diagonal").collect(), FOR_NORMALISATION)


def _is(column: pl.Expr, value: str | None) -> pl.Expr:
    """``column`` (text, dictionary-coded or not) equals ``value``; None matches nulls (DuckDB's ``is not
    distinct from``)."""
    return column.is_null() if value is None else column.cast(pl.String).eq(value).fill_null(False)


def reference_sizes(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """analyte, file and n: the normalised measurements of healthy and patient samples per analyte and per
    file of the normalised store, which the reference stage reads (transforms.partitions.plan_reference)."""
    files = normalised_files(con)
    if not files:
        return pl.DataFrame(schema={"analyte": pl.String, "file": pl.String, "n": pl.Int64})
    return con.sql(
        "select n.analyte, n.filename as file, count(*) as n "
        f"from read_parquet(?, filename = true) n join samples m using (sample_id) where {IN_STUDY} group by all",
        params=[[str(f) for f in files]],
    ).pl()


#: What the reference stage reads of a normalised row (the `measurements` view adds STUDY_SAMPLE_FIELDS).
FOR_REFERENCE = (
    "sample_id",
    "platform",
    "panel",
    "analyte",
    "uniprot",
    "value",
    "unit",
    "log_value",
    "censoring",
    "limit_value",
    "lod",
    "replicate_cv",
)
#: The fields of a study sample the reference stage reads: the manifest's, and the sample's handling fields
#: (Olink Explore HT OSI columns), which cohort comparisons may adjust for.
STUDY_SAMPLE_FIELDS = (
    "subject_key",
    "cohort",
    "matrix",
    "sex",
    "age",
    "severity",
    "illness_duration_years",
    "collection_date",
    *HANDLING_FIELDS,
)


def study_samples(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """sample_id and STUDY_SAMPLE_FIELDS of every healthy and patient sample, in sample-id order."""
    fields = ", ".join(f"any_value({c}) as {c}" for c in HANDLING_FIELDS)
    handling = f"(select sample_id, {fields} from sample_handling group by sample_id) h"
    return con.sql(
        f"select sample_id, {', '.join(STUDY_SAMPLE_FIELDS)} from samples m left join {handling} using (sample_id) "
        f"where {IN_STUDY} order by sample_id"
    ).pl()


def held_manifest_samples(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """(sample_id, reason) of the samples whose row in a manifest is held back (a date to write as ISO, a
    sex another manifest contradicts), one reason each: their measurements are not "in no manifest"."""
    return con.sql(
        "select q.sample_id, min(q.reason) as reason from quarantine q join files f on f.sha256 = q.source_sha256 "
        "where f.layout = 'manifest' and q.sample_id is not null group by q.sample_id order by q.sample_id"
    ).pl()


def read_samples(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    return schema.conform(con.sql("select * from samples").pl(), schema.SAMPLE)


def derived_fingerprint(con: duckdb.DuckDBPyConnection, stage: str) -> str | None:
    """The input fingerprint the ``stage``'s tables were last built from (table derived_state), or None."""
    rows = con.execute("select input_fingerprint from derived_state where stage = ?", [stage]).fetchall()
    return str(rows[0][0]) if rows else None


def replace_derived(
    con: duckdb.DuckDBPyConnection,
    *,
    normalised: list[str],
    held: list[str],
    run_id: str,
    fingerprint: str | None = None,
    anchors: list[str] | None = None,
) -> None:
    """Swap in this run's normalised measurements, link/normalise holds and plate-control anchors, in one
    transaction. ``normalised``, ``held`` and ``anchors`` are Parquet files (one per part of the run). The
    normalised files (schema NORMALISED_STORE) are moved into the normalised store as generation ``run_id``
    (``normalised/<run_id>/part-<k>.parquet``) and ``measurements_normalised`` becomes a view over them; the
    holds and anchors are read into their tables inside DuckDB. ``fingerprint`` (of the inputs they were
    built from) is recorded in derived_state in the same transaction. If the transaction fails, the
    generation's folder is removed again: no warehouse names it."""
    _check_generation(run_id)
    generation = normalised_dir(con) / run_id
    generation.mkdir(parents=True, exist_ok=True)
    names = []
    for k, path in enumerate(normalised):
        name = f"part-{k:05d}.parquet"
        _move(path, generation / name)
        names.append(f"{run_id}/{name}")
    try:
        with _transaction(con):
            con.execute("delete from normalised_parts")
            if names:
                con.executemany(
                    "insert into normalised_parts values (?, ?, ?)", [[k, n, run_id] for k, n in enumerate(names)]
                )
            refresh_normalised_view(con)
            con.execute("delete from held_rows")
            con.execute("delete from normalisation_anchors")
            tables = {"held_rows": held, "normalisation_anchors": anchors or []}
            for table, paths in tables.items():
                if paths:  # one statement over every part: DuckDB reads them in parallel, in order; names are ours
                    con.execute(
                        f"insert into {table} by name select *, ? as run_id from read_parquet(?, union_by_name = true)",
                        [run_id, paths],
                    )
            con.execute("delete from derived_state where stage = 'normalise'")
            if fingerprint is not None:
                con.execute("insert into derived_state values ('normalise', ?, ?, ?)", [fingerprint, run_id, now()])
    except Exception:
        shutil.rmtree(generation, ignore_errors=True)
        raise


def insert_qc_results(con: duckdb.DuckDBPyConnection, results: pl.DataFrame, *, run_id: str) -> None:
    _insert(
        con,
        "qc_results",
        results.with_columns(pl.lit(run_id).alias("run_id"), pl.lit(now()).alias("checked_at")),
    )


def attempt_journal(warehouse: Path) -> Path:
    """The file beside the warehouse that says what the run writing it now, or the last run that failed or was
    killed, is doing or did (:func:`last_attempt`): a run works on a copy swapped in only when it completes, so
    the warehouse itself keeps no trace of a run that did not."""
    return warehouse.with_name(f".{warehouse.name}.last-attempt.json")


def record_attempt(warehouse: Path, run_id: str, *, error: BaseException | None = None) -> None:
    """Write the attempt journal of run ``run_id``: started (no ``error``) or failed with ``error``, atomically.
    A completed run removes it (:func:`clear_attempt`)."""
    import socket

    path = attempt_journal(warehouse)
    entry: dict[str, Any] = {"run_id": run_id, "pid": os.getpid(), "host": socket.gethostname()}
    if (started := process_started(os.getpid())) is not None:
        entry["pid_started"] = started
    if error is None:
        entry |= {"state": "running", "started_at": datetime.now(UTC).isoformat(timespec="seconds")}
    else:
        try:
            entry = json.loads(path.read_text(encoding="utf-8")) | {"state": "failed"}
        except (OSError, ValueError):
            entry |= {"state": "failed"}
        text = " ".join(str(error).split())
        entry |= {"failed_at": datetime.now(UTC).isoformat(timespec="seconds"), "error": type(error).__name__}
        entry["message"] = text[:500]
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(entry) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:  # a full disk: the journal is a courtesy, never a reason to fail
        tmp.unlink(missing_ok=True)


def clear_attempt(warehouse: Path) -> None:
    """The run completed: no attempt is pending or failed any more."""
    attempt_journal(warehouse).unlink(missing_ok=True)


def last_attempt(warehouse: Path) -> dict[str, Any] | None:
    """The attempt journal (:func:`record_attempt`) as `refranges status` tells it: None when the last run
    completed; else the run's id, start, state (``running``, ``failed``, or ``killed`` for a run whose
    process on this machine is gone without a word) and, when it failed, the error."""
    import socket

    try:
        entry = json.loads(attempt_journal(warehouse).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if entry.get("state") == "running" and entry.get("host") == socket.gethostname():
        try:
            os.kill(int(entry.get("pid", 0)), 0)
        except (ProcessLookupError, ValueError):
            entry["state"] = "killed"
        except PermissionError:
            pass  # alive, another user's
        else:  # a process of that id lives: the run's own, unless the id was given to another since
            recorded, now = entry.get("pid_started"), process_started(int(entry["pid"]))
            if recorded is not None and now is not None and recorded != now:
                entry["state"] = "killed"
    return dict(entry)


def process_started(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since the machine's boot (Linux' /proc), so that a process
    id the system gave to another process after the run's was killed is not taken for the run; None where
    /proc is not there (the journal then trusts the process id alone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
        return int(stat.rsplit(")", 1)[1].split()[19])  # field 22; the name in brackets may hold spaces
    except (OSError, ValueError, IndexError):
        return None


def warehouse_status(con: duckdb.DuckDBPyConnection, *, named: int = 5) -> dict[str, Any]:
    """What `refranges status` shows of a warehouse: its last recorded run (its summary as the run left it),
    runs by status, files by status, the files quarantined whole (up to ``named`` names, the newest first)
    and the rows held back by check (the ``quarantine`` view)."""
    last = con.execute(
        "select run_id, started_at, finished_at, status, summary_json from runs order by started_at desc limit 1"
    ).fetchall()
    last_run: dict[str, Any] | None = None
    if last:
        run_id, started, finished, status, summary = last[0]
        last_run = {
            "run_id": run_id,
            "started_at": started,
            "finished_at": finished,
            "status": status,
            "summary": json.loads(summary) if summary else None,
        }
    runs = dict(con.execute("select status, count(*) from runs group by all order by all").fetchall())
    files = dict(con.execute("select status, count(*) from files group by all order by all").fetchall())
    quarantined = [
        r[0]
        for r in con.execute(
            "select file_name from files where status = 'quarantined' order by ingested_at desc, file_name"
        ).fetchall()
    ]
    held = con.execute('select "check", count(*) from quarantine group by all order by 2 desc, 1').fetchall()
    return {
        "last_run": last_run,
        "runs": runs,
        "files": files,
        "quarantined_files": quarantined[:named],
        "quarantined_files_total": len(quarantined),
        "held_by_check": dict(held),
    }


def start_run(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    con.execute("insert into runs values (?, ?, null, 'running', null)", [run_id, now()])


def finish_run(con: duckdb.DuckDBPyConnection, run_id: str, *, status: str, summary: dict[str, object]) -> None:
    con.execute(
        "update runs set finished_at = ?, status = ?, summary_json = ? where run_id = ?",
        [now(), status, json.dumps(summary, default=str), run_id],
    )


def registered_releases(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """(version, path) of every release the warehouse registered, oldest first."""
    return [(v, path) for v, path in con.execute("select version, path from releases order by created_at").fetchall()]


def release_recorded(con: duckdb.DuckDBPyConnection, version: str) -> bool:
    """True when the warehouse holds release ``version`` (record_release committed for it)."""
    return bool(con.execute("select count(*) from releases where version = ?", [version]).fetchall()[0][0])


def record_release(
    con: duckdb.DuckDBPyConnection,
    *,
    version: str,
    created_at: datetime,
    input_fingerprint: str,
    previous_version: str | None,
    path: str,
    intervals: pl.DataFrame,
    quantiles: pl.DataFrame,
    outliers: pl.DataFrame,
    run_id: str,
    comparison: pl.DataFrame | None = None,
    variation: pl.DataFrame | None = None,
    anchors: pl.DataFrame | None = None,
) -> None:
    """Register a published release and its tables (idempotent per version)."""
    with _transaction(con):
        for table in (
            "releases",
            "release_intervals",
            "release_quantiles",
            "release_outliers",
            "release_cohort_comparison",
            "release_retest_variation",
            "release_normalisation_anchors",
        ):
            con.execute(f"delete from {table} where version = ?", [version])
        con.execute(
            "insert into releases values (?, ?, ?, ?, ?, ?, ?)",
            [version, created_at, input_fingerprint, previous_version, path, intervals.height, run_id],
        )
        v = pl.lit(version).alias("version")
        _insert(con, "release_intervals", intervals.with_columns(v))
        _insert(con, "release_quantiles", quantiles.with_columns(v))
        _insert(con, "release_outliers", outliers.with_columns(v))
        if comparison is not None:
            _insert(con, "release_cohort_comparison", comparison.with_columns(v))
        if variation is not None:
            _insert(con, "release_retest_variation", variation.with_columns(v))
        if anchors is not None:
            _insert(con, "release_normalisation_anchors", anchors.with_columns(v))


#: Columns of person_scores that come from a score row (transforms.score.SCORE) as they are.
PERSON_SCORE_COLUMNS = [
    "sample_id",
    "collection_date",
    "analyte",
    "platform",
    "panel",
    "matrix",
    "unit",
    "value",
    "censoring",
    "limit_value",
    "percentile",
    "percentile_value",
    "position",
    "reference_group",
    "change",
    "change_log",
    "rcv_log",
    "change_vs_rcv",
    "batch_method",
    "plate_shift",
    "source_file",
    "status",
]


def record_person_scores(
    con: duckdb.DuckDBPyConnection, results: pl.DataFrame, *, release: str, manifest_sha256: str, key: bytes
) -> int:
    """Append scored results (``transforms.score.SCORE`` rows with ``subject_id``) to person_scores, the
    subject pseudonymised with ``key``; returns the rows written."""
    from transforms.privacy import subject_hash

    keys = {s: subject_hash(str(s), key) for s in results["subject_id"].unique().to_list()}
    rows = results.select(
        pl.lit(now()).alias("scored_at"),
        pl.lit(release).alias("release_version"),
        pl.lit(manifest_sha256).alias("manifest_sha256"),
        pl.col("subject_id").replace_strict(keys, return_dtype=pl.String).alias("subject_key"),
        *PERSON_SCORE_COLUMNS,
    )
    _insert(con, "person_scores", rows)
    return rows.height
