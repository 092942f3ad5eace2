"""The analyst door (`refranges sql`, warehouse.db.connect_analyst): really read-only, by DuckDB's sandbox."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pytest

from warehouse import db, loads
from warehouse.db import RefusedQueryError, analyst_query, connect_analyst


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    """A warehouse with a raw store file under the raw view and a release folder beside it."""
    path = tmp_path / "warehouse.duckdb"
    with db.connect(path) as con:
        entry = loads.LedgerEntry(
            file_name="plate1.csv", sha256="a" * 64, status="loaded", layout="tidy", rows_read=1, rows_loaded=1,
            rows_quarantined=0, size_bytes=10, archive_path=None, reason=None, run_id="r1",
        )  # fmt: skip
        rows = pl.DataFrame({"sample_id": ["S1"], "analyte_raw": ["IL6"], "value": [1.5], "line_number": [2]})
        from transforms import schema

        loads.load_file(con, entry, rows=schema.conform(rows, schema.MEASUREMENT))
    (tmp_path / "releases" / "v1").mkdir(parents=True)
    pl.DataFrame({"analyte": ["IL6"]}).write_parquet(tmp_path / "releases" / "v1" / "reference_intervals.parquet")
    (tmp_path / "secret.csv").write_text("a,b\n1,2\n")
    return path


def door(warehouse: Path) -> duckdb.DuckDBPyConnection:
    return connect_analyst(warehouse, readable=[warehouse.parent / "raw", warehouse.parent / "releases"])


def test_analyst_queries_over_the_views_the_raw_store_and_releases_still_work(warehouse: Path) -> None:
    con = door(warehouse)
    assert analyst_query(con, "select sample_id, value from raw_measurements").fetchall() == [("S1", 1.5)]
    assert analyst_query(con, "select count(*) from files").fetchall() == [(1,)]
    assert analyst_query(con, "with f as (select * from files) select file_name from f").fetchall() == [("plate1.csv",)]
    release = warehouse.parent / "releases" / "v1" / "reference_intervals.parquet"
    assert analyst_query(con, f"select analyte from read_parquet('{release}')").fetchall() == [("IL6",)]
    assert analyst_query(con, "describe files").fetchall()
    assert analyst_query(con, "show all tables").fetchall()
    assert analyst_query(con, "summarize select * from files").fetchall()
    assert analyst_query(con, "explain select * from files").fetchall()
    assert analyst_query(con, "pragma version").fetchall()


@pytest.mark.parametrize(
    ("statement", "why"),
    [
        ("copy (select 1) to '{tmp}/pwned.csv'", "COPY statements are refused"),
        ("copy (select 1) to '{tmp}/raw/pwned.csv'", "COPY statements are refused"),  # a readable folder
        ("copy (select 1 as a) to '{tmp}/raw/" + "a" * 64 + ".parquet' (format parquet)", "COPY"),
        ("export database '{tmp}/dump'", "EXPORT statements are refused"),
        ("attach '{tmp}/other.duckdb' as other", "ATTACH statements are refused"),
        ("install httpfs", "LOAD statements are refused"),
        ("load httpfs", "LOAD statements are refused"),
        ("set enable_external_access = true", "SET statements are refused"),
        ("create table t as select 1", "CREATE statements are refused"),
        ("select 1; copy (select 1) to '{tmp}/x.csv'", "one statement at a time"),
        ("  -- nothing but a comment\n", "no query given"),
    ],
)
def test_statements_that_write_attach_install_or_set_are_refused_with_a_reason(
    warehouse: Path, statement: str, why: str
) -> None:
    tmp = warehouse.parent
    raw_file = tmp / "raw" / ("a" * 64 + ".parquet")
    before = raw_file.read_bytes()
    with pytest.raises(RefusedQueryError, match=why):
        analyst_query(door(warehouse), statement.format(tmp=tmp))
    assert raw_file.read_bytes() == before
    assert sorted(p.name for p in tmp.iterdir()) == ["raw", "releases", "secret.csv", "warehouse.duckdb"]
    assert [p.name for p in (tmp / "raw").iterdir()] == [raw_file.name]


@pytest.mark.parametrize(
    "query",
    [
        "select * from read_csv('{tmp}/secret.csv')",
        "select * from read_csv('/etc/passwd')",
        "select * from read_text('/etc/hostname')",
        "select * from glob('/etc/*')",
        "select * from read_parquet('https://example.com/x.parquet')",  # no outside host either
    ],
)
def test_files_outside_the_raw_store_and_releases_cannot_be_read(warehouse: Path, query: str) -> None:
    with pytest.raises(duckdb.PermissionException, match="disabled by configuration"):
        analyst_query(door(warehouse), query.format(tmp=warehouse.parent)).fetchall()


def test_the_sandbox_cannot_be_undone_from_inside(warehouse: Path) -> None:
    con = door(warehouse)
    with pytest.raises(duckdb.InvalidInputException, match="locked"):
        con.execute("set enable_external_access = true")  # even past the statement check: DuckDB refuses
    with pytest.raises(duckdb.InvalidInputException, match="locked"):
        con.execute("set allowed_directories = ['/']")
    settings = dict(con.execute("select name, value from duckdb_settings()").fetchall())
    assert settings["autoinstall_known_extensions"] == "false" and settings["autoload_known_extensions"] == "false"


def test_the_sandbox_is_private_to_the_door(warehouse: Path) -> None:
    """Two doors at once, and the process's other connections to the same file keep their own settings."""
    first, second = door(warehouse), door(warehouse)
    assert analyst_query(first, "select count(*) from files").fetchall() == analyst_query(second, "select 1").fetchall()
    with duckdb.connect(str(warehouse), read_only=True) as other:
        assert other.execute("select current_setting('enable_external_access')").fetchall() == [(True,)]
