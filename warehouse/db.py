"""Open the DuckDB warehouse and bring its schema up to date from the numbered SQL files."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import duckdb

MIGRATIONS = Path(__file__).parent / "migrations"


def migration_files() -> list[tuple[int, Path]]:
    out = []
    for path in sorted(MIGRATIONS.glob("*.sql")):
        m = re.match(r"(\d+)_", path.name)
        if m:
            out.append((int(m.group(1)), path))
    return out


def migrate(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Apply every migration not yet recorded in schema_version, in order, each in a transaction.

    Safe to re-run: statements are idempotent (``if not exists`` / ``or replace``) and applied versions
    are skipped. Returns the names applied now.
    """
    con.execute(
        "create table if not exists schema_version (version integer primary key, name varchar not null, "
        "applied_at timestamp not null)"
    )
    done = {row[0] for row in con.execute("select version from schema_version").fetchall()}
    applied = []
    for version, path in migration_files():
        if version in done:
            continue
        con.execute("begin")
        try:
            con.execute(path.read_text(encoding="utf-8"))
            con.execute(
                "insert into schema_version values (?, ?, ?)",
                [version, path.name, datetime.now(UTC).replace(tzinfo=None)],
            )
            con.execute("commit")
        except Exception:
            con.execute("rollback")
            raise
        applied.append(path.name)
    return applied


def connect(path: Path, *, read_only: bool = False, memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """A connection to the warehouse file; read-write connections are migrated first (and their raw store
    set up: warehouse.loads.ensure_raw_store, and their normalised store: ensure_normalised_store). ``memory_limit``
    (e.g. "4GB") caps DuckDB's buffers; beyond it DuckDB spills to ``<warehouse>.tmp``."""
    config: dict[str, str | bool | int | float | list[str]] = {"memory_limit": memory_limit} if memory_limit else {}
    if path.is_file():
        check_database_file(path)  # a one-line reason, not DuckDB's IOException
    if read_only:
        return duckdb.connect(str(path), read_only=True, config=config)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path), config=config)
    migrate(con)
    from warehouse.loads import ensure_normalised_store, ensure_raw_store  # loads needs no db: no import cycle

    ensure_raw_store(con)
    ensure_normalised_store(con)
    return con


#: What the analyst door runs, by DuckDB's own parser (duckdb.extract_statements): queries, never writes.
ANALYST_STATEMENTS = {"SELECT", "EXPLAIN", "PRAGMA"}


class RefusedQueryError(ValueError):
    """A statement the read-only analyst door does not run; the message says why in one line."""


def connect_analyst(path: Path, *, readable: list[Path]) -> duckdb.DuckDBPyConnection:
    """The analyst door: a read-only connection to the warehouse sandboxed by DuckDB's own settings. Files
    can be read only under ``readable`` (the raw store, the release folders: ``allowed_directories``), no
    other file, URL or database (``enable_external_access = false``), no extension is installed or loaded
    (none is needed: Parquet and CSV are built in), and the configuration is locked, so no ``SET`` undoes
    any of it. Writing a file in a readable folder is refused by :func:`analyst_query` (DuckDB would allow
    ``COPY ... TO`` there).

    The warehouse is attached read-only to a private in-memory DuckDB (its default catalog): DuckDB shares
    one database instance, settings included, between the connections of a process to the same file, so a
    sandbox set on such a connection would also lock the process's other connections, and a second
    analyst connection could not be opened."""
    config: dict[str, str | bool | int | float | list[str]] = {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "allow_community_extensions": False,
    }
    con = duckdb.connect(":memory:", config=config)
    try:
        con.execute("attach ? as warehouse (read_only)", [str(path)])
        con.execute("use warehouse")
        con.execute("set allowed_directories = ?", [[f"{p.resolve()}/" for p in readable]])
        con.execute("set enable_external_access = false")
        con.execute("set lock_configuration = true")
    except Exception:
        con.close()
        raise
    return con


def analyst_query(con: duckdb.DuckDBPyConnection, query: str) -> duckdb.DuckDBPyRelation:
    """Run one read-only statement on an analyst connection. Raises RefusedQueryError for anything that is
    not a query (COPY, EXPORT, ATTACH, INSTALL, LOAD, SET, CREATE ...) or for several statements at once;
    DuckDB's own errors (a file outside the readable folders, a locked setting) pass through."""
    statements = duckdb.extract_statements(query)
    if not statements:
        msg = 'no query given (only blanks or comments): write one, e.g. "select * from reference_intervals limit 5"'
        raise RefusedQueryError(msg)
    if len(statements) != 1:
        msg = f"one statement at a time, not {len(statements)}"
        raise RefusedQueryError(msg)
    kind = statements[0].type.name
    if kind not in ANALYST_STATEMENTS:
        msg = (
            f"{kind} statements are refused: this is a read-only door to the warehouse "
            f"({', '.join(sorted(ANALYST_STATEMENTS))} only; nothing here writes, attaches, installs or sets)"
        )
        raise RefusedQueryError(msg)
    relation = con.sql(query)
    if relation is None:
        msg = "the statement returned no rows to show"
        raise RefusedQueryError(msg)
    return relation


#: DuckDB types that polars cannot take from Arrow, or takes losing part of the value (a time's zone offset):
#: an analyst's query gets them as DuckDB's own text (``age(...)``, ``max(t) - min(t)``: '1 day 02:00:00')
AS_TEXT_TYPES = frozenset({"interval", "blob", "bit", "bignum", "varint", "union", "variant", "time with time zone"})

#: DuckDB types that hold other values: a CSV cell gets them as JSON text (``list(analyte)``, ``histogram(sex)``)
NESTED_TYPES = frozenset({"list", "array", "struct", "map", "union"})


def _type_ids(kind: duckdb.sqltypes.DuckDBPyType) -> set[str]:
    """The ids of a DuckDB type and of every type inside it (a list's child, a struct's fields, a map's key and
    value)."""
    ids: set[str] = {str(kind.id)}
    if kind.id in NESTED_TYPES:
        for _, child in kind.children:
            if isinstance(child, duckdb.sqltypes.DuckDBPyType):  # an array's size is a number
                ids |= _type_ids(child)
    return ids


def unique_names(names: list[str]) -> list[str]:
    """Column names made unique, as DuckDB's own ``.pl()`` does: a name already taken (in any case, as DuckDB
    compares names) gets ``_1``, ``_2`` ... A join's ``select *`` repeats its key columns.

    >>> unique_names(["analyte", "n", "analyte", "N", "analyte_1"])
    ['analyte', 'n', 'analyte_1', 'N_1', 'analyte_1_1']
    """
    taken: set[str] = set()
    unique = []
    for name in names:
        candidate, k = name, 0
        while candidate.lower() in taken:
            k += 1
            candidate = f"{name}_{k}"
        taken.add(candidate.lower())
        unique.append(candidate)
    return unique


def printable(relation: duckdb.DuckDBPyRelation, fmt: str) -> duckdb.DuckDBPyRelation:
    """``relation`` as the output ``fmt`` (table, csv or json) can hold it, through polars: column names made
    unique (:func:`unique_names`), and each column that ``fmt`` cannot hold turned into text by DuckDB, the
    others untouched: an interval, a blob or a union anywhere in a column as DuckDB's text, or, when nested,
    as JSON text; for CSV every nested column (a list, struct or map) as JSON text; for JSON a map as JSON
    text (JSON's keys are text, a map's need not be).

    >>> con = duckdb.connect()
    >>> printable(con.sql("select 1 as n, interval 90 minute as i, [2, 3] as l, 4 as N"), "csv").fetchall()
    [(1, '01:30:00', '[2,3]', 4)]
    """
    names = unique_names(relation.columns)
    wanted: list[str] = []
    for position, (name, kind) in enumerate(zip(names, relation.types, strict=True), start=1):
        ids = _type_ids(kind)
        nested = kind.id in NESTED_TYPES
        text = bool(ids & AS_TEXT_TYPES) or (fmt == "csv" and nested) or (fmt == "json" and "map" in ids)
        alias = '"' + name.replace('"', '""') + '"'
        if not text:
            wanted.append(f"#{position} AS {alias}")
        elif nested and fmt != "table":
            wanted.append(f"CAST(to_json(#{position}) AS VARCHAR) AS {alias}")
        else:
            wanted.append(f"CAST(#{position} AS VARCHAR) AS {alias}")
    if names == relation.columns and all(w.startswith("#") for w in wanted):
        return relation
    return relation.project(", ".join(wanted))


def open_work_copy(path: Path) -> Path:
    """Start a run on a private copy of the warehouse, so that analysts' read-only sessions on ``path``
    never block the run and never see a half-done one. Returns the copy's path (migrated)."""
    work = path.with_name(f".{path.name}.work")
    for stale in (work, work.with_name(work.name + ".wal")):
        stale.unlink(missing_ok=True)  # left by a crashed run: never visible to anyone
    if path.exists():
        import shutil

        check_database_file(path)

        shutil.copyfile(path, work)
    with connect(work) as con:
        con.execute("checkpoint")
    return work


def publish_work_copy(work: Path, path: Path) -> None:
    """Checkpoint the run's copy and swap it into place atomically (``os.replace``). Sessions already open
    keep the old snapshot; new sessions see the new state; nobody sees a mix."""
    import os

    with duckdb.connect(str(work)) as con:
        con.execute("checkpoint")
    os.replace(work, path)


class WarehouseDamagedError(RuntimeError):
    """The warehouse path holds a file that is not a DuckDB database; the message says what to do."""


#: Where DuckDB's database files carry their magic bytes (after an 8-byte checksum of the header block)
DUCKDB_MAGIC = (8, b"DUCK")


def check_database_file(path: Path) -> None:
    """Raise WarehouseDamagedError when ``path`` is not a DuckDB database file (truncated, overwritten, or
    another file at that path). A run copied it and stopped in DuckDB's IOException with a traceback that
    named the run's private copy, not the file to look at."""
    at, magic = DUCKDB_MAGIC
    with path.open("rb") as fh:
        head = fh.read(at + len(magic))
    if head[at:] != magic:
        msg = (
            f"{path}: not a DuckDB database (damaged, or another file at this path); the run changed nothing. "
            "Restore it from a backup, or set `warehouse` to another path to start a new one"
        )
        raise WarehouseDamagedError(msg)


class WarehouseBusyError(RuntimeError):
    """Another run is writing the warehouse; the message says which process and since when."""


@contextmanager
def writer_lock(path: Path, *, wait_seconds: float = 0.0, poll_seconds: float = 0.5) -> Iterator[None]:
    """Hold the single-writer lock of the warehouse at ``path`` (``<path>.lock``, an OS file lock).

    Only one run at a time may copy, change and swap the warehouse; a second run waits up to
    ``wait_seconds`` and then raises WarehouseBusyError naming the holder. The kernel releases the lock when
    the holding process ends, however it ends, so a crashed run never leaves the warehouse locked.
    """
    import fcntl
    import json
    import os
    import time

    lock_path = path.with_name(path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock_path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the whole block
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "{}"
                    try:
                        who = json.loads(holder)
                    except ValueError:
                        who = {}
                    msg = (
                        f"{path}: another refranges run (pid {who.get('pid', '?')}, started "
                        f"{who.get('started_at', '?')}) is writing the warehouse; this run changed nothing. "
                        f"It waited {wait_seconds:g} s (setting writer_wait_seconds). Run again when that run has "
                        "finished."
                    )
                    raise WarehouseBusyError(msg) from None
                time.sleep(poll_seconds)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "started_at": datetime.now(UTC).isoformat(timespec="seconds")}))
        handle.flush()
        yield
    finally:
        handle.close()  # closing the descriptor releases the lock
