from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app, sql_hint

runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), env=env, catch_exceptions=False)


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["generate"],
        ["run"],
        ["demo"],
        ["sql"],
        ["releases"],
        ["releases", "list"],
        ["releases", "show"],
        ["releases", "verify"],
        ["serve"],
        ["score"],
        ["status"],
        ["files"],
        ["files", "list"],
        ["files", "retract"],
        ["files", "restore"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    result = invoke(*command, "--help")
    assert result.exit_code == 0 and "Usage" in result.output


def test_demo_reads_its_own_files_at_once_and_says_how_to_reach_its_home(tmp_path: Path, monkeypatch) -> None:
    """`demo` writes whole files and runs at once: a home's landing_min_age_seconds would only have made them
    wait. Its summary names the sql command line that reaches a --home given to it."""
    import flows.cli as cli

    cfg = tmp_path / "refranges.toml"
    cfg.write_text("landing_min_age_seconds = 120\n")
    ran: list[tuple[object, str]] = []
    monkeypatch.setattr(cli, "_run", lambda settings, fmt, hint: ran.append((settings, hint)) or 0)
    home = tmp_path / "home"
    assert invoke("demo", "--home", str(home), "--config", str(cfg)).exit_code == 0
    ((settings, hint),) = ran
    assert settings.landing_min_age_seconds == 0 and settings.home == home
    assert hint == f'REFRANGES_HOME={home.resolve()} refranges sql --config {cfg.resolve()} "select ..."'
    assert (home / "landing" / "manifest.csv").exists()


def test_generate_writes_the_demo_files(tmp_path: Path) -> None:
    result = invoke("generate", "--out", str(tmp_path), "--healthy", "20", "--patients", "5", "--seed", "3")
    assert result.exit_code == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "manifest.csv" in names and "olink_npx_batch1.csv" in names
    assert len((tmp_path / "manifest.csv").read_text().splitlines()) == 1 + 25 + 2  # 2 of 20 healthy return


def test_generate_into_a_place_it_cannot_write_says_so_in_one_line(tmp_path: Path) -> None:
    """`generate --out` a file's name (or below it) ended in a FileExistsError traceback."""
    taken = tmp_path / "notes.txt"
    taken.write_text("a file, not a folder")
    for out in (taken, taken / "demo"):
        result = invoke("generate", "--out", str(out), "--retest")
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
        assert f"cannot write the demo files into {out}" in " ".join(result.output.split())


def test_generate_retest_writes_the_retests_of_the_platform_asked_for(tmp_path: Path) -> None:
    """`--retest --platform explore-ht` wrote the Target 96 and MSD retests, which an Explore HT release cannot
    place: it now writes Explore HT NPX Parquet files, and the hint scores the folder (a `*.csv` glob missed
    them)."""
    mixed, explore = tmp_path / "mixed", tmp_path / "explore"
    assert invoke("generate", "--out", str(mixed), "--retest").exit_code == 0
    assert sorted(p.name for p in mixed.iterdir()) == [
        "msd_vplex_retest_visit1.csv",
        "msd_vplex_retest_visit2.csv",
        "olink_npx_retest_visit1.csv",
        "olink_npx_retest_visit2.csv",
        "retest_manifest.csv",
    ]
    result = invoke("generate", "--out", str(explore), "--retest", "--platform", "explore-ht")
    assert result.exit_code == 0 and f"refranges score {explore}" in " ".join(result.output.split())
    assert sorted(p.name for p in explore.iterdir()) == [
        "explore_ht_retest_manifest.csv",
        "explore_ht_retest_visit1.parquet",
        "explore_ht_retest_visit2.parquet",
    ]
    assert invoke("generate", "--out", str(tmp_path / "x"), "--retest", "--platform", "reveal").exit_code == 1


def test_errors_exit_non_zero_with_one_line_reason(tmp_path: Path) -> None:
    cfg = tmp_path / "refranges.toml"
    cfg.write_text('home = "x"\nno_such_key = 1\n')
    bad = invoke("run", "--config", str(cfg))
    assert bad.exit_code == 2 and "unknown key 'no_such_key'" in bad.output
    missing = invoke("run", "--config", str(tmp_path / "nope.toml"))
    assert missing.exit_code == 2 and "not found" in missing.output
    cfg.write_text(f'home = "{tmp_path / "home"}"\n')
    assert "no releases" in invoke("releases", "list", "--config", str(cfg)).output
    shown = invoke("releases", "show", "2020.01.01-1", "--config", str(cfg))
    assert shown.exit_code == 1 and "no release 2020.01.01-1 under" in shown.output and "releases list" in shown.output
    assert "current folder" not in shown.output  # a home given as a full path needs no word on where it is
    latest = invoke("releases", "show", "latest", "--config", str(cfg))
    assert latest.exit_code == 1 and "no releases" in latest.output and "refranges run" in latest.output
    sql = invoke("sql", "select 1", "--config", str(cfg))
    assert sql.exit_code == 1 and "no warehouse" in sql.output
    files = invoke("files", "list", "--config", str(cfg))
    assert files.exit_code == 1 and "no warehouse" in files.output and "refranges run" in files.output
    state = invoke("status", "--config", str(cfg))
    assert state.exit_code == 1 and "no warehouse" in state.output
    assert invoke("generate", "--out", str(tmp_path), "--healthy", "0").exit_code == 1


def test_a_command_run_outside_any_home_says_which_folder_it_looked_in(tmp_path: Path, monkeypatch) -> None:
    """Started from another folder than the one where `make demo` ran (no refranges.toml, no REFRANGES_HOME),
    the commands said "no warehouse at data/warehouse.duckdb; run `refranges run` first": a run there would
    start a new, empty home. They now give the full path, say it is the default home in the current folder,
    and how to choose another."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REFRANGES_HOME", raising=False)
    hint = "(the default home, ./data, in the current folder; REFRANGES_HOME=DIR or --config FILE chooses another)"
    home = tmp_path.resolve() / "data"

    def said(*args: str) -> str:
        result = invoke(*args)
        assert result.exit_code == 1, args
        return " ".join(result.output.split())  # the console wraps long lines

    retract = ["files", "retract", "a.csv", "--reason", "wrong plate"]
    for command in (["status"], ["sql", "select 1"], ["files", "list"], retract, ["files", "restore", "a.csv"]):
        assert f"no warehouse at {home / 'warehouse.duckdb'} {hint}" in said(*command)
    assert f"no releases yet under {home / 'releases'} {hint}; `refranges run` publishes one" in said(
        "releases", "show", "latest"
    )
    assert f"no release 2020.01.01-1 under {home / 'releases'} {hint}" in said("releases", "show", "2020.01.01-1")
    assert f"no releases under {home / 'releases'} {hint}; nothing to verify" in said("releases", "verify")
    export = tmp_path / "olink.csv"
    export.write_text("SampleID;Assay;NPX\n")
    assert f"no releases yet under {home / 'releases'} {hint}" in said("score", str(export), "--sample", "S1")
    assert f"no release 1999 under {home / 'releases'} {hint}" in said(
        "score", str(export), "--sample", "S1", "--release", "1999"
    )
    assert not home.exists()  # nothing made a home (retract took the writer's lock first, which made one)
    monkeypatch.setenv("REFRANGES_HOME", str(tmp_path / "elsewhere"))
    elsewhere = tmp_path / "elsewhere" / "warehouse.duckdb"
    assert said("status") == f"error: no warehouse at {elsewhere}; run `refranges run` (or `make demo`) first"


@pytest.mark.slow
def test_run_from_the_command_line_then_list_show_verify_and_query(tmp_path: Path, prefect_backend) -> None:
    home = tmp_path / "home"
    cfg = tmp_path / "refranges.toml"
    cfg.write_text(f'home = "{home}"\nsubject_key = "k"\nrcv_min_subjects = 10\n')
    assert invoke("generate", "--out", str(home / "landing"), "--healthy", "160", "--patients", "20").exit_code == 0
    result = invoke("run", "--config", str(cfg))
    assert result.exit_code == 0, result.output
    for text in ("files ingested", "reference groups published", "release", "warehouse", "duckdb -readonly"):
        assert text in result.output
    assert f'refranges sql --config {cfg.resolve()} "select ..."' in result.output  # reaches this warehouse
    # what `demo --home DIR` tells (sql_hint): the home as REFRANGES_HOME reaches the same warehouse
    hinted = sql_hint(None, home)
    assert hinted == f'REFRANGES_HOME={home.resolve()} refranges sql "select ..."'
    env = {"REFRANGES_HOME": str(home.resolve()), "REFRANGES_SUBJECT_KEY": "k"}
    reached = invoke("sql", "select count(*) as n from files", "--format", "csv", env=env)
    assert reached.exit_code == 0 and int(reached.output.splitlines()[1]) > 0, reached.output
    listed = json.loads(invoke("releases", "list", "--json", "--config", str(cfg)).output)
    version = listed[0]["version"]
    shown = json.loads(invoke("releases", "show", version, "--config", str(cfg)).output)
    assert shown["version"] == version and "reference_intervals.parquet" in shown["files"]
    assert json.loads(invoke("releases", "show", "latest", "--config", str(cfg)).output) == shown
    assert invoke("releases", "verify", "--config", str(cfg)).exit_code == 0
    assert invoke("releases", "verify", "latest", "--config", str(cfg)).output.strip() == f"{version}: ok"
    again = invoke("run", "--format", "json", "--config", str(cfg))  # for schedulers: the summary as JSON
    summary = json.loads(again.stdout)  # progress and warnings go to stderr
    assert (
        again.exit_code == 0 and summary["release_version"] is None and "inputs unchanged" in summary["release_message"]
    )
    assert {f["status"] for f in summary["files"]} == {"skipped"} and set(summary["stage_seconds"]) >= {"ingest"}
    out = invoke("sql", "select count(*) as n from reference_intervals", "--format", "csv", "--config", str(cfg))
    assert out.exit_code == 0 and out.output.splitlines()[0] == "n" and int(out.output.splitlines()[1]) > 0
    state = json.loads(invoke("status", "--format", "json", "--config", str(cfg)).stdout)
    assert state["last_run"]["status"] == "completed" and state["releases"]["latest"]["version"] == version
    assert state["runs"] == {"completed": 2} and state["files"]["loaded"] > 0 and state["quarantined_files"] == []
    bad = tmp_path / "broken.csv"
    bad.write_text("sample_id,analyte,value,unit,plate_id\nS1,IL-6,n/a?,pg/mL,P1\n")
    assert invoke("ingest", str(bad), "--config", str(cfg)).exit_code == 1  # held back whole: exit 1
    shown_status = " ".join(invoke("status", "--config", str(cfg)).output.split())
    assert "open problems │ files 1 quarantined whole: broken.csv" in shown_status, shown_status
    assert f"latest release │ {version}" in shown_status and "value_is_number 1" in shown_status
    assert "; QC report " in shown_status and ".html" in shown_status  # the page of the last run, to open
    rejected = invoke("sql", "drop table files", "--config", str(cfg))
    assert rejected.exit_code == 1 and "read-only" in rejected.output.lower()
    copied = invoke("sql", f"copy (select 1) to '{tmp_path}/pwned.csv'", "--config", str(cfg))
    assert copied.exit_code == 1 and "COPY statements are refused" in copied.output
    assert not (tmp_path / "pwned.csv").exists()
    passwd = invoke("sql", "select * from read_csv('/etc/passwd')", "--config", str(cfg))
    assert passwd.exit_code == 1 and "disabled by configuration" in " ".join(passwd.output.split())
    # every example of docs/warehouse.md runs as written; none takes the latest release as max(version), which
    # as text puts 2026.12.07-9 after 2026.12.07-10
    doc = (Path(__file__).resolve().parents[2] / "docs" / "warehouse.md").read_text(encoding="utf-8")
    examples = re.findall(r"```sql\n(.*?)```", doc, flags=re.S)
    assert len(examples) >= 8 and not [e for e in examples if "max(version)" in e]
    for example in examples:
        ran = invoke("sql", example, "--format", "csv", "--config", str(cfg))
        assert ran.exit_code == 0, f"{example}\n{ran.output}"

    # a demo person with two visits, exported in the generic tidy format, placed against the release
    person = invoke(
        "sql",
        "select sample_id, analyte, value, unit, plate_id, collection_date as run_date, platform, panel "
        "from measurements where platform = 'msd' and matrix = 'serum' and subject_key = ("
        "  select subject_key from measurements where matrix = 'serum' group by subject_key "
        "  having count(distinct sample_id) = 2 order by subject_key limit 1) order by run_date, analyte",
        "--format",
        "csv",
        "--config",
        str(cfg),
    )
    assert person.exit_code == 0 and len(person.output.splitlines()) == 1 + 2 * 10
    results_file = tmp_path / "person.csv"
    results_file.write_text(person.output)
    scored = invoke("score", str(results_file), "--format", "json", "--config", str(cfg))
    assert scored.exit_code == 0, scored.output
    report = json.loads(scored.output)
    assert "not a diagnosis" in report["disclaimer"] and report["release"] == version
    (one,) = report["people"]  # a tidy file is one person's own results, visits included
    rows = one["results"]
    assert len(rows) == 20 and all(r["status"] == "placed" for r in rows)
    assert all(r["batch_method"].startswith("as given") for r in rows)
    first_date = min(r["collection_date"] for r in rows)
    retests = [r for r in rows if r["collection_date"] != first_date]
    assert len(retests) == 10
    assert all(
        r["change_vs_rcv"] and r["change"].endswith("%") for r in retests if "censored" not in r["change_vs_rcv"]
    )
    verdicts = {r["change_vs_rcv"].split(" (")[0] for r in retests}
    assert "within the reference change value" in verdicts
    table = invoke("score", str(results_file), "--config", str(cfg))
    text = " ".join(table.output.split())
    assert table.exit_code == 0 and "RCV: reference change value" in text and "not a diagnosis" in text


def test_ingest_dry_run_reports_per_file_and_writes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cfg = tmp_path / "refranges.toml"
    cfg.write_text(f'home = "{home}"\n')
    files = tmp_path / "in"
    files.mkdir()
    (files / "bad.csv").write_text("sample_id,analyte,value,unit,plate_id\nS1,IL-6,abc,pg/mL,P1\nS2,IL-6,1,pg/mL,P1\n")
    (files / "empty.csv").write_bytes(b"")
    result = runner.invoke(
        app,
        ["ingest", "--dry-run", "--config", str(cfg), str(files / "bad.csv"), str(files / "empty.csv")],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 1
    assert (
        "would load" in result.output and "would quarantine" in result.output and "the file is empty" in result.output
    )
    assert not home.exists()
    as_json = runner.invoke(
        app,
        [
            "ingest",
            "--dry-run",
            "--format",
            "json",
            "--config",
            str(cfg),
            str(files / "bad.csv"),
            str(files / "empty.csv"),
        ],
    )
    report = json.loads(as_json.stdout)
    assert as_json.exit_code == 1 and report["dry_run"] is True
    bad, empty = report["files"]
    # one row of two unusable: over the file threshold, so the whole file would be held back
    assert (bad["status"], bad["rows_read"], bad["rows_loaded"], bad["rows_quarantined"]) == ("quarantined", 2, 0, 2)
    assert empty["status"] == "quarantined" and "the file is empty" in empty["reason"]
    # and why: the rows each file would hold back, by check, with the first of them (it said only "1 of 2 rows")
    assert bad["held"] == [
        {
            "check": "value_is_number",
            "rows": 1,
            "example": "bad.csv: line 2: value 'abc' for IL-6 is not a number; correct the cell or re-export",
        }
    ]
    assert empty["held"] == []
    assert "rows that would be held back" in result.output and "value_is_number" in result.output
    assert invoke("ingest", "--format", "yaml", str(files / "bad.csv")).exit_code == 2
    assert invoke("ingest", str(files / "nope.csv")).exit_code == 1


def test_releases_diff_compares_two_versions(tmp_path: Path) -> None:
    from datetime import datetime

    from tests.transforms.test_diff import frame, group
    from transforms import schema
    from warehouse import releases

    home = tmp_path / "home"
    cfg = tmp_path / "refranges.toml"
    cfg.write_text(f'home = "{home}"\n')
    root = home / "releases"
    when = datetime(2026, 11, 25, 9, 0, 0)
    q = schema.empty(schema.REFERENCE_QUANTILE)
    a = releases.publish(
        root,
        tables={"reference_intervals": frame([group("IL6", 1.0, (0.8, 1.2))]), "reference_quantiles": q},
        created_at=when,
        parameters={},
        inputs=[],
        input_fingerprint="a",
        code_version="t",
    )
    b = releases.publish(
        root,
        tables={
            "reference_intervals": frame([group("IL6", 2.0, (1.8, 2.2)), group("TNF", 1.0, (0.8, 1.2))]),
            "reference_quantiles": q,
        },
        created_at=when,
        parameters={},
        inputs=[],
        input_fingerprint="b",
        code_version="t",
    )
    assert b.manifest["previous_version"] == a.version
    assert b.manifest["changes_since_previous"]["groups_added"] == ["TNF msd serum pg/mL sex=all"]
    out = invoke("releases", "diff", a.version, b.version, "--config", str(cfg))
    assert out.exit_code == 0
    d = json.loads(out.output)
    assert d["groups_added"] == ["TNF msd serum pg/mL sex=all"] and d["limits_moved"][0]["new"] == 2.0
    assert invoke("releases", "diff", a.version, "1999.01.01-1", "--config", str(cfg)).exit_code == 1
    assert json.loads(invoke("releases", "diff", a.version, "latest", "--config", str(cfg)).output) == d


def test_output_to_a_pipe_is_printed_at_full_width(tmp_path: Path) -> None:
    """A log or a pipe gets every reason on one line (rich would wrap a table into 80 columns)."""
    import os
    import subprocess
    import sys

    cfg = tmp_path / "refranges.toml"
    cfg.write_text(f'home = "{tmp_path / "home"}"\n')
    odd = tmp_path / "a_rather_long_file_name_that_a_lab_might_well_use_for_its_export_2026-12-03.csv"
    odd.write_text("foo,bar\n1,2\n")
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "ingest", "--dry-run", "--config", str(cfg), str(odd)],
        capture_output=True,
        text=True,
        env=env | {"PYTHONPATH": str(Path(__file__).parents[2])},
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    lines = done.stdout.splitlines()
    reason = f"{odd.name}: no known export layout in the first 200 lines"
    assert any(reason in line and "see docs/input-formats.md" in line for line in lines), done.stdout
    assert max(len(line) for line in lines) > 200  # not squeezed into 80 columns


def test_csv_output_neutralises_cells_a_spreadsheet_would_run_as_formulas() -> None:
    import polars as pl

    from flows.cli import spreadsheet_safe

    frame = pl.DataFrame(
        {
            "sample_id": ['=HYPERLINK("http://x")', "+41", "-S1", "@SUM(A1)", "\tx", "S-1", None],
            "value": [-1.5, 2.0, -3.0, 0.0, 1.0, 2.0, None],
        }
    )
    out = spreadsheet_safe(frame)
    assert out["sample_id"].to_list() == [
        "'=HYPERLINK(\"http://x\")", "'+41", "'-S1", "'@SUM(A1)", "'\tx", "S-1", None,
    ]  # fmt: skip
    assert out["value"].to_list() == frame["value"].to_list()  # numbers stay numbers


def test_sql_csv_output_is_spreadsheet_safe(tmp_path: Path) -> None:
    from warehouse import db

    cfg = tmp_path / "refranges.toml"
    cfg.write_text(f'home = "{tmp_path}"\n')
    db.connect(tmp_path / "warehouse.duckdb").close()
    out = invoke("sql", "select '=cmd|calc' as sample_id, -2.5 as value", "--format", "csv", "--config", str(cfg))
    assert out.exit_code == 0 and out.output.splitlines() == ["sample_id,value", "'=cmd|calc,-2.5"]


def test_sql_table_prints_floats_to_ten_digits_and_csv_keeps_every_digit(tmp_path: Path) -> None:
    from warehouse import db

    cfg = tmp_path / "refranges.toml"
    cfg.write_text(f'home = "{tmp_path}"\n')
    db.connect(tmp_path / "warehouse.duckdb").close()
    query = "select -2.4824::double - 3e-16 as limit_, 0.1::double + 0.2 as s, 1e-5::double as small, 42 as n, 'x' as t"
    table = invoke("sql", query, "--config", str(cfg), env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    row = next(line for line in table.output.splitlines() if "42" in line)
    assert [c.strip() for c in row.strip("│ ").split("│")] == ["-2.4824", "0.3", "1e-05", "42", "x"]
    csv = invoke("sql", query, "--format", "csv", "--config", str(cfg))
    assert csv.output.splitlines()[1] == "-2.4824000000000006,0.30000000000000004,0.00001,42,x"


def test_text_that_looks_like_rich_markup_is_printed_as_it_is(tmp_path: Path) -> None:
    """Query results, file names and reasons are printed verbatim: rich read a value such as ``[pool_1]`` as a
    style tag and dropped it from the table, and ``[platform_thresholds.msd]`` from an error."""
    from warehouse import db

    cfg = tmp_path / "refranges.toml"
    cfg.write_text(f'home = "{tmp_path}"\n')
    db.connect(tmp_path / "warehouse.duckdb").close()
    table = invoke("sql", "select '[bold]IL-6[/bold] [pool_1]' as label", "--config", str(cfg), env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "[bold]IL-6[/bold] [pool_1]" in table.output, table.output
    cfg.write_text(f'home = "{tmp_path}"\n[platform_thresholds.msd]\ncontrol_cv_max = -1\n')
    bad = invoke("releases", "list", "--config", str(cfg), env={"COLUMNS": "300"})
    assert bad.exit_code == 2 and "[platform_thresholds.msd] control_cv_max = -1.0 must be a CV" in bad.output


def test_a_warehouse_path_that_holds_no_duckdb_database_is_named_in_one_line(tmp_path: Path) -> None:
    """A damaged warehouse file (or another file at its path) stopped `run` in DuckDB's IOException with a
    traceback naming the run's private copy, and Prefect's failed flow run with it."""
    from warehouse import db

    cfg = tmp_path / "refranges.toml"
    cfg.write_text(f'home = "{tmp_path}"\n')
    (tmp_path / "landing").mkdir()
    (tmp_path / "landing" / "m.csv").write_text(
        "sample_id,subject_id,cohort,matrix,sex,age\nS1,P1,healthy,serum,F,40\n"
    )
    warehouse = tmp_path / "warehouse.duckdb"
    warehouse.write_bytes(b"PK\x03\x04 not a database")
    for args in (["run"], ["ingest", str(tmp_path / "landing")], ["ingest", "--dry-run", str(tmp_path / "landing")]):
        refused = invoke(*args, "--config", str(cfg), env={"COLUMNS": "400"})
        assert refused.exit_code == 1, (args, refused.output)
        assert refused.output.startswith(f"error: {warehouse}: not a DuckDB database"), refused.output
        assert "Traceback" not in refused.output
    assert warehouse.read_bytes() == b"PK\x03\x04 not a database"  # left as it was
    with pytest.raises(db.WarehouseDamagedError, match="not a DuckDB database"):
        db.connect(warehouse, read_only=True)
    warehouse.unlink()
    db.connect(warehouse).close()
    db.check_database_file(warehouse)  # a real one passes


def test_a_raw_store_without_a_loaded_files_rows_is_named_in_one_line_and_nothing_changes(tmp_path: Path) -> None:
    """The folder raw/ cleaned (or restored from an older backup than the warehouse file): `run` stopped in
    DuckDB's IOException with a traceback naming the run's private copy. It now names the missing raw file,
    the export whose rows it held and where the archive keeps that export, before anything starts."""
    import hashlib

    import polars as pl

    from transforms import schema
    from warehouse import db, loads

    cfg = tmp_path / "refranges.toml"
    cfg.write_text(f'home = "{tmp_path}"\n')
    (tmp_path / "landing").mkdir()
    warehouse = tmp_path / "warehouse.duckdb"
    sha = hashlib.sha256(b"plate 1").hexdigest()
    rows = schema.conform(
        pl.DataFrame({"source_file": ["plate1.csv"], "source_sha256": [sha], "line_number": [2], "value": [1.0]}),
        schema.MEASUREMENT,
    )
    entry = loads.LedgerEntry(sha, "plate1.csv", "tidy", 10, 1, 1, 0, "loaded", None, "archive/ab/x.csv", "run-1")
    with db.connect(warehouse) as con:
        loads.load_file(con, entry, rows=rows)
    (tmp_path / "raw" / f"{sha}.parquet").unlink()
    before = warehouse.read_bytes()
    refused = invoke("run", "--config", str(cfg), env={"COLUMNS": "600"})
    assert refused.exit_code == 1, refused.output
    assert refused.output.startswith("error: the raw store lacks 1 of the 1 loaded files' rows: "), refused.output
    assert f"raw/{sha}.parquet (the rows of plate1.csv, archived as archive/ab/x.csv)" in refused.output
    assert "Traceback" not in refused.output
    assert warehouse.read_bytes() == before
    with db.connect(warehouse, read_only=True) as con, pytest.raises(loads.RawStoreDamagedError):
        loads.check_raw_store(con)
    with pytest.raises(loads.RawStoreDamagedError):
        loads.check_raw_store_of(warehouse)
    with db.connect(warehouse):  # held open for writing (an analyst's session): DuckDB refuses a second open
        loads.check_raw_store_of(warehouse)  # so it is not checked here; a run copies the file all the same


def test_a_damaged_release_index_is_named_in_one_line_before_the_run_starts(tmp_path: Path) -> None:
    """A release store whose index.json is not JSON (a half-restored backup, a hand edit) stopped `run` with a
    traceback in a failed flow run: the run reads it to decide whether to publish."""
    cfg = tmp_path / "refranges.toml"
    cfg.write_text(f'home = "{tmp_path}"\n')
    (tmp_path / "landing").mkdir()
    index = tmp_path / "releases" / "index.json"
    index.parent.mkdir()
    for damaged, why in (("[{", "not valid JSON"), ('{"releases": 3}', "lists no releases")):
        index.write_text(damaged)
        refused = invoke("run", "--config", str(cfg), env={"COLUMNS": "400"})
        assert refused.exit_code == 1, refused.output
        assert refused.output.startswith(f"error: {index}: {why}"), refused.output
        assert "nothing was changed" in refused.output and "Traceback" not in refused.output
        assert index.read_text() == damaged
        assert not (tmp_path / "warehouse.duckdb").exists()  # stopped before anything was written


def test_sql_table_shows_the_first_rows_and_says_more_follow(tmp_path: Path) -> None:
    """`select * from measurements` is tens of millions of rows at cohort scale: the table held them all in
    memory and drew them for minutes. It shows the first rows and says how to get the rest."""
    from warehouse import db

    cfg = tmp_path / "refranges.toml"
    cfg.write_text(f'home = "{tmp_path}"\n')
    db.connect(tmp_path / "warehouse.duckdb").close()
    many = invoke("sql", "select range as n from range(1000) order by n", "--max-rows", "5", "--config", str(cfg))
    assert many.exit_code == 0, many.output
    shown = [line.strip("│ ") for line in many.stdout.splitlines() if line.strip("│ ").isdigit()]
    assert shown == ["0", "1", "2", "3", "4"]
    assert "the first 5 rows; more follow" in many.stderr and "--format csv" in many.stderr
    exact = invoke("sql", "select range as n from range(5)", "--max-rows", "5", "--config", str(cfg))
    assert exact.exit_code == 0 and "more follow" not in exact.output
    assert invoke("sql", "select 1", "--max-rows", "0", "--config", str(cfg)).exit_code != 0


def test_sql_csv_gives_every_row_in_batches_with_one_header(tmp_path: Path) -> None:
    from flows.cli import CSV_BATCH_ROWS
    from warehouse import db

    cfg = tmp_path / "refranges.toml"
    cfg.write_text(f'home = "{tmp_path}"\n')
    db.connect(tmp_path / "warehouse.duckdb").close()
    n = 2 * CSV_BATCH_ROWS + 7
    out = invoke(
        "sql", f"select range as n, '=x' as t from range({n}) order by n", "--format", "csv", "--config", str(cfg)
    )
    lines = out.stdout.splitlines()
    assert lines[0] == "n,t" and len(lines) == n + 1
    assert lines[1] == "0,'=x" and lines[-1] == f"{n - 1},'=x"  # every batch spreadsheet-safe
    none = invoke("sql", "select 1 as n, 'a' as t where false", "--format", "csv", "--config", str(cfg))
    assert none.exit_code == 0 and none.stdout.splitlines() == ["n,t"]


def test_sql_json_gives_every_row_as_one_array_written_in_batches(tmp_path: Path, monkeypatch) -> None:
    """JSON was made from the whole result as one frame (4 GB for three columns of 15 million rows); it is
    written batch by batch and is still one array, equal to polars' own JSON of the whole result."""
    import json

    import polars as pl

    from flows import cli
    from warehouse import db

    cfg = tmp_path / "refranges.toml"
    cfg.write_text(f'home = "{tmp_path}"\n')
    db.connect(tmp_path / "warehouse.duckdb").close()
    monkeypatch.setattr(cli, "CSV_BATCH_ROWS", 3)
    query = "select range as n, 'a\"b' as t, if(range = 4, null, range / 2) as h from range(8) order by n"
    out = invoke("sql", query, "--format", "json", "--config", str(cfg))
    assert out.exit_code == 0
    whole = pl.DataFrame({"n": range(8), "t": ['a"b'] * 8, "h": [k / 2 if k != 4 else None for k in range(8)]})
    assert json.loads(out.stdout) == json.loads(whole.write_json())
    none = invoke("sql", "select 1 as n where false", "--format", "json", "--config", str(cfg))
    assert none.exit_code == 0 and json.loads(none.stdout) == []


def test_sql_gives_joins_lists_maps_and_intervals_in_every_format(tmp_path: Path) -> None:
    """An analyst's everyday queries crashed with a polars traceback: a join's ``select *`` (its key columns
    twice) as csv or json, ``list(...)`` or ``show all tables`` as csv, ``max(t) - min(t)`` (an interval) in
    every format, ``histogram(...)`` (a map) as json. Repeated names get ``_1`` as the table always showed;
    nested values are JSON text in a CSV cell; intervals and blobs are DuckDB's text."""
    import csv
    import io
    import json

    from warehouse import db

    cfg = tmp_path / "refranges.toml"
    cfg.write_text(f'home = "{tmp_path}"\n')
    db.connect(tmp_path / "warehouse.duckdb").close()
    join = "select * from (select 'IL6' as analyte, 1 as n) a, (select 'IL6' as analyte, 2 as N) b"
    as_csv = invoke("sql", join, "--format", "csv", "--config", str(cfg))
    assert as_csv.exit_code == 0, as_csv.output
    assert as_csv.stdout.splitlines() == ["analyte,n,analyte_1,N_1", "IL6,1,IL6,2"]
    as_json = invoke("sql", join, "--format", "json", "--config", str(cfg))
    assert json.loads(as_json.stdout) == [{"analyte": "IL6", "n": 1, "analyte_1": "IL6", "N_1": 2}]
    table = invoke("sql", join, "--config", str(cfg), env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "analyte_1" in table.output and "N_1" in table.output

    query = (
        "select timestamp '2026-12-07 12:00' - timestamp '2026-12-06 10:30' as span, [1.5::double, 2.0] as l, "
        "{'lower': 1, 'upper': [2, 3]} as s, histogram(x) as h, 'ab'::blob as b, 7::variant as v "
        "from (values ('F'), ('F'), ('M')) t(x)"
    )
    rows = list(csv.reader(io.StringIO(invoke("sql", query, "--format", "csv", "--config", str(cfg)).stdout)))
    assert rows[0] == ["span", "l", "s", "h", "b", "v"]
    span, lst, struct, hist, blob, variant = rows[1]
    assert span == "1 day 01:30:00" and blob == "ab" and variant == "7"
    assert json.loads(lst) == [1.5, 2.0] and json.loads(struct) == {"lower": 1, "upper": [2, 3]}
    assert json.loads(hist) == {"F": 2, "M": 1}
    out = invoke("sql", query, "--format", "json", "--config", str(cfg))
    assert out.exit_code == 0, out.output
    [row] = json.loads(out.stdout)
    assert row["span"] == "1 day 01:30:00" and row["l"] == [1.5, 2.0] and row["s"] == {"lower": 1, "upper": [2, 3]}
    assert json.loads(row["h"]) == {"F": 2, "M": 1}  # a map's keys need not be text: its JSON as text
    table = invoke("sql", query, "--config", str(cfg), env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "1 day 01:30:00" in table.output, table.output
    shown = invoke("sql", "show all tables", "--format", "csv", "--config", str(cfg))
    assert shown.exit_code == 0 and shown.stdout.startswith("database,schema,name,column_names"), shown.output


def test_sql_takes_a_query_that_begins_with_a_comment(tmp_path: Path) -> None:
    """docs/warehouse.md's examples begin with a `--` comment line; pasted into `refranges sql` they were
    read as an unknown option ("No such option: -- median IL-6 ...")."""
    from warehouse import db

    cfg = tmp_path / "refranges.toml"
    cfg.write_text(f'home = "{tmp_path}"\n')
    db.connect(tmp_path / "warehouse.duckdb").close()
    out = invoke("sql", "-- how many files\nselect count(*) as n from files", "--format", "csv", "--config", str(cfg))
    assert out.exit_code == 0 and out.output.splitlines() == ["n", "0"], out.output
    typo = invoke("sql", "select 1", "--fromat", "csv", "--config", str(cfg))
    assert typo.exit_code != 0 and "--fromat" in typo.output  # a mistyped option is still named


def test_a_failed_query_keeps_duckdbs_hint_on_its_one_line(tmp_path: Path) -> None:
    """A mistyped table or column name: DuckDB says which name was meant, on its second line, and the one-line
    reason kept only the first ("Table with name reference_interval does not exist!")."""
    from warehouse import db

    cfg = tmp_path / "refranges.toml"
    cfg.write_text(f'home = "{tmp_path}"\n')
    db.connect(tmp_path / "warehouse.duckdb").close()
    table = invoke("sql", "select * from reference_interval", "--config", str(cfg))
    assert table.exit_code == 1 and 'Did you mean "reference_intervals"?' in table.output, table.output
    column = invoke("sql", "select analite from reference_intervals", "--config", str(cfg))
    assert column.exit_code == 1 and '"analyte"' in column.output and "Candidate bindings" in column.output
    typo = invoke("sql", "selec 1", "--config", str(cfg))
    assert typo.exit_code == 1 and 'syntax error at or near "selec"' in typo.output and "^" not in typo.output
    assert len(typo.output.strip().splitlines()) == 1 and "LINE 1" not in typo.output


def test_a_configured_landing_folder_that_does_not_exist_is_refused_not_created(tmp_path: Path) -> None:
    """A mistyped landing path, or a share that is not mounted: the run stops with the path and what to do,
    before any server starts, and creates nothing there (it used to create the folder empty and report
    "no reference group reached the minimum n")."""
    from flows.config import check_landing, load_settings

    missing = tmp_path / "share" / "exports"
    cfg = tmp_path / "refranges.toml"
    cfg.write_text(f'home = "{tmp_path / "home"}"\nlanding = "{missing}"\n')
    out = invoke("run", "--config", str(cfg))
    assert out.exit_code == 2 and str(missing) in out.output and "does not exist" in out.output
    assert not missing.exists() and not (tmp_path / "share").exists()
    with pytest.raises(FileNotFoundError, match="landing folder does not exist"):
        check_landing(load_settings(cfg))  # what the scheduled flows call too
    missing.mkdir(parents=True)
    check_landing(load_settings(cfg))  # there now: fine
    cfg.write_text(f'home = "{tmp_path / "fresh"}"\n')
    check_landing(load_settings(cfg))  # the home's own landing folder is created on first use: fine
    cfg.write_text(f'home = "{tmp_path / "home"}"\nlanding = "s3://bucket/landing"\n')
    check_landing(load_settings(cfg))  # an object store: listed as it is


def test_ingest_takes_folders_and_refuses_two_files_of_one_name_outside_the_landing_folder(tmp_path: Path) -> None:
    """The ledger knows a file outside the landing folder by its file name: two of one name would replace each
    other, so they are refused with what to do; in run folders of the landing folder they are two files."""
    home = tmp_path / "home"
    cfg = tmp_path / "refranges.toml"
    cfg.write_text(f'home = "{home}"\n')
    body = "sample_id,analyte,value,unit,plate_id\n{}\n"
    sent = tmp_path / "sent"
    for run, row in [("run1", "S1,IL-6,1.5,pg/mL,P1"), ("run2", "S2,IL-6,2.5,pg/mL,P2")]:
        for root in (sent, home / "landing"):
            (root / run).mkdir(parents=True, exist_ok=True)
            (root / run / "export.csv").write_text(body.format(row))
    (sent / ".git").mkdir()
    (sent / ".git" / "export.csv").write_text(body.format("S9,IL-6,9,pg/mL,P9"))
    refused = runner.invoke(app, ["ingest", "--dry-run", "--config", str(cfg), str(sent)], env={"COLUMNS": "300"})
    assert refused.exit_code == 1
    said = " ".join(refused.output.split())
    assert "2 files would go by the name export.csv" in said and str(sent / "run1" / "export.csv") in said
    assert ".git" not in said  # a hidden folder is not read
    twice = [str(sent / "run1"), str(sent / "run1" / "export.csv")]  # one file, named twice
    one = runner.invoke(app, ["ingest", "--dry-run", "--format", "json", "--config", str(cfg), *twice])
    assert one.exit_code == 0, one.output
    assert [(f["name"], f["status"]) for f in json.loads(one.stdout)["files"]] == [("export.csv", "loaded")]
    landed = runner.invoke(
        app, ["ingest", "--dry-run", "--format", "json", "--config", str(cfg), str(home / "landing")]
    )
    assert landed.exit_code == 0, landed.output
    names = [f["name"] for f in json.loads(landed.stdout)["files"]]
    assert names == ["run1/export.csv", "run2/export.csv"]
    assert not (home / "warehouse.duckdb").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no file in the folder" in runner.invoke(app, ["ingest", "--config", str(cfg), str(empty)]).output


def test_a_run_that_completed_with_problems_exits_1_for_the_scheduler(tmp_path: Path, prefect_backend) -> None:
    """`refranges run` exited 0 whatever it met, so cron or a CI job took a run with an export quarantined whole
    (or the release blocked) for a clean one; `ingest` already exited 1 for a quarantined file."""
    home = tmp_path / "home"
    cfg = tmp_path / "refranges.toml"
    cfg.write_text(f'home = "{home}"\nsubject_key = "k"\n')
    (home / "landing").mkdir(parents=True)
    (home / "landing" / "a.csv").write_text("sample_id,analyte,value,unit,plate_id\nS1,IL-6,1.5,pg/mL,P1\n")
    (home / "landing" / "b.csv").write_text("")
    problems = invoke("run", "--format", "json", "--config", str(cfg))
    assert problems.exit_code == 1 and isinstance(problems.exception, SystemExit)
    summary = json.loads(problems.stdout)  # the whole summary all the same
    assert summary["status"] == "completed_with_problems", summary
    clean = invoke("run", "--config", str(cfg))  # the quarantined file is known now: nothing new, a clean run
    assert clean.exit_code == 0 and "completed_with_problems" not in clean.output, clean.output


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (None, "No such file or directory; give a CSV that exists"),
        ("hgnc;uniprot\nX;Y\n", "no column hgnc, uniprot, label, mw_kda, aliases (it has hgnc;uniprot)"),
        ("hgnc,uniprot,label,mw_kda,aliases\nFOO,,Foo,abc,foo\n", "mw_kda 'abc' of FOO is not a number"),
        ("hgnc,uniprot,label,mw_kda,aliases\nIL6,P05231,IL-6,21,il6\n", "already in the curated dictionary: IL6"),
        ("hgnc,uniprot,label,mw_kda,aliases\nFOO,,Foo,1,a\nFOO,,Foo,2,b\n", "FOO listed more than once"),
        ("hgnc,uniprot,label,mw_kda,aliases\n,,Foo,1,a\n", "1 row(s) without an hgnc symbol"),
    ],
)
def test_a_labs_analyte_dictionary_that_cannot_be_used_is_refused_before_the_run(
    tmp_path: Path, content: str | None, said: str
) -> None:
    """A bad `analyte_dictionary_extra` stopped every run in a polars traceback ("could not parse `abc` as
    dtype `f64`"), or a missing one as "the run stopped: No such file or directory ... Free space or fix access
    there". Each is refused in one line naming the file, before any server starts (exit 2)."""
    extra = tmp_path / "our_assays.csv"
    if content is not None:
        extra.write_text(content)
    cfg = tmp_path / "refranges.toml"
    cfg.write_text(f'home = "{tmp_path / "home"}"\nanalyte_dictionary_extra = "{extra}"\n')
    for command in (["run"], ["ingest", str(cfg)]):
        result = invoke(*command, "--config", str(cfg))
        out = " ".join(result.output.split())
        assert result.exit_code == 2 and isinstance(result.exception, SystemExit), (result.output, result.exception)
        assert f"{extra} (analyte_dictionary_extra): " in out and said in out, out
    assert not (tmp_path / "home" / ".prefect").exists()  # refused before Prefect's server was started


def test_a_file_quarantined_whole_that_will_not_come_back_is_closed_by_retract(tmp_path: Path, prefect_backend) -> None:
    """A stray file quarantined whole (a lab's notes dropped with the exports) stayed an open problem for ever:
    `status` and the quarantine view listed it after it was deleted from the landing folder, and `files
    retract` said "no loaded file is named notes.txt". Retract now closes it; restore takes it back."""
    home = tmp_path / "home"
    cfg = tmp_path / "refranges.toml"
    cfg.write_text(f'home = "{home}"\nsubject_key = "k"\n')
    landing = home / "landing"
    landing.mkdir(parents=True)
    (landing / "a.csv").write_text("sample_id,analyte,value,unit,plate_id\nS1,IL-6,1.5,pg/mL,P1\n")
    (landing / "notes.txt").write_text("plate 3 was run twice, see the email\n")
    assert invoke("run", "--config", str(cfg)).exit_code == 1  # completed with problems: notes.txt
    quarantine = home / "quarantine"
    assert (quarantine / "notes.txt.reason.txt").is_file()
    (landing / "notes.txt").unlink()
    before = json.loads(invoke("status", "--format", "json", "--config", str(cfg)).stdout)
    assert before["quarantined_files"] == ["notes.txt"]  # deleting it closes nothing

    done = invoke("files", "retract", "notes.txt", "--reason", "not an export", "--config", str(cfg))
    said = " ".join(done.output.split())
    assert done.exit_code == 0 and "quarantined whole before: it is no longer an open problem" in said, said
    after = json.loads(invoke("status", "--format", "json", "--config", str(cfg)).stdout)
    assert after["quarantined_files"] == [] and after["quarantined_files_total"] == 0
    held = invoke("sql", "select count(*) from quarantine where source_file = 'notes.txt'", "--format", "csv",
                  "--config", str(cfg))  # fmt: skip
    assert held.stdout.split() == ["count_star()", "0"]
    assert not (quarantine / "notes.txt").exists() and not (quarantine / "notes.txt.reason.txt").exists()
    (listed,) = [f for f in json.loads(invoke("files", "list", "--format", "json", "--config", str(cfg)).stdout)
                 if f["file_name"] == "notes.txt"]  # fmt: skip
    assert listed["status"] == "retracted" and listed["reason"] == "retracted by hand: not an export"

    back = invoke("files", "restore", "notes.txt", "--config", str(cfg))  # from the archive
    assert back.exit_code == 0 and (landing / "notes.txt").read_text().startswith("plate 3"), back.output
    again = json.loads(invoke("run", "--format", "json", "--config", str(cfg)).stdout)
    assert [(f["name"], f["status"]) for f in again["files"] if f["name"] == "notes.txt"] == [
        ("notes.txt", "quarantined")
    ]


def test_ingest_of_a_folder_names_its_pipes_and_dangling_links(tmp_path: Path) -> None:
    """`ingest FOLDER` (and its dry run) passed over a named pipe or a link to a missing export in the folder
    without a word, as runs over the landing folder did; a dry run that read a pipe would have waited for a
    writer. Each is listed as quarantined, not read."""
    import os

    cfg = tmp_path / "refranges.toml"
    cfg.write_text(f'home = "{tmp_path / "home"}"\nsubject_key = "k"\n')
    drop = tmp_path / "delivery"
    drop.mkdir()
    (drop / "a.csv").write_text("sample_id,analyte,value,unit,plate_id\nS1,IL-6,1.5,pg/mL,P1\n")
    os.mkfifo(drop / "pipe.csv")
    (drop / "plate2.csv").symlink_to(tmp_path / "unmounted" / "plate2.csv")
    result = invoke("ingest", "--dry-run", "--format", "json", str(drop), "--config", str(cfg))
    assert result.exit_code == 1, result.output  # a file would be quarantined
    files = {f["name"]: f for f in json.loads(result.stdout)["files"]}
    assert files["a.csv"]["status"] == "loaded"
    assert files["pipe.csv"]["reason"] == "pipe.csv: a named pipe, not a file; drop exports as files; it was not read"
    assert files["plate2.csv"]["status"] == "quarantined" and "which does not exist" in files["plate2.csv"]["reason"]


def test_status_tells_a_run_that_failed_or_was_killed_after_the_last_completed_one(
    tmp_path: Path, prefect_backend, monkeypatch
) -> None:
    """A run works on a copy of the warehouse and leaves no trace when it fails: `status` showed the last
    completed run as the last run, night after night of failed scheduled runs. The attempt journal beside the
    warehouse says which run failed and why, or that one never finished; a completed run clears it."""
    import os
    import subprocess

    from flows import pipeline
    from flows.config import load_settings
    from warehouse import loads

    home = tmp_path / "home"
    cfg = tmp_path / "refranges.toml"
    cfg.write_text(f'home = "{home}"\nsubject_key = "k"\n')
    (home / "landing").mkdir(parents=True)
    (home / "landing" / "a.csv").write_text("sample_id,analyte,value,unit,plate_id\nS1,IL-6,1.5,pg/mL,P1\n")
    assert invoke("run", "--config", str(cfg)).exit_code == 0
    settings = load_settings(cfg, env={})
    journal = loads.attempt_journal(settings.warehouse)
    assert not journal.exists()  # a completed run leaves none

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the reference stage failed\non two lines")

    monkeypatch.setattr(pipeline, "build_and_publish", broken)
    with pytest.raises(RuntimeError):
        pipeline.run_pipeline(settings)
    shown = json.loads(invoke("status", "--format", "json", "--config", str(cfg)).stdout)
    failed = shown["last_attempt"]
    assert failed["state"] == "failed" and failed["error"] == "RuntimeError"
    assert failed["message"] == "the reference stage failed on two lines"
    assert shown["last_run"]["run_id"] != failed["run_id"]  # the warehouse's last run is the completed one
    table = " ".join(invoke("status", "--config", str(cfg), env={"COLUMNS": "300"}).output.split())
    assert f"last attempt │ {failed['run_id']}" in table and "failed (RuntimeError: the reference stage" in table
    assert "the warehouse is as the last completed run left it" in table

    gone = subprocess.Popen(["true"])  # a process id that has ended
    gone.wait()
    journal.write_text(json.dumps({**failed, "state": "running", "pid": gone.pid, "host": os.uname().nodename}))
    killed = " ".join(invoke("status", "--config", str(cfg), env={"COLUMNS": "300"}).output.split())
    assert "never finished (killed, or its machine stopped)" in killed, killed

    monkeypatch.undo()
    assert invoke("run", "--config", str(cfg)).exit_code == 0
    assert not journal.exists()
    assert json.loads(invoke("status", "--format", "json", "--config", str(cfg)).stdout)["last_attempt"] is None


def test_restore_changes_nothing_when_no_copy_of_the_version_is_left(tmp_path: Path, prefect_backend) -> None:
    """`files restore` removed the retraction first and only then found that neither the landing folder nor
    the archive held the file: the ledger forgot it, and no run could load it. It now refuses first."""
    home = tmp_path / "home"
    cfg = tmp_path / "refranges.toml"
    cfg.write_text(f'home = "{home}"\nsubject_key = "k"\n')
    (home / "landing").mkdir(parents=True)
    export = home / "landing" / "a.csv"
    export.write_text("sample_id,analyte,value,unit,plate_id\nS1,IL-6,1.5,pg/mL,P1\n")
    assert invoke("ingest", str(export), "--config", str(cfg)).exit_code == 0
    assert invoke("files", "retract", "a.csv", "--reason", "wrong study", "--config", str(cfg)).exit_code == 0
    (listed,) = json.loads(invoke("files", "list", "--format", "json", "--config", str(cfg)).stdout)
    export.unlink()
    Path(listed["archive_path"]).unlink()  # gone from the archive too (a disk restored from an old backup)
    refused = invoke("files", "restore", "a.csv", "--config", str(cfg))
    out = " ".join(refused.output.split())
    assert refused.exit_code == 1 and "neither the landing folder nor the archive holds a.csv" in out, out
    assert "nothing was changed" in out
    (after,) = json.loads(invoke("files", "list", "--format", "json", "--config", str(cfg)).stdout)
    assert after["status"] == "retracted"  # still known: the ledger did not forget it


def test_a_home_moved_elsewhere_is_queried_and_restored_from_before_any_run(tmp_path: Path, prefect_backend) -> None:
    """A home restored from a backup at another path (a new disk, another server): the views over the raw and
    normalised stores named the files at the old path, so every query of them failed ("file system operations
    are disabled") until a run re-pointed them, and `files restore` looked for the archived copy only at the
    path the ledger recorded ("neither the landing folder nor the archive holds ...")."""
    import shutil

    home = tmp_path / "home"
    cfg = tmp_path / "refranges.toml"
    cfg.write_text(f'home = "{home}"\nsubject_key = "k"\n')
    landing = home / "landing"
    landing.mkdir(parents=True)
    (landing / "manifest.csv").write_text(
        "sample_id,subject_id,cohort,matrix,sex,age,collection_date,severity,illness_duration_years\n"
        + "".join(f"S{i},SUBJ-{i},healthy,serum,F,40,2026-01-02,,\n" for i in range(6))
    )
    header = "sample_id,analyte,value,unit,plate_id\n"
    (landing / "a.csv").write_text(header + "".join(f"S{i},IL-6,{1 + i},pg/mL,P1\n" for i in range(3)))
    (landing / "b.csv").write_text(header + "".join(f"S{i},IL-6,{1 + i},pg/mL,P2\n" for i in range(3, 6)))
    assert invoke("run", "--config", str(cfg)).exit_code == 0
    assert invoke("files", "retract", "a.csv", "--reason", "wrong study", "--config", str(cfg)).exit_code == 0

    moved = tmp_path / "restored-elsewhere"
    shutil.move(home, moved)
    cfg.write_text(f'home = "{moved}"\nsubject_key = "k"\n')
    query = (
        "select (select count(*) from raw_measurements) as raw, (select count(*) from measurements) as normalised, "
        "(select count(*) from staging.measurements) as layered"
    )
    out = invoke("sql", query, "--format", "csv", "--config", str(cfg))
    assert out.exit_code == 0 and out.stdout.splitlines() == ["raw,normalised,layered", "3,6,6"], out.output
    (moved / "landing" / "a.csv").unlink()
    back = invoke("files", "restore", "a.csv", "--config", str(cfg))
    assert back.exit_code == 0 and "archived copy is back" in back.output, back.output
    assert (moved / "landing" / "a.csv").read_text().startswith(header)
    again = json.loads(invoke("run", "--format", "json", "--config", str(cfg)).stdout)
    assert [f["name"] for f in again["files"] if f["status"] == "loaded"] == ["a.csv"]
    out = invoke("sql", query, "--format", "csv", "--config", str(cfg))
    assert out.stdout.splitlines() == ["raw,normalised,layered", "6,6,6"], out.output


def test_an_earlier_version_that_a_newer_one_replaced_is_taken_back_by_its_hash(
    tmp_path: Path, prefect_backend
) -> None:
    """A lab's corrected export replaced the first one, then turned out wrong itself: there was no way back to
    the first version (`files restore` took retracted files only, and the first export landed again was
    skipped as known). Retract the newer one, then restore the earlier one by its hash (`--sha`)."""
    home = tmp_path / "home"
    cfg = tmp_path / "refranges.toml"
    cfg.write_text(f'home = "{home}"\nsubject_key = "k"\n')
    landing = home / "landing"
    (landing / "run1").mkdir(parents=True)
    (landing / "manifest.csv").write_text(
        "sample_id,subject_id,cohort,matrix,sex,age,collection_date,severity,illness_duration_years\n"
        + "".join(f"S{i},SUBJ-{i},healthy,serum,F,40,2026-01-02,,\n" for i in range(4))
    )
    header = "sample_id,analyte,value,unit,plate_id\n"
    export = landing / "run1" / "a.csv"
    first = header + "".join(f"S{i},IL-6,{1 + i},pg/mL,P1\n" for i in range(4))
    export.write_text(first)
    assert invoke("run", "--config", str(cfg)).exit_code == 0
    export.write_text(header + "".join(f"S{i},IL-6,{10 + i},pg/mL,P1\n" for i in range(4)))  # the correction
    assert invoke("run", "--config", str(cfg)).exit_code == 0

    def ledger() -> dict[str, str]:
        listed = json.loads(invoke("files", "list", "--format", "json", "--config", str(cfg)).stdout)
        return {f["sha256"]: f["status"] for f in listed if f["file_name"] == "run1/a.csv"}

    versions = ledger()
    v1 = next(sha for sha, status in versions.items() if status == "replaced")
    v2 = next(sha for sha, status in versions.items() if status == "loaded")
    busy = invoke("files", "restore", "run1/a.csv", "--sha", v1[:12], "--config", str(cfg))
    assert busy.exit_code == 1 and "a version of run1/a.csv is loaded" in " ".join(busy.output.split())
    plain = invoke("files", "restore", "run1/a.csv", "--config", str(cfg))  # nothing retracted yet
    out = " ".join(plain.output.split())
    assert plain.exit_code == 1 and "a version of run1/a.csv is loaded" in out
    assert (
        invoke("files", "retract", "run1/a.csv", "--reason", "the correction was wrong", "--config", str(cfg)).exit_code
        == 0
    )
    short = invoke("files", "restore", "run1/a.csv", "--sha", "abc", "--config", str(cfg))
    assert short.exit_code == 1 and "at least 6 hexadecimal characters" in " ".join(short.output.split())
    unknown = invoke("files", "restore", "run1/a.csv", "--sha", "000000", "--config", str(cfg))
    out = " ".join(unknown.output.split())
    assert unknown.exit_code == 1 and "no retracted or replaced version of run1/a.csv begins with 000000" in out
    assert v1[:12] in out and v2[:12] in out  # the versions it could take back

    back = invoke("files", "restore", "run1/a.csv", "--sha", v1[:12], "--config", str(cfg))
    out = " ".join(back.output.split())
    assert back.exit_code == 0, back.output
    assert f"restored run1/a.csv ({v1[:12]}, replaced before)" in out
    assert f"in place of the retracted version {v2[:12]}, which the archive keeps" in out
    assert export.read_text() == first  # the landing folder holds the restored version again
    again = json.loads(invoke("run", "--format", "json", "--config", str(cfg)).stdout)
    assert [(f["name"], f["status"]) for f in again["files"] if f["status"] != "skipped"] == [("run1/a.csv", "loaded")]
    assert ledger() == {v1: "loaded", v2: "retracted"}
    values = invoke("sql", "select value from raw_measurements order by value", "--format", "csv", "--config", str(cfg))
    assert values.stdout.split() == ["value", "1.0", "2.0", "3.0", "4.0"]


def test_a_loaded_file_is_retracted_by_hand_then_restored_from_its_archived_copy(
    tmp_path: Path, prefect_backend
) -> None:
    """A lab's wrong delivery could not be taken out: removing it from the landing folder left its rows in
    the warehouse and in every release. `files retract` takes it out of use (the next run rebuilds without
    it and skips its content), `files restore` takes it back (from the archive when the landing folder no
    longer holds it)."""
    home = tmp_path / "home"
    cfg = tmp_path / "refranges.toml"
    cfg.write_text(f'home = "{home}"\nsubject_key = "k"\n')
    landing = home / "landing"
    (landing / "run1").mkdir(parents=True)
    people = [f"S{i},SUBJ-{i},healthy,serum,{'F' if i % 2 else 'M'},40,2026-01-0{1 + i % 5},," for i in range(8)]
    (landing / "manifest.csv").write_text(
        "sample_id,subject_id,cohort,matrix,sex,age,collection_date,severity,illness_duration_years\n"
        + "\n".join(people)
        + "\n"
    )
    header = "sample_id,analyte,value,unit,plate_id\n"
    (landing / "run1" / "a.csv").write_text(header + "".join(f"S{i},IL-6,{1 + i},pg/mL,P1\n" for i in range(5)))
    (landing / "b.csv").write_text(header + "".join(f"S{i},IL-6,{1 + i},pg/mL,P2\n" for i in range(5, 8)))

    def count(sql: str) -> int:
        out = invoke("sql", sql, "--format", "csv", "--config", str(cfg))
        assert out.exit_code == 0, out.output
        return int(out.output.splitlines()[1])

    assert invoke("run", "--config", str(cfg)).exit_code == 0
    assert count("select count(*) from measurements where analyte = 'IL6'") == 8
    no_reason = invoke("files", "retract", "run1/a.csv", "--reason", " ", "--config", str(cfg))
    assert no_reason.exit_code == 2 and "--reason" in no_reason.output
    done = invoke("files", "retract", "run1/a.csv", "--reason", "another study's plate", "--config", str(cfg))
    assert done.exit_code == 0 and "retracted run1/a.csv" in done.output, done.output
    assert count("select count(*) from raw_measurements") == 3  # out of the views at once
    assert count("select count(*) from files where status = 'retracted' and reason like '%another study%'") == 1
    again = invoke("files", "retract", "run1/a.csv", "--reason", "twice", "--config", str(cfg))
    said = " ".join(again.output.split())
    assert again.exit_code == 1 and "no loaded or quarantined file is named run1/a.csv" in said
    assert "`refranges files list --status loaded` or `--status quarantined` lists them" in said
    rerun = json.loads(invoke("run", "--format", "json", "--config", str(cfg)).stdout)
    assert {f["status"] for f in rerun["files"]} == {"skipped"}  # its content is known: not loaded again
    why = {f["name"]: (f["earlier"], f["reason"]) for f in rerun["files"]}
    assert why["run1/a.csv"] == (
        "retracted",
        "retracted by hand: another study's plate (same content); `refranges files restore run1/a.csv` loads it again",
    )
    assert why["b.csv"] == ("loaded", "already loaded (same content)")
    assert count("select count(*) from measurements where analyte = 'IL6'") == 3  # rebuilt without it
    listed = invoke("files", "list", "--format", "json", "--config", str(cfg))
    assert listed.exit_code == 0, listed.output
    ledger = {f["file_name"]: f for f in json.loads(listed.stdout)}
    assert {n: (f["status"], f["rows_loaded"]) for n, f in ledger.items()} == {
        "b.csv": ("loaded", 3),
        "manifest.csv": ("loaded", 8),
        "run1/a.csv": ("retracted", 5),
    }
    assert ledger["run1/a.csv"]["reason"] == "retracted by hand: another study's plate"
    table = invoke("files", "list", "--config", str(cfg)).output
    cells = [[c.strip() for c in line.split("│")[1:3]] for line in table.splitlines() if "│" in line]
    assert ["run1/a.csv", "retracted"] in cells and "3 files: 2 loaded, 1 retracted" in table
    only = invoke("files", "list", "--status", "retracted", "--format", "csv", "--config", str(cfg)).stdout
    assert [line.split(",")[:2] for line in only.splitlines()] == [["file_name", "status"], ["run1/a.csv", "retracted"]]
    assert (
        "no quarantined files in the ledger"
        in invoke("files", "list", "--status", "quarantined", "--config", str(cfg)).output
    )
    wrong = invoke("files", "list", "--status", "gone", "--config", str(cfg))
    assert wrong.exit_code == 2 and "--status must be one of loaded, quarantined, replaced, retracted" in wrong.output

    (landing / "run1" / "a.csv").unlink()  # gone from the landing folder: restored from the archive
    back = invoke("files", "restore", "run1/a.csv", "--config", str(cfg))
    assert back.exit_code == 0 and "archived copy is back" in back.output, back.output
    assert (landing / "run1" / "a.csv").read_text().startswith(header)
    restored = json.loads(invoke("run", "--format", "json", "--config", str(cfg)).stdout)
    assert [f["name"] for f in restored["files"] if f["status"] == "loaded"] == ["run1/a.csv"]
    assert count("select count(*) from measurements where analyte = 'IL6'") == 8
    missing = invoke("files", "restore", "run1/a.csv", "--config", str(cfg))
    assert missing.exit_code == 1 and "a version of run1/a.csv is loaded" in " ".join(missing.output.split())
    # retracted again while the lab has put a new version at its place: restore says which one the run reads
    assert invoke("files", "retract", "run1/a.csv", "--reason", "again", "--config", str(cfg)).exit_code == 0
    (landing / "run1" / "a.csv").write_text(header + "S0,IL-6,9.5,pg/mL,P1\n")
    other = invoke("files", "restore", "run1/a.csv", "--config", str(cfg))
    assert other.exit_code == 0 and "holds another version now" in " ".join(other.output.split()), other.output
