"""Idempotent loads into the warehouse. Every write of one input file is one transaction."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl

from transforms import schema


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


def known_hashes(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in con.execute("select sha256 from files").fetchall()}


def _insert(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> None:
    if frame.height == 0:
        return
    con.register("__frame", frame.to_arrow())
    try:
        con.execute(f"insert into {table} by name select * from __frame")  # table names are ours, not data
    finally:
        con.unregister("__frame")


def load_file(
    con: duckdb.DuckDBPyConnection,
    entry: LedgerEntry,
    *,
    rows: pl.DataFrame | Path | None = None,
    quarantine: pl.DataFrame | None = None,
    samples: pl.DataFrame | None = None,
) -> list[str]:
    """Write one file's rows, quarantine records and ledger entry atomically. ``rows`` may be a Parquet
    file in schema.MEASUREMENT (as the parse task writes it): DuckDB then reads it without Python.

    A loaded file with the same name and different content is marked replaced and its rows are removed
    (the ledger and the archive keep its history). Returns the sha256 of files it replaced.
    """
    con.execute("begin")
    try:
        replaced = [
            r[0]
            for r in con.execute(
                "select sha256 from files where file_name = ? and sha256 <> ? and status = 'loaded'",
                [entry.file_name, entry.sha256],
            ).fetchall()
        ]
        for old in replaced:
            con.execute("delete from raw_measurements where source_sha256 = ?", [old])
            con.execute("delete from quarantine_rows where source_sha256 = ?", [old])
            con.execute("delete from samples where source_sha256 = ?", [old])
            con.execute(
                "update files set status = 'replaced', replaced_by = ?, "
                "reason = 'a newer file with the same name replaced it' where sha256 = ?",
                [entry.sha256, old],
            )
        if isinstance(rows, Path):
            con.execute("insert into raw_measurements by name select * from read_parquet(?)", [str(rows)])
        elif rows is not None:
            _insert(con, "raw_measurements", schema.conform(rows, schema.MEASUREMENT))
        if quarantine is not None:
            _insert(con, "quarantine_rows", schema.conform(quarantine, schema.QUARANTINE))
        if samples is not None and samples.height:
            con.register("__ids", samples.select("sample_id").to_arrow())
            con.execute("delete from samples where sample_id in (select sample_id from __ids)")
            con.unregister("__ids")
            _insert(con, "samples", schema.conform(samples, schema.SAMPLE))
        con.execute(
            "insert into files values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, null)",
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
            ],
        )
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    return replaced


LOADED_RAW = "raw_measurements r join files f on f.sha256 = r.source_sha256 and f.status = 'loaded'"


def read_raw(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Raw rows of every currently loaded file."""
    return schema.conform(con.sql(f"select r.* from {LOADED_RAW}").pl(), schema.MEASUREMENT)


def raw_names(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """platform, panel, analyte_raw and n (rows) of every currently loaded file: what partitions are planned on."""
    return con.sql(
        f"select r.platform, r.panel, r.analyte_raw, count(*) as n from {LOADED_RAW} group by all order by all"
    ).pl()


IN_STUDY = "m.cohort in ('healthy', 'patient')"  # rows of `measurements m` that reference and comparisons use


COPY_FLUSH_ROWS = 100_000


def _copy_parts(con: duckdb.DuckDBPyConnection, query: str, parts: pl.DataFrame, folder: Path) -> list[str]:
    """Write the rows of ``query`` (which joins the table ``__parts`` and selects ``__part``) as Parquet, one
    folder per part, in one pass inside DuckDB (no rows pass through Python). Returns a glob per part, in
    part order."""
    if parts.height == 0:
        return []
    con.register("__parts", parts.to_arrow())
    # each writing thread buffers this many rows across the open part files before flushing them; DuckDB's
    # default (524,288) needs more than a 1 GB memory limit with 30 parts of a wide raw table
    con.execute(f"set partitioned_write_flush_threshold = {COPY_FLUSH_ROWS}")
    try:
        con.execute(f"copy ({query}) to ? (format parquet, partition_by (__part), overwrite_or_ignore)", [str(folder)])
    finally:
        con.unregister("__parts")
    return [str(folder / f"__part={k}" / "*.parquet") for k in range(int(parts["part"].max()) + 1)]  # type: ignore[arg-type]


def export_raw_parts(con: duckdb.DuckDBPyConnection, parts: pl.DataFrame, folder: Path) -> list[str]:
    """The loaded raw rows as Parquet, one folder per part of ``parts`` (platform, panel, analyte_raw, part:
    see transforms.partitions.plan_normalise). Returns a glob per part, in part order."""
    return _copy_parts(
        con,
        f"select r.*, p.part as __part from {LOADED_RAW} join __parts p "
        "on r.platform is not distinct from p.platform and r.panel is not distinct from p.panel "
        "and r.analyte_raw = p.analyte_raw",
        parts.select("platform", "panel", "analyte_raw", "part"),
        folder,
    )


def measurement_sizes(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """analyte and n: the normalised measurements of healthy and patient samples per analyte."""
    return con.sql(f"select m.analyte, count(*) as n from measurements m where {IN_STUDY} group by 1").pl()


def export_measurements(con: duckdb.DuckDBPyConnection, parts: pl.DataFrame, folder: Path) -> list[str]:
    """The normalised measurements of healthy and patient samples (the `measurements` view) as Parquet, one
    folder per part of ``parts`` (analyte, part: see transforms.partitions.plan_reference)."""
    query = f"select m.*, p.part as __part from measurements m join __parts p using (analyte) where {IN_STUDY}"
    return _copy_parts(con, query, parts.select("analyte", "part"), folder)


def read_samples(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    return schema.conform(con.sql("select * from samples").pl(), schema.SAMPLE)


def replace_derived(con: duckdb.DuckDBPyConnection, *, normalised: list[str], held: list[str], run_id: str) -> None:
    """Swap in this run's normalised measurements and link/normalise holds, in one transaction. ``normalised``
    and ``held`` are Parquet files (one per part of the run), read inside DuckDB."""
    con.execute("begin")
    try:
        con.execute("delete from measurements_normalised")
        con.execute("delete from held_rows")
        for table, paths in (("measurements_normalised", normalised), ("held_rows", held)):
            for path in paths:  # table names are ours, not data
                con.execute(f"insert into {table} by name select *, ? as run_id from read_parquet(?)", [run_id, path])
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise


def insert_qc_results(con: duckdb.DuckDBPyConnection, results: pl.DataFrame, *, run_id: str) -> None:
    _insert(
        con,
        "qc_results",
        results.with_columns(pl.lit(run_id).alias("run_id"), pl.lit(now()).alias("checked_at")),
    )


def start_run(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    con.execute("insert into runs values (?, ?, null, 'running', null)", [run_id, now()])


def finish_run(con: duckdb.DuckDBPyConnection, run_id: str, *, status: str, summary: dict[str, object]) -> None:
    con.execute(
        "update runs set finished_at = ?, status = ?, summary_json = ? where run_id = ?",
        [now(), status, json.dumps(summary, default=str), run_id],
    )


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
) -> None:
    """Register a published release and its tables (idempotent per version)."""
    con.execute("begin")
    try:
        for table in (
            "releases",
            "release_intervals",
            "release_quantiles",
            "release_outliers",
            "release_cohort_comparison",
            "release_retest_variation",
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
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
