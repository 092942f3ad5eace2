"""A new home's Prefect database is copied from this machine's template instead of migrated from scratch."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from flows.serve import prefect_template, save_prefect_template, seed_prefect_database

ROOT = Path(__file__).resolve().parents[2]


def built_database(prefect_home: Path, *, runs: int = 0) -> Path:
    """A database shaped like one Prefect has just built: its schema version and block types, no runs."""
    prefect_home.mkdir(parents=True, exist_ok=True)
    path = prefect_home / "prefect.db"
    with closing(sqlite3.connect(path)) as con:
        con.execute("pragma journal_mode = wal")  # as Prefect keeps it
        con.execute("create table alembic_version (version_num text primary key)")
        con.execute("insert into alembic_version values ('a1b2c3')")
        con.execute("create table block_type (id text, name text)")
        con.execute("insert into block_type values ('1', 'secret')")
        con.execute("create table flow_run (id text)")
        con.executemany("insert into flow_run values (?)", [(str(i),) for i in range(runs)])
        con.commit()
    return path


def version_of(path: Path) -> str:
    with closing(sqlite3.connect(path)) as con:
        return str(con.execute("select version_num from alembic_version").fetchone()[0])


def test_a_new_home_gets_a_copy_of_the_template_and_an_existing_database_is_never_replaced(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    built = tmp_path / "built"
    built_database(built)
    new = tmp_path / "new"
    assert seed_prefect_database(new, cache) is True  # no template yet: Prefect builds it, then it is kept
    assert not (new / "prefect.db").exists()

    template = save_prefect_template(built, cache)
    assert template == prefect_template(cache) and template.is_file()
    assert version_of(template) == "a1b2c3"

    assert seed_prefect_database(new, cache) is False
    assert version_of(new / "prefect.db") == "a1b2c3"
    assert sorted(p.name for p in new.iterdir()) == ["prefect.db"]  # no staged copy left behind
    assert sorted(p.name for p in cache.iterdir()) == [template.name]

    own = tmp_path / "own"
    own.mkdir()
    (own / "prefect.db").write_bytes(b"a database of its own")
    assert seed_prefect_database(own, cache) is False
    assert (own / "prefect.db").read_bytes() == b"a database of its own"


def test_a_database_that_holds_runs_or_no_schema_version_is_never_kept(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    built_database(tmp_path / "used", runs=1)
    assert save_prefect_template(tmp_path / "used", cache) is None
    (tmp_path / "bare").mkdir()
    with closing(sqlite3.connect(tmp_path / "bare" / "prefect.db")) as con:
        con.execute("create table block_type (id text)")
    assert save_prefect_template(tmp_path / "bare", cache) is None
    assert not prefect_template(cache).exists()
    assert [p.name for p in cache.iterdir()] == []  # nor a staged copy


def test_a_configured_database_or_an_unwritable_cache_is_left_alone(tmp_path: Path, monkeypatch) -> None:
    built_database(tmp_path / "built")
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would be")
    assert save_prefect_template(tmp_path / "built", blocked) is None  # best effort: no error
    assert seed_prefect_database(tmp_path / "new", blocked) is True

    cache = tmp_path / "cache"
    save_prefect_template(tmp_path / "built", cache)
    monkeypatch.setenv("PREFECT_API_DATABASE_CONNECTION_URL", "postgresql+asyncpg://prefect@127.0.0.1/prefect")
    assert seed_prefect_database(tmp_path / "new", cache) is False
    assert not (tmp_path / "new" / "prefect.db").exists()
    assert save_prefect_template(tmp_path / "built", tmp_path / "other") is None


@pytest.mark.slow
def test_the_first_run_on_a_machine_keeps_prefects_database_and_the_next_new_home_runs_on_a_copy(
    tmp_path: Path,
) -> None:
    """With Prefect itself: the database its server builds holds only TEMPLATE_TABLES (else no template would
    ever be kept), and a server started on a copy of it serves a run."""
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API") and k != "PREFECT_HOME"}
    env.update(REFRANGES_CACHE=str(cache), REFRANGES_SUBJECT_KEY="k", PYTHONPATH=str(ROOT))
    for name in ("first", "second"):
        home = tmp_path / name
        (home / "landing").mkdir(parents=True)
        result = subprocess.run(
            [sys.executable, "-m", "flows.cli", "run", "--format", "json"],
            cwd=tmp_path,
            env=env | {"REFRANGES_HOME": str(home)},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert (home / ".prefect" / "prefect.db").is_file()
        template = prefect_template(cache)
        assert template.is_file(), f"the {name} run kept no template: {sorted(os.listdir(cache))}"
        assert version_of(template) == version_of(home / ".prefect" / "prefect.db")


def test_the_runs_server_starts_from_a_folder_that_holds_a_flows_or_prefect_package(
    tmp_path: Path, monkeypatch
) -> None:
    """`refranges run` started from a folder with a `flows/` (a user's own Prefect project, another checkout)
    failed: "the local Prefect server stopped at start-up", its log "No module named flows.serve", as
    `python -m` put that folder before the installed packages. The server is started with -P."""
    from flows.serve import start_run_server

    for package in ("flows", "prefect"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("raise ImportError('the wrong package')\n")
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home" / ".prefect"
    monkeypatch.setenv("PREFECT_HOME", str(home))
    server = start_run_server(home)
    try:
        server.wait_until_healthy(120)
    finally:
        server.stop()
