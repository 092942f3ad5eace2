from __future__ import annotations

import hashlib
import os
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from transforms import schema
from warehouse import db, loads, releases


def sha(label: str) -> str:
    """A real-looking content hash for a test file called ``label``."""
    return hashlib.sha256(label.encode()).hexdigest()


def entry(label: str, name: str = "f.csv", rows: int = 2, held: int = 0) -> loads.LedgerEntry:
    return loads.LedgerEntry(sha(label), name, "tidy", 10, rows + held, rows, held, "loaded", None, None, "run-1")


def measurement_rows(label: str, n: int = 2) -> pl.DataFrame:
    return schema.conform(
        pl.DataFrame(
            {
                "source_file": ["f.csv"] * n,
                "source_sha256": [sha(label)] * n,
                "line_number": list(range(2, n + 2)),
                "platform": ["tidy"] * n,
                "sample_id": [f"S{i}" for i in range(n)],
                "value": [1.0] * n,
            }
        ),
        schema.MEASUREMENT,
    )


def test_migrations_apply_in_order_and_rerun_safely(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    con = db.connect(path)
    versions = [r[0] for r in con.execute("select version from schema_version order by version").fetchall()]
    assert versions == [v for v, _ in db.migration_files()]
    assert db.migrate(con) == []
    con.close()
    con = db.connect(path)
    assert con.execute("select count(*) from schema_version").fetchall()[0][0] == len(versions)
    views = {r[0] for r in con.execute("select view_name from duckdb_views() where not internal").fetchall()}
    assert {"measurements", "quarantine", "reference_intervals", "reference_quantiles"} <= views


def test_every_migration_names_its_grain() -> None:
    for _, path in db.migration_files():
        assert path.read_text().startswith("-- grain:"), path.name


def test_a_failing_load_leaves_no_trace(tmp_path: Path) -> None:
    con = db.connect(tmp_path / "w.duckdb")
    bad_quarantine = pl.DataFrame({"stage": [None]}, schema={"stage": pl.String})  # violates NOT NULL
    with pytest.raises(duckdb.Error):
        loads.load_file(con, entry("a"), rows=measurement_rows("a"), quarantine=bad_quarantine)
    assert con.execute("select count(*) from raw_measurements").fetchall() == [(0,)]
    assert con.execute("select count(*) from files").fetchall() == [(0,)]
    assert list((tmp_path / "raw").iterdir()) == []  # the raw file written before the transaction is gone
    loads.load_file(con, entry("a"), rows=measurement_rows("a"))
    assert con.execute("select count(*) from raw_measurements").fetchall() == [(2,)]
    assert [p.name for p in (tmp_path / "raw").iterdir()] == [f"{sha('a')}.parquet"]


def test_rows_load_from_the_parse_tasks_parquet_as_from_a_frame(tmp_path: Path) -> None:
    con = db.connect(tmp_path / "w.duckdb")
    path = tmp_path / "a.rows.parquet"
    measurement_rows("a", 3).write_parquet(path)
    loads.load_file(con, entry("a", "a.csv", rows=3), rows=path)
    assert not path.exists()  # moved into the raw store, not copied
    loads.load_file(con, entry("b", "b.csv", rows=3), rows=measurement_rows("b", 3))
    by_path, by_frame = (
        loads.read_raw(con).filter(pl.col("source_sha256") == sha(s)).drop("source_sha256") for s in ("a", "b")
    )
    assert by_path.height == 3 and by_path.equals(by_frame)
    measurement_rows("c", 3).write_parquet(path)
    bad_quarantine = pl.DataFrame({"stage": [None]}, schema={"stage": pl.String})
    with pytest.raises(duckdb.Error):  # the Parquet rows are in the same transaction as the rest
        loads.load_file(con, entry("c", "c.csv", rows=3), rows=path, quarantine=bad_quarantine)
    assert con.execute("select count(*) from raw_measurements").fetchall() == [(6,)]


def test_same_name_new_content_replaces_rows_and_keeps_history(tmp_path: Path) -> None:
    con = db.connect(tmp_path / "w.duckdb")
    loads.load_file(con, entry("old", rows=2), rows=measurement_rows("old", 2))
    replaced = loads.load_file(con, entry("new", rows=3), rows=measurement_rows("new", 3))
    assert replaced == [sha("old")]
    assert loads.read_raw(con)["source_sha256"].unique().to_list() == [sha("new")]
    assert con.execute("select sha256, status, replaced_by from files order by status").fetchall() == [
        (sha("new"), "loaded", None),
        (sha("old"), "replaced", sha("new")),
    ]
    # the replaced rows stay in the raw store, as history, out of the view
    old = pl.read_parquet(tmp_path / "raw" / f"{sha('old')}.parquet")
    assert schema.conform(old, schema.MEASUREMENT).equals(measurement_rows("old", 2))
    assert old.schema["source_sha256"] == pl.Enum([sha("old")])  # constant text written as a one-value Enum


def test_raw_files_with_and_without_a_text_column_read_as_text_through_the_view(tmp_path: Path) -> None:
    con = db.connect(tmp_path / "w.duckdb")
    plain = measurement_rows("plain", 2)  # no well: a column of nulls only
    wells = measurement_rows("wells", 2).with_columns(pl.Series("well", ["A1", "B2"]), pl.lit("P1").alias("panel"))
    loads.load_file(con, entry("plain", "p.csv", rows=2), rows=plain)
    loads.load_file(con, entry("wells", "w.csv", rows=2), rows=wells)
    stored = pl.read_parquet(tmp_path / "raw" / f"{sha('plain')}.parquet")
    assert stored.schema["well"] == pl.Enum([""]) and stored["well"].null_count() == 2  # nulls as a one-value Enum
    types = dict(con.execute("select column_name, column_type from (describe raw_measurements)").fetchall())
    assert types["well"] == types["panel"] == types["source_sha256"] == "VARCHAR"
    got = con.execute("select source_sha256, well, panel from raw_measurements order by source_sha256, well").fetchall()
    assert sorted(got, key=str) == sorted(
        [(sha("plain"), None, None)] * 2 + [(sha("wells"), "A1", "P1"), (sha("wells"), "B2", "P1")], key=str
    )
    assert schema.conform(loads.read_raw(con).sort("source_sha256", "line_number"), schema.MEASUREMENT).equals(
        pl.concat([plain, wells]).sort("source_sha256", "line_number")
    )


def test_loads_that_defer_the_raw_view_show_their_rows_once_it_is_re_pointed(tmp_path: Path) -> None:
    with db.connect(tmp_path / "w.duckdb") as con:
        loads.load_file(con, entry("a", name="a.csv", rows=3), rows=measurement_rows("a", 3), defer_view=True)
        loads.load_file(con, entry("b", name="b.csv", rows=2), rows=measurement_rows("b", 2), defer_view=True)
        assert con.execute("select count(*) from raw_measurements").fetchall() == [(0,)]  # not yet re-pointed
        loads.ensure_raw_store(con)
        assert loads.read_raw(con).equals(pl.concat([measurement_rows("a", 3), measurement_rows("b", 2)]))


def test_the_raw_view_follows_the_warehouse_when_its_folder_moves(tmp_path: Path) -> None:
    con = db.connect(tmp_path / "a" / "w.duckdb")
    loads.load_file(con, entry("a", rows=3), rows=measurement_rows("a", 3))
    con.close()
    (tmp_path / "a").rename(tmp_path / "b")
    with db.connect(tmp_path / "b" / "w.duckdb", read_only=True) as ro, pytest.raises(duckdb.IOException):
        ro.execute("select count(*) from raw_measurements").fetchall()  # still names the old folder
    with db.connect(tmp_path / "b" / "w.duckdb") as rw:  # the next writer re-points it
        assert rw.execute("select count(*) from raw_measurements").fetchall() == [(3,)]


#: raw_measurements as a table had these columns (migrations 002 and 007); the Olink NGS ones came later
OLD_RAW_COLUMNS = set(list(schema.MEASUREMENT)[: list(schema.MEASUREMENT).index("recovery_pct") + 1])


def test_a_warehouse_with_raw_rows_in_a_table_moves_them_to_the_raw_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "w.duckdb"
    before = [(v, p) for v, p in db.migration_files() if v < 11]  # the schema before the raw store
    with duckdb.connect(str(path)) as con:
        monkeypatch.setattr(db, "migration_files", lambda: before)
        db.migrate(con)
        monkeypatch.undo()
        for label, n, status in (("kept", 3, "loaded"), ("gone", 2, "replaced")):
            e = entry(label, rows=n)
            con.execute(
                "insert into files values (?, ?, 'tidy', 10, ?, ?, 0, ?, null, null, 'run-1', now(), null)",
                [e.sha256, label, n, n, status],
            )
            old = [c for c in measurement_rows(label, n).columns if c in OLD_RAW_COLUMNS]  # columns of that schema
            con.register("__rows", measurement_rows(label, n).select(old).to_arrow())
            con.execute("insert into raw_measurements by name select * from __rows")
    with db.connect(path) as con:
        assert con.execute(
            "select table_type from information_schema.tables where table_name = 'raw_measurements'"
        ).fetchall() == [("VIEW",)]
        assert loads.read_raw(con).equals(measurement_rows("kept", 3))
        assert con.execute("select raw_file from files order by file_name").fetchall() == [
            (None,),
            (f"{sha('kept')}.parquet",),
        ]
    assert [p.name for p in (tmp_path / "raw").iterdir()] == [f"{sha('kept')}.parquet"]


def normalised_rows(n: int, run_id: str = "run-1") -> pl.DataFrame:
    return schema.conform(
        pl.DataFrame(
            {
                "sample_id": [f"S{n - i:03d}" for i in range(n)],  # descending, as value: no sort restores it
                "analyte": ["IL6", "TNF"] * (n // 2) + ["IL6"] * (n % 2),
                "platform": ["tidy"] * n,
                "unit": ["pg/mL"] * n,
                "value": [float(n - i) for i in range(n)],  # not in any sorted order: the order must be kept
            }
        ),
        schema.NORMALISED,
    ).with_columns(pl.lit(run_id).alias("run_id"))


def test_a_warehouse_with_normalised_rows_in_a_table_moves_them_to_the_normalised_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "w.duckdb"
    before = [(v, p) for v, p in db.migration_files() if v < 18]  # the schema before the normalised store
    rows = normalised_rows(7, run_id="20261201T000000-abcdef")
    with duckdb.connect(str(path)) as con:
        monkeypatch.setattr(db, "migration_files", lambda: before)
        db.migrate(con)
        monkeypatch.undo()
        con.register("__rows", rows.to_arrow())
        con.execute("insert into measurements_normalised by name select * from __rows")
    with db.connect(path) as con:
        kind = "select table_type from information_schema.tables where table_name = 'measurements_normalised'"
        assert con.execute(kind).fetchall() == [("VIEW",)]
        moved = con.sql("select * from measurements_normalised").pl()
        assert schema.conform(moved, loads.NORMALISED_STORE).equals(rows)  # same rows, same order
        assert loads.normalised_generations(con) == {"20261201T000000-abcdef"}
        # the views built on the table read the store (samples: none here, so the join is empty)
        assert con.execute("select count(*) from staging.measurements").fetchall() == [(7,)]
    assert [p.relative_to(tmp_path).as_posix() for p in (tmp_path / "normalised").rglob("*")] == [
        "normalised/20261201T000000-abcdef",
        "normalised/20261201T000000-abcdef/part-00000.parquet",
    ]
    with db.connect(path) as con:  # the next writer finds nothing to move
        assert not loads.ensure_normalised_store(con)
        assert con.execute("select count(*) from measurements_normalised").fetchall() == [(7,)]


def test_normalised_rows_swap_in_as_a_generation_and_a_failed_swap_leaves_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "w.duckdb"
    parts = []
    for k, n in enumerate((3, 4)):  # two parts, read back in part order
        parts.append(str(tmp_path / f"part-{k}.parquet"))
        normalised_rows(n, run_id="run-a").slice(0, n).write_parquet(parts[-1])
    expected = pl.concat([pl.read_parquet(p) for p in parts])
    with db.connect(path) as con:
        loads.replace_derived(con, normalised=parts, held=[], run_id="run-a")
        assert schema.conform(con.sql("select * from measurements_normalised").pl(), loads.NORMALISED_STORE).equals(
            expected
        )
        assert sorted(p.name for p in (tmp_path / "normalised" / "run-a").iterdir()) == [
            "part-00000.parquet",
            "part-00001.parquet",
        ]
        assert not Path(parts[0]).exists()  # moved, not copied
        later = str(tmp_path / "later.parquet")
        normalised_rows(5, run_id="run-b").write_parquet(later)
        monkeypatch.setattr(loads, "refresh_normalised_view", lambda con: con.execute("select broken"))
        with pytest.raises(duckdb.Error):
            loads.replace_derived(con, normalised=[later], held=[], run_id="run-b")
        monkeypatch.undo()
        assert not (tmp_path / "normalised" / "run-b").exists()  # no warehouse names it: gone
        assert con.execute("select count(*) from measurements_normalised").fetchall() == [(7,)]
        assert loads.normalised_generations(con) == {"run-a"}
    (tmp_path / "normalised" / "run-old").mkdir()
    assert loads.prune_normalised(tmp_path, keep={"run-a"}) == ["run-old"]
    assert [p.name for p in (tmp_path / "normalised").iterdir()] == ["run-a"]


def test_the_normalised_view_follows_the_warehouse_when_its_folder_moves(tmp_path: Path) -> None:
    part = tmp_path / "part.parquet"
    normalised_rows(4).write_parquet(part)
    with db.connect(tmp_path / "a" / "w.duckdb") as con:
        loads.replace_derived(con, normalised=[str(part)], held=[], run_id="run-1")
    (tmp_path / "a").rename(tmp_path / "b")
    with db.connect(tmp_path / "b" / "w.duckdb") as rw:  # a writer re-points it
        assert rw.execute("select count(*) from measurements_normalised").fetchall() == [(4,)]


def _tables() -> dict[str, pl.DataFrame]:
    return {
        "reference_intervals": schema.empty(schema.REFERENCE_INTERVAL),
        "reference_quantiles": schema.empty(schema.REFERENCE_QUANTILE),
    }


def test_a_store_that_lost_its_newest_registered_release_is_told_apart_from_one_pruned_by_hand(
    tmp_path: Path,
) -> None:
    """missing_registered: the releases the warehouse registered in a store that its index no longer lists,
    when the newest of them is missing (an emptied, moved or older store); releases of another store never
    count, and older ones taken out of the index by hand, the newest listed, are no such sign."""
    import json

    root = tmp_path / "releases"
    when = datetime(2026, 11, 25, 10, 0, 0)
    common = {"tables": _tables(), "parameters": {}, "inputs": [], "code_version": "test"}
    a, b = (releases.publish(root, created_at=when, input_fingerprint=f, **common) for f in ("fp1", "fp2"))  # type: ignore[arg-type]
    registered = [(a.version, str(a.path)), ("2026.11.24-1", str(tmp_path / "old-store" / "2026.11.24-1"))]
    registered.append((b.version, str(b.path)))
    assert releases.missing_registered(root, registered) == []
    index = json.loads((root / "index.json").read_text())
    pruned = {**index, "releases": index["releases"][1:]}  # the older one taken out by hand
    (root / "index.json").write_text(json.dumps(pruned))
    assert releases.missing_registered(root, registered) == []
    older = {**index, "releases": index["releases"][:1]}  # an older copy of the store: its newest is gone
    (root / "index.json").write_text(json.dumps(older))
    assert releases.missing_registered(root, registered) == [b.version]
    root.rename(tmp_path / "moved")  # the folder moved, or a share not mounted: nothing at its place
    assert releases.missing_registered(root, registered) == [a.version, b.version]
    nxt = releases.publish(
        tmp_path / "new", created_at=when, input_fingerprint="fp3", taken=[a.version, b.version], **common
    )  # type: ignore[arg-type]
    assert nxt.version == "2026.11.25-3"  # a new store never reuses a version the warehouse registered


def test_releases_are_versioned_verified_immutable_and_indexed(tmp_path: Path) -> None:
    root = tmp_path / "releases"
    when = datetime(2026, 11, 25, 10, 0, 0)
    a = releases.publish(
        root,
        tables=_tables(),
        created_at=when,
        parameters={"min_n": 120},
        inputs=[{"file": "x", "sha256": "1"}],
        input_fingerprint="fp1",
        code_version="test",
    )
    b = releases.publish(
        root,
        tables=_tables(),
        created_at=when,
        parameters={"min_n": 120},
        inputs=[],
        input_fingerprint="fp2",
        code_version="test",
    )
    assert (a.version, b.version) == ("2026.11.25-1", "2026.11.25-2")
    assert b.manifest["previous_version"] == a.version
    assert [i["version"] for i in releases.read_index(root)] == [a.version, b.version]
    assert sorted(p.name for p in a.path.iterdir()) == [
        "manifest.json",
        "reference_intervals.parquet",
        "reference_quantiles.parquet",
        "report.html",
    ]
    assert releases.verify(root, a.version) == []
    assert not list(root.glob(".staging-*"))
    target = a.path / "reference_quantiles.parquet"
    target.chmod(0o644)
    target.write_bytes(target.read_bytes() + b"x")
    assert releases.verify(root, a.version) == ["reference_quantiles.parquet: sha256 differs from the manifest"]
    with pytest.raises(releases.ReleaseError, match="not found"):
        releases.read_manifest(root, "1999.01.01-1")


def test_client_loads_the_latest_release_and_refuses_a_tampered_one(tmp_path: Path) -> None:
    from warehouse.client import ReleaseIntegrityError, load_release

    root = tmp_path / "releases"
    when = datetime(2026, 11, 25, 10, 0, 0)
    releases.publish(
        root, tables=_tables(), created_at=when, parameters={}, inputs=[], input_fingerprint="a", code_version="t"
    )
    second = releases.publish(
        root, tables=_tables(), created_at=when, parameters={}, inputs=[], input_fingerprint="b", code_version="t"
    )
    loaded = load_release(root)
    assert loaded["manifest"]["version"] == second.version
    assert loaded["reference_intervals"].column_names[:3] == ["analyte", "uniprot", "platform"]
    target = second.path / "reference_intervals.parquet"
    target.chmod(0o644)
    target.write_bytes(target.read_bytes()[:-10])
    with pytest.raises(ReleaseIntegrityError, match="sha256 differs"):
        load_release(root, second.version)


def test_a_damaged_manifest_or_index_is_named_not_a_traceback(tmp_path: Path) -> None:
    """A hand-edited or truncated manifest.json or index.json stopped `releases show`, `verify`, `list` and
    `diff` with a JSONDecodeError; verify now reports that release and goes on to the others, and the client
    raises its integrity error."""
    from typer.testing import CliRunner

    from flows.cli import app
    from warehouse.client import ReleaseIntegrityError, load_release

    root = tmp_path / "releases"
    when = datetime(2026, 11, 25, 10, 0, 0)
    first, second = (
        releases.publish(
            root, tables=_tables(), created_at=when, parameters={}, inputs=[], input_fingerprint=fp, code_version="t"
        )
        for fp in ("a", "b")
    )
    manifest = first.path / "manifest.json"
    manifest.chmod(0o644)
    cfg = tmp_path / "refranges.toml"
    cfg.write_text(f'home = "{tmp_path}"\nreleases = "{root}"\n')

    def cli(*args: str):
        return CliRunner().invoke(app, [*args, "--config", str(cfg)], env={"COLUMNS": "300"}, catch_exceptions=False)

    for damage, why in [("{broken", "not valid JSON"), ("[1, 2]", "not a JSON object"), ('{"a": 1}', "lists no files")]:
        manifest.write_text(damage)
        with pytest.raises(ReleaseIntegrityError, match=r"manifest\.json: damaged"):
            load_release(root, first.version)
        verified = cli("releases", "verify")
        assert verified.exit_code == 1 and why in verified.output
        assert f"{second.version}: ok" in verified.output  # the other release is still checked
    manifest.write_text("{broken")
    shown = cli("releases", "show", first.version)
    assert shown.exit_code == 1 and "manifest.json" in shown.output and "Traceback" not in shown.output
    index = root / "index.json"
    index.chmod(0o644)
    index.write_text("garbage")
    for args in (["releases", "list"], ["releases", "verify"], ["releases", "show", "latest"]):
        refused = cli(*args)
        assert refused.exit_code == 1 and "index.json: not valid JSON" in refused.output, args
    with pytest.raises(ReleaseIntegrityError, match=r"index\.json: damaged"):
        load_release(root)
    index.write_text('{"releases": "x"}')
    with pytest.raises(releases.ReleaseError, match="lists no releases"):
        releases.read_index(root)


KILL_SCRIPT = """
import os, sys
import os
from datetime import datetime
from pathlib import Path
sys.path.insert(0, {root!r})
from transforms import schema
from warehouse import releases
calls = {{"n": 0}}
def dying(real):
    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == {kill_at}:
            os._exit(9)  # the process dies here, as with kill -9: no cleanup runs
        return real(*args, **kwargs)
    return wrapper
os.replace, os.rename = dying(os.replace), dying(os.rename)
tables = {{"reference_intervals": schema.empty(schema.REFERENCE_INTERVAL),
          "reference_quantiles": schema.empty(schema.REFERENCE_QUANTILE)}}
releases.publish(Path({store!r}), tables=tables, created_at=datetime(2026, 11, 26, 8, 0, 0), parameters={{}},
                 inputs=[], input_fingerprint="second", code_version="t")
"""


@pytest.mark.parametrize("kill_at", [1, 2, 3, 99])
def test_a_publish_killed_at_any_step_leaves_the_old_or_the_new_state(tmp_path: Path, kill_at: int) -> None:
    """Kill the publishing process at its 1st, 2nd or 3rd atomic step (manifest, folder rename, index), or
    not at all: the index lists only complete releases that verify, the next publish works, and the killed
    process left nothing in the temporary folder (a local store stages beside the releases)."""
    import subprocess
    import sys

    root = tmp_path / "releases"
    first = releases.publish(
        root,
        tables=_tables(),
        created_at=datetime(2026, 11, 26, 7, 0, 0),
        parameters={},
        inputs=[],
        input_fingerprint="first",
        code_version="t",
    )
    script = KILL_SCRIPT.format(root=str(Path(__file__).resolve().parents[2]), store=str(root), kill_at=kill_at)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = os.environ | {"TMPDIR": str(temporary)}
    code = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env).returncode
    assert code == (0 if kill_at == 99 else 9)
    assert list(temporary.iterdir()) == []
    listed = [r["version"] for r in releases.read_index(root)]
    assert listed[0] == first.version and len(listed) == (2 if kill_at == 99 else 1)
    for version in listed:
        assert releases.verify(root, version) == []
    nxt = releases.publish(
        root,
        tables=_tables(),
        created_at=datetime(2026, 11, 26, 9, 0, 0),
        parameters={},
        inputs=[],
        input_fingerprint="third",
        code_version="t",
    )
    assert releases.verify(root, nxt.version) == [] and releases.read_index(root)[-1]["version"] == nxt.version
    assert not [p for p in root.iterdir() if p.name.startswith(".staging-")]


def test_a_labs_extra_analytes_join_the_dictionary_and_the_fingerprint(tmp_path: Path) -> None:
    from transforms.normalise import dictionary_lookup, resolve_analytes
    from warehouse.lookups import read_analyte_dictionary

    curated, curated_sha = read_analyte_dictionary()
    extra = tmp_path / "lab.csv"
    extra.write_text("hgnc,uniprot,label,mw_kda,aliases\nBP0001,Q00001,bench protein 1,,BP-0001|bench 1\n")
    both, both_sha = read_analyte_dictionary(extra=extra)
    assert both.height == curated.height + 1 and both_sha != curated_sha
    rows = schema.conform(
        pl.DataFrame({"analyte_raw": ["bench 1", "IL-6", "nope"], "platform": ["olink"] * 3}), schema.MEASUREMENT
    )
    named, held = resolve_analytes(rows, dictionary_lookup(both))
    assert sorted(named["analyte"].to_list()) == ["BP0001", "IL6"] and held.height == 1
    extra.write_text("hgnc,uniprot,label,mw_kda,aliases\nIL6,P05231,again,,IL6\n")
    with pytest.raises(ValueError, match="already in the curated dictionary: IL6"):
        read_analyte_dictionary(extra=extra)


@pytest.fixture
def object_store():
    """An fsspec in-memory file system: an object store without rename, as S3, GCS or Azure are."""
    import fsspec

    fs = fsspec.filesystem("memory")
    root = f"memory://releases-{os.urandom(4).hex()}"
    yield root
    fs.rm(root.removeprefix("memory://"), recursive=True)


def test_a_release_store_on_an_object_store_publishes_verifies_and_loads(object_store: str) -> None:
    from warehouse.client import load_release

    when = datetime(2026, 11, 25, 10, 0, 0)
    kwargs = {"created_at": when, "parameters": {}, "inputs": [], "code_version": "test"}
    a = releases.publish(object_store, tables=_tables(), input_fingerprint="fp1", **kwargs)  # type: ignore[arg-type]
    b = releases.publish(object_store, tables=_tables(), input_fingerprint="fp2", **kwargs)  # type: ignore[arg-type]
    assert (a.version, b.version) == ("2026.11.25-1", "2026.11.25-2")
    assert b.path == f"{object_store}/2026.11.25-2" and b.manifest["previous_version"] == a.version
    assert [i["version"] for i in releases.read_index(object_store)] == [a.version, b.version]
    assert releases.verify(object_store, b.version) == []
    loaded = load_release(object_store)
    assert loaded["manifest"]["version"] == b.version and loaded["reference_intervals"].num_rows == 0
    assert releases.read_table(object_store, a.version, "reference_quantiles").height == 0


def test_an_upload_that_fails_half_way_is_never_in_the_index(object_store: str, monkeypatch) -> None:
    from fsspec.implementations.memory import MemoryFileSystem

    from warehouse.client import load_release

    when = datetime(2026, 11, 25, 10, 0, 0)
    kwargs = {"created_at": when, "parameters": {}, "inputs": [], "code_version": "test"}
    good = releases.publish(object_store, tables=_tables(), input_fingerprint="fp1", **kwargs)  # type: ignore[arg-type]
    put = MemoryFileSystem.put_file

    def put_until_the_manifest(self, lpath, rpath, *args, **kw):  # the network drops before the manifest
        if str(rpath).endswith("manifest.json"):
            raise ConnectionError("connection reset")
        return put(self, lpath, rpath, *args, **kw)

    monkeypatch.setattr(MemoryFileSystem, "put_file", put_until_the_manifest)
    with pytest.raises(ConnectionError):
        releases.publish(object_store, tables=_tables(), input_fingerprint="fp2", **kwargs)  # type: ignore[arg-type]
    monkeypatch.setattr(MemoryFileSystem, "put_file", put)
    assert [i["version"] for i in releases.read_index(object_store)] == [good.version]
    assert load_release(object_store)["manifest"]["version"] == good.version  # readers see the old state
    retry = releases.publish(object_store, tables=_tables(), input_fingerprint="fp2", **kwargs)  # type: ignore[arg-type]
    assert retry.version == "2026.11.25-3"  # the half-uploaded name is never reused
    assert [i["version"] for i in releases.read_index(object_store)] == [good.version, retry.version]


def test_landing_archive_and_releases_may_be_object_store_urls_and_nothing_else(tmp_path: Path) -> None:
    from flows.config import ConfigError, load_settings

    env = {f"REFRANGES_{k.upper()}": f"s3://lab-bucket/{k}" for k in ("landing", "archive", "releases")}
    settings = load_settings(env=env, home=tmp_path)
    assert (settings.landing, settings.archive, settings.releases) == tuple(env.values())
    with pytest.raises(ConfigError, match="supported for landing, archive, releases only"):
        load_settings(env={"REFRANGES_QUARANTINE": "s3://lab-bucket/quarantine"}, home=tmp_path)


def test_write_once_keeps_the_first_bytes_and_concurrent_writers_share_no_temporary_file(
    tmp_path: Path, object_store: str
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from warehouse import storage

    data = b"sample_id,analyte,value\n" + b"S1,IL-6,2.5\n" * 200_000  # big enough for the writes to overlap
    for root in (tmp_path / "archive", f"{object_store}/archive"):
        with ThreadPoolExecutor(4) as pool:  # two parse tasks of one file archive the same bytes at once
            written = list(pool.map(storage.write_once, [root] * 8, ["ab/abcdef.csv"] * 8, [data] * 8))
        assert {str(w) for w in written} == {str(written[0])}
        assert storage.read_bytes(written[0]) == data
        assert storage.write_once(root, "ab/abcdef.csv", b"other") == written[0]  # there already: kept
        assert storage.read_bytes(written[0]) == data
        assert [storage.name_of(p) for p in storage.list_files(root)] == ["abcdef.csv"]  # no temporary left
    assert (tmp_path / "archive" / "ab" / "abcdef.csv").stat().st_mode & 0o222 == 0


def test_raw_files_written_before_the_olink_ngs_columns_read_them_as_null(tmp_path: Path) -> None:
    con = db.connect(tmp_path / "w.duckdb")
    loads.load_file(con, entry("old", rows=3), rows=measurement_rows("old", 3))
    old_file = tmp_path / "raw" / f"{sha('old')}.parquet"
    pl.read_parquet(old_file).select(sorted(OLD_RAW_COLUMNS)).write_parquet(old_file)  # as an older release wrote it
    new = measurement_rows("new", 2).with_columns(
        pl.lit("ext_ctrl").alias("assay_type"), pl.lit(9000).alias("read_count")
    )
    loads.load_file(con, entry("new", name="g.csv", rows=2), rows=new)
    got = loads.read_raw(con)
    assert got.height == 5 and got.columns == list(schema.MEASUREMENT)
    assert got.filter(pl.col("source_sha256") == sha("old"))["assay_type"].null_count() == 3
    assert got.filter(pl.col("source_sha256") == sha("new"))["read_count"].to_list() == [9000, 9000]
    # internal control rows are kept, but never handed to normalisation
    assert loads.raw_names(con)["n"].sum() == 3
    con.close()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process start times come from Linux' /proc")
def test_a_killed_runs_process_id_given_to_another_process_is_not_taken_for_the_run(tmp_path: Path) -> None:
    """`status` asked whether the run's process id was alive; once the system gave that id to another process
    (a long uptime, or a container whose runs always get the same small id), a killed run stayed "running now"
    for ever. The journal records when the run's process started, and an id alive since another start is no
    longer the run."""
    import json
    import subprocess

    warehouse = tmp_path / "warehouse.duckdb"
    loads.record_attempt(warehouse, "run-1")
    entry = json.loads(loads.attempt_journal(warehouse).read_text())
    assert entry["pid_started"] == loads.process_started(entry["pid"])  # this process: the run, running
    assert loads.last_attempt(warehouse)["state"] == "running"

    other = subprocess.Popen(["sleep", "30"])  # alive, under an id that once was the run's
    try:
        journal = loads.attempt_journal(warehouse)
        journal.write_text(json.dumps({**entry, "pid": other.pid}))
        assert loads.last_attempt(warehouse)["state"] == "killed"
        journal.write_text(json.dumps({**entry, "pid": other.pid, "pid_started": loads.process_started(other.pid)}))
        assert loads.last_attempt(warehouse)["state"] == "running"  # the same process: still the run
        journal.write_text(json.dumps({k: v for k, v in entry.items() if k != "pid_started"} | {"pid": other.pid}))
        assert loads.last_attempt(warehouse)["state"] == "running"  # a journal of an older refranges: the id alone
    finally:
        other.kill()
        other.wait()
