"""`refranges` command line. Thin: parse options, call flows and stores, print results."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text

from flows.config import ConfigError, Settings, check_landing, config_path, load_settings

if TYPE_CHECKING:
    import polars as pl

app = typer.Typer(
    help="Raw immunoassay exports -> versioned healthy reference distributions (never a diagnosis).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
releases_app = typer.Typer(help="List, show and verify published releases.", no_args_is_help=True)
app.add_typer(releases_app, name="releases")
files_app = typer.Typer(
    help="List the ledger's files; take a loaded file out of use, or back into use.", no_args_is_help=True
)
app.add_typer(files_app, name="files")
#: Width of output that is not a terminal (a log, a pipe, CI): wide enough that no table cell or reason wraps
LOG_WIDTH = 10_000


def spreadsheet_safe(frame: pl.DataFrame) -> pl.DataFrame:
    """Text cells that a spreadsheet would run as a formula (starting with =, +, -, @, a tab or a carriage
    return: CSV injection) get a leading apostrophe; numbers stay numbers. For every CSV the CLI writes."""
    import polars as pl

    text = [c for c, t in frame.schema.items() if t == pl.String]
    risky = r"^[=+\-@\t\r]"
    return frame.with_columns(
        pl.when(pl.col(c).str.contains(risky)).then(pl.lit("'") + pl.col(c)).otherwise(pl.col(c)).alias(c) for c in text
    )


def output_console(*, stderr: bool = False) -> Console:
    """A console for stdout or stderr: the terminal's width on a terminal; elsewhere no wrapping at all, so
    that a log line holds a whole reason (rich would squeeze everything into 80 columns). Text is printed as
    it is, never read as rich's markup: a value such as ``[pool_1]`` in a query's result, a file name or a
    reason was taken for a style tag and dropped; styled words are built as ``rich.text.Text``."""
    stream = sys.stderr if stderr else sys.stdout
    terminal = stream.isatty()
    return Console(stderr=stderr, width=None if terminal else LOG_WIDTH, soft_wrap=not terminal, markup=False)


console = output_console()
err = output_console(stderr=True)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="refranges.toml to use (default: ./refranges.toml).")
]


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(Text.assemble(("error:", "red"), " ", message))
    raise typer.Exit(code)


def located(settings: Settings, key: str) -> str:
    """The warehouse or release store (``key``) as a message about it missing names it: absolute, and, when
    it is the one of a home given relative to the current folder (the default ./data), which folder that is
    and how to choose another. Run from another folder than the one where `make demo` ran, the commands said
    "no warehouse at data/warehouse.duckdb; run `refranges run` first", which would start a new home there."""
    place = getattr(settings, key)
    if not isinstance(place, Path):
        return str(place)  # an object-store URL
    shown = str(place.absolute())
    default = settings.home / ("warehouse.duckdb" if key == "warehouse" else key)
    if place != default or settings.home.is_absolute():
        return shown
    which = "the default home, ./data," if settings.home == Settings().home else f"the home {settings.home}"
    return f"{shown} ({which} in the current folder; REFRANGES_HOME=DIR or --config FILE chooses another)"


def no_release(settings: Settings, version: str) -> str:
    """Why release ``version`` ('latest': any) cannot be had from the store, and what to do."""
    where = located(settings, "releases")
    if version == "latest":
        return f"no releases yet under {where}; `refranges run` publishes one"
    return f"no release {version} under {where}; `refranges releases list` shows the published ones"


def settings_or_exit(config: Path | None, home: Path | None = None, **overrides: Any) -> Settings:
    try:
        return load_settings(config, home=home, **overrides)
    except ConfigError as exc:
        fail(str(exc), 2)
        raise  # unreachable


def quiet_environment(settings: Settings) -> None:
    """Offline-safe, quiet defaults for Prefect and GX; set before they are imported."""
    assert settings.prefect_home is not None
    if "PREFECT_HOME" not in os.environ:
        settings.prefect_home.mkdir(parents=True, exist_ok=True)  # Prefect does not create parents
        os.environ["PREFECT_HOME"] = str(settings.prefect_home.resolve())
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # our own log lines (logger "refranges") reach the Prefect run logs, not only the console
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "refranges")
    import logging

    logging.getLogger("refranges").setLevel(logging.INFO)


PlatformOption = Annotated[
    str,
    typer.Option(
        help="'mixed': Olink Target 96 NPX and MSD exports; 'explore-ht': one Olink Explore HT NPX Parquet file."
    ),
]


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the demo files into.")],
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same bytes).")] = 2026,
    healthy: Annotated[int, typer.Option(help="Number of healthy people.")] = 400,
    patients: Annotated[int, typer.Option(help="Number of patients.")] = 200,
    platform: PlatformOption = "mixed",
    retest: Annotated[
        bool,
        typer.Option(
            "--retest",
            help="Instead: one person's retest exports (two visits on new plates of the --platform, the second "
            "with a plate shift) and their manifest, for `refranges score` against a release of that demo.",
        ),
    ] = False,
) -> None:
    """Write a demo data set (a manifest plus Olink and MSD exports, or an Olink Explore HT file) into the
    folder given by --out."""
    if retest:
        paths = _write_demo(_demo_files(platform, retest=True, seed=seed), out)
        console.print(f"wrote {len(paths)} retest files to {out}; score them with: refranges score {out}")
        return
    if healthy < 1 or patients < 0:
        fail("--healthy must be >= 1 and --patients >= 0")
    paths = _write_demo(_demo_files(platform, seed=seed, n_healthy=healthy, n_patients=patients), out)
    console.print(f"wrote {len(paths)} files to {out}")


def _write_demo(files: dict[str, bytes], folder: Any) -> list[Any]:
    """Write demo files into ``folder`` (flows.landing.copy_demo), or exit with a one-line reason when it
    cannot be written (a read-only place, a file of that name, a full disk)."""
    from flows.landing import copy_demo

    try:
        return copy_demo(files, folder)
    except OSError as exc:
        fail(f"cannot write the demo files into {folder}: {exc.strerror or exc}; choose a folder you can write to")


def _demo_files(platform: str, *, retest: bool = False, **options: int) -> dict[str, bytes]:
    """The files of a demo data set of ``platform`` (mixed | explore-ht), or of one person's retests on it;
    exits with a reason for another platform."""
    from transforms.demo import DemoData, generate_demo, generate_retest
    from transforms.demo_explore import generate_explore, generate_explore_retest

    makers: dict[str, tuple[Callable[..., DemoData], Callable[..., DemoData]]] = {
        "mixed": (generate_demo, generate_retest),
        "explore-ht": (generate_explore, generate_explore_retest),
    }
    if platform not in makers:
        fail(f"--platform must be one of {', '.join(makers)}, not {platform!r}")
    return makers[platform][retest](**options).files


FormatOption = Annotated[
    str, typer.Option("--format", help="table (for people) or json (the whole summary, for schedulers and scripts).")
]


@contextmanager
def prefect_server(settings: Settings) -> Iterator[None]:
    """The run's temporary Prefect server when no PREFECT_API_URL is set: started first, so that it gets
    ready on the other core while the run imports its modules and Great Expectations; stopped by its
    process id at the end (docs/operations.md)."""
    quiet_environment(settings)
    from flows.serve import LocalServer, ServeError, save_prefect_template, seed_prefect_database, start_run_server

    server: LocalServer | None = None
    build = False  # the home's Prefect database is new and this machine has no template of it yet
    if not os.environ.get("PREFECT_API_URL"):
        prefect_home = Path(os.environ["PREFECT_HOME"])
        build = seed_prefect_database(prefect_home, settings.cache)
        server = start_run_server(prefect_home)  # its log beside Prefect's database
        os.environ["PREFECT_API_URL"] = server.url
    try:
        import flows.pipeline  # noqa: F401  (the imports the wait hides)

        if server is not None:
            from expectations.runner import preload_gx

            preload_gx()  # the import every validating task needs (2-4 s)
            try:
                server.wait_until_healthy(float(os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]))
            except ServeError as exc:
                fail(str(exc), 1)
            if build:
                save_prefect_template(prefect_home, settings.cache)
        yield
    finally:
        if server is not None:
            # the run's last log records (a failed flow run's among them) go to the server while it is up:
            # sent after it stopped, they printed "--- Error logging to API --- All connection attempts failed"
            from prefect.logging.handlers import APILogWorker

            with contextlib.suppress(Exception):
                APILogWorker.drain_all(timeout=5)
            server.stop()
            os.environ.pop("PREFECT_API_URL", None)


def rcv_verdict(verdict: str) -> str:
    """A change's verdict against the reference change value (``change_vs_rcv``), short for the score table:
    why a change is not assessed too (no RCV in the release: too few healthy people with a second visit)."""
    if verdict.startswith(("within", "larger")):
        return "within RCV" if verdict.startswith("within") else "larger than RCV"
    if verdict.startswith("no reference change value"):
        return "no RCV in release"
    if "censored" in verdict:
        return "not assessed: censored"
    return "not assessed" if verdict else ""


def one_line_error(exc: Exception) -> str:
    """DuckDB's message on one line, with its hint ('Did you mean "reference_intervals"?', the candidate
    columns) and without the query echo and caret lines, which mean nothing once joined."""
    lines = [line.strip() for line in str(exc).splitlines()]
    return " ".join(line for line in lines if line and not line.startswith("LINE ") and set(line) != {"^"})


@contextlib.contextmanager
def stopped_in_one_line() -> Iterator[None]:
    """A command that writes the warehouse, stopped by it or by the file system: its one-line reason and exit
    code (3: another run keeps the warehouse busy; 1: not a DuckDB database, a raw store without a loaded
    file's rows, or the file system failed)."""
    from warehouse.db import WarehouseBusyError, WarehouseDamagedError
    from warehouse.loads import RawStoreDamagedError

    try:
        yield
    except WarehouseBusyError as exc:
        fail(str(exc), 3)
    except (WarehouseDamagedError, RawStoreDamagedError) as exc:
        fail(str(exc), 1)
    except OSError as exc:
        fail(stopped_by_os_error(exc), 1)


def stopped_by_os_error(exc: OSError) -> str:
    """The one-line message of a run stopped by the file system (a full disk, a lost mount, no permission)."""
    where = f" ({exc.filename})" if exc.filename else ""
    return (
        f"the run stopped: {exc.strerror or exc}{where}. Nothing was changed: the warehouse, the releases and "
        "the landing folder are as they were before the run. Free space or fix access there, then run again"
    )


def _check_format(fmt: str) -> None:
    if fmt not in ("table", "json"):
        fail(f"--format must be table or json, not {fmt!r}", 2)


def check_warehouse(settings: Settings, *, writing: bool = True) -> None:
    """Exit with one line when the warehouse path holds a file that is not a DuckDB database (1), or, for a
    command that writes, when the raw store lacks a loaded file's rows (1: warehouse.loads.check_raw_store)
    or another run keeps it busy past ``writer_wait_seconds`` (3): before Prefect's
    server starts, so that no failed flow run and no traceback come with it. The flows check both again (a
    run may take the lock between this check and the flow's; scheduled flows come without this command)."""
    from warehouse.db import check_database_file, writer_lock
    from warehouse.loads import check_raw_store_of

    if settings.warehouse is None:
        return
    with stopped_in_one_line():  # the reasons and exit codes of a run stopped by the same checks
        if settings.warehouse.is_file():
            check_database_file(settings.warehouse)
            if writing:
                check_raw_store_of(settings.warehouse)
        if writing:
            with writer_lock(settings.warehouse, wait_seconds=settings.writer_wait_seconds):
                pass


def check_dictionary(settings: Settings) -> None:
    """Exit 2 with one line when the lab's analyte dictionary (``analyte_dictionary_extra``) cannot be used:
    missing, not in the layout, a bad cell. Every run reads it, and such a file stopped a run in a polars
    traceback, or as "the run stopped: No such file or directory ... Free space or fix access there"."""
    if settings.analyte_dictionary_extra is None:
        return
    from warehouse.lookups import DictionaryError, read_analyte_dictionary

    try:
        read_analyte_dictionary(extra=settings.analyte_dictionary_extra)
    except DictionaryError as exc:
        fail(str(exc), 2)


def check_release_index(settings: Settings) -> None:
    """Exit 1 with one line when the release store's index is damaged (not JSON, or no list of releases):
    a run reads it to decide whether to publish, and stopped with a traceback in a failed flow run. Checked
    before Prefect's server starts; the flow raises the same one-line reason for scheduled runs."""
    from warehouse.releases import ReleaseError, read_index

    if settings.releases is None:
        return
    try:
        read_index(settings.releases)
    except ReleaseError as exc:
        fail(f"{exc}. The run did not start: nothing was changed", 1)


def sql_hint(config: Path | None, home: Path | None = None) -> str:
    """The `refranges sql` command line that reaches the warehouse a command ran on, for its summary: with
    the ``--config`` it was given, and its ``--home`` (demo) as REFRANGES_HOME. The summary of `demo --home
    DIR` said `refranges sql "select ..."`, which looked in ./data and answered "no warehouse"."""
    import shlex

    env = f"REFRANGES_HOME={shlex.quote(str(home.resolve()))} " if home is not None else ""
    option = f" --config {shlex.quote(str(config.resolve()))}" if config is not None else ""
    return f'{env}refranges sql{option} "select ..."'


def _run(settings: Settings, fmt: str = "table", *, hint: str = 'refranges sql "select ..."') -> int:
    _check_format(fmt)
    try:
        check_landing(settings)  # before the server starts: a configuration error, not a failed run
    except FileNotFoundError as exc:
        fail(f"{exc.strerror} ({exc.filename})", 2)
    check_warehouse(settings)
    check_release_index(settings)
    check_dictionary(settings)
    with prefect_server(settings):
        from flows.pipeline import on_runner, run_pipeline
        from flows.progress import progress_bars
        from flows.summary import print_summary

        with stopped_in_one_line(), progress_bars(err):
            summary = on_runner(run_pipeline, settings)(settings)
    if fmt == "json":
        typer.echo(json.dumps(summary.as_dict(), default=str, indent=1))
    else:
        print_summary(summary, console, sql_hint=hint)
    # as `ingest` does for a quarantined file: a scheduler (cron, a CI job, systemd) sees a run that needs
    # someone, which it took for a clean one (the release blocked, the store lost, an export quarantined)
    return 1 if summary.status == "completed_with_problems" else 0


@app.command()
def run(config: ConfigOption = None, fmt: FormatOption = "table") -> None:
    """Run one pass of the pipeline over the landing folder."""
    settings = settings_or_exit(config)
    raise typer.Exit(_run(settings, fmt, hint=sql_hint(config)))


@app.command()
def demo(
    home: Annotated[Path | None, typer.Option("--home", help="Data home (default from configuration: ./data).")] = None,
    config: ConfigOption = None,
    seed: Annotated[int, typer.Option(help="Random seed of the demo data.")] = 2026,
    platform: PlatformOption = "mixed",
    fmt: FormatOption = "table",
) -> None:
    """Generate the demo data set into the landing folder and run the pipeline once."""
    # the demo's files are whole when written: landing_min_age_seconds would only make them wait
    settings = settings_or_exit(config, home=home, landing_min_age_seconds=0.0)
    quiet_environment(settings)  # before anything imports Prefect
    assert settings.landing is not None
    _write_demo(_demo_files(platform, seed=seed), settings.landing)
    raise typer.Exit(_run(settings, fmt, hint=sql_hint(config, home)))


@app.command()
def ingest(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Export or manifest files to ingest, or folders of them (read as the landing folder is)."),
    ],
    config: ConfigOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be loaded and quarantined; write nothing.")
    ] = False,
    fmt: FormatOption = "table",
) -> None:
    """Read files into the warehouse without building a release."""
    from rich.table import Table

    from flows.landing import files_named, landing_name, shared_names

    _check_format(fmt)
    try:
        paths = files_named(paths)
    except FileNotFoundError as exc:
        fail(str(exc))
    settings = settings_or_exit(config)
    clash = shared_names({p: landing_name(p, settings) for p in paths})
    if clash:  # the ledger knows a file by its name: the second would replace the first
        name, same = next(iter(clash.items()))
        fail(
            f"{len(same)} files would go by the name {name} ({', '.join(map(str, same))}), and each would replace the "
            "one before it. Put them in folders of the landing folder (landing/run1/, landing/run2/ …), where a "
            "file goes by its path, or rename them"
        )
    quiet_environment(settings)
    check_warehouse(settings, writing=not dry_run)
    check_dictionary(settings)
    summary: dict[str, object] = {"dry_run": dry_run}
    held = None
    if dry_run:
        from flows.pipeline import dry_run as plan
        from warehouse.db import WarehouseDamagedError

        try:
            outcomes, held = plan(paths, settings)
        except WarehouseDamagedError as exc:
            fail(str(exc), 1)
    else:
        from flows.pipeline import ingest_paths, on_runner

        with prefect_server(settings), stopped_in_one_line():
            done = on_runner(ingest_paths, settings)(settings, paths)
        outcomes = done.files
        summary = {"dry_run": False, **done.as_dict()}
    if fmt == "json":
        files = [asdict(o) for o in outcomes]
        if held is not None:  # the rows each file would hold back, by check
            for entry in files:
                mine = held.filter(held["file"] == entry["name"])
                entry["held"] = mine.select("check", "rows", "example").to_dicts()
        summary["files"] = files
        typer.echo(json.dumps(summary, default=str, indent=1))
        raise typer.Exit(1 if any(o.status == "quarantined" for o in outcomes) else 0)
    table = Table(
        "file",
        "layout",
        "status",
        "rows read",
        "would load" if dry_run else "loaded",
        "quarantined",
        "reason",
        title="dry run: nothing written" if dry_run else "ingested",
    )
    would = {"loaded": "would load", "quarantined": "would quarantine", "skipped": "would skip"}
    for o in outcomes:
        table.add_row(
            o.name,
            o.layout or "-",
            would[o.status] if dry_run else o.status,
            str(o.rows_read),
            str(o.rows_loaded),
            str(o.rows_quarantined),
            o.reason or "",
        )
    console.print(table)
    if held is not None and held.height:
        rows = Table("file", "check", "rows", "first of them", title="rows that would be held back")
        for file, check, n, example in held.iter_rows():
            rows.add_row(file, check, str(n), example)
        console.print(rows)
    if any(o.status == "quarantined" for o in outcomes):
        raise typer.Exit(1)


def _ledger_change(settings: Settings, change: Callable[[Any], Any]) -> Any:
    """Change the ledger of an existing warehouse (:func:`_on_work_copy`). A LookupError of ``change`` ends
    the command with its one-line reason, the warehouse as it was."""
    assert settings.warehouse is not None
    if not settings.warehouse.is_file():  # first: the check below takes the writer's lock, which makes the home
        fail(f"no warehouse at {located(settings, 'warehouse')}: nothing is loaded yet")
    check_warehouse(settings)
    with stopped_in_one_line():
        try:
            return _on_work_copy(settings, change)
        except LookupError as exc:
            fail(str(exc.args[0]))


@files_app.command("list")
def files_list(
    status: Annotated[
        str | None,
        typer.Option("--status", help="Only files of this status: loaded, quarantined, replaced or retracted."),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    config: ConfigOption = None,
) -> None:
    """List the files the ledger knows, by name.

    Status, layout, rows read, loaded and held back, when and by which run, content hash and reason (why a
    file was quarantined, replaced or retracted). The names are those `files retract` and `files restore`
    take."""
    from collections import Counter

    from rich.table import Table

    from warehouse import db, loads

    settings = settings_or_exit(config)
    assert settings.warehouse is not None
    if status is not None and status not in loads.FILE_STATUSES:
        fail(f"--status must be one of {', '.join(loads.FILE_STATUSES)}, not {status!r}", 2)
    if fmt not in ("table", "csv", "json"):
        fail(f"--format must be table, csv or json, not {fmt!r}", 2)
    check_warehouse(settings, writing=False)
    if not settings.warehouse.is_file():
        fail(f"no warehouse at {located(settings, 'warehouse')}; run `refranges run` (or `make demo`) first")
    with db.connect(settings.warehouse, read_only=True) as con:
        relation = loads.ledger_files(con, status)
        if _echo_as(relation, fmt):
            return
        frame = relation.pl()
    if not frame.height:
        console.print(f"no {status + ' ' if status else ''}files in the ledger of {settings.warehouse}")
        return
    table = Table("file", "status", "layout", "read", "loaded", "held", "ingested (UTC)", "sha256", "reason")
    for row in frame.iter_rows(named=True):
        table.add_row(
            row["file_name"],
            row["status"],
            row["layout"] or "-",
            f"{row['rows_read']:,}",
            f"{row['rows_loaded']:,}",
            f"{row['rows_quarantined']:,}",
            row["ingested_at"].strftime("%Y-%m-%d %H:%M"),
            row["sha256"][:12],
            row["reason"] or "",
        )
    console.print(table)
    counts = Counter(frame["status"].to_list())
    console.print(f"{frame.height} files: " + ", ".join(f"{counts[s]} {s}" for s in loads.FILE_STATUSES if counts[s]))


@files_app.command("retract")
def files_retract(
    name: Annotated[str, typer.Argument(help="The file as the ledger names it: its path below the landing folder.")],
    reason: Annotated[str, typer.Option("--reason", help="Why it leaves (kept in the ledger).")],
    config: ConfigOption = None,
) -> None:
    """Take a loaded file out of use: its rows leave the raw views now, and the normalised measurements and the
    next release at the next run. The ledger, the archive and the raw store keep it; runs do not load its
    content again until `files restore`. A file quarantined whole that will not come back (a stray file, an
    export the lab will not send again) is closed the same way: it leaves the open problems."""
    from warehouse import loads, storage

    settings = settings_or_exit(config)
    assert settings.archive is not None and settings.quarantine is not None
    if not reason.strip():
        fail("--reason is empty: say why the file leaves (it is kept in the ledger)", 2)

    done = _ledger_change(settings, lambda con: loads.retract_file(con, name, f"retracted by hand: {reason.strip()}"))
    sha = done.sha256
    if done.was == "quarantined":
        kept = ""
        copy = settings.quarantine / name
        if copy.is_file() and storage.archived_copy(settings.archive, sha, done.archive_path) is None:
            kept = f" Its copy stays in {settings.quarantine}: the only one (quarantined before refranges archived)."
        else:  # the archive keeps its bytes (or nothing was ever read: a link, a pipe)
            for leftover in (copy, settings.quarantine / f"{name}.reason.txt"):
                leftover.unlink(missing_ok=True)
        console.print(
            f"retracted {name} ({sha[:12]}), quarantined whole before: it is no longer an open problem (`refranges "
            f"status`, the quarantine view). `refranges files restore {name}` takes it back.{kept}"
        )
        return
    console.print(
        f"retracted {name} ({sha[:12]}): its rows are out of raw_measurements now; `measurements` keeps them until "
        "the next `refranges run` normalises without them (a plate's correction uses the other plates of its batch) "
        f"and publishes a release without them. `refranges files restore {name}` takes it back."
    )


@files_app.command("restore")
def files_restore(
    name: Annotated[str, typer.Argument(help="The file as the ledger names it.")],
    sha: Annotated[
        str | None,
        typer.Option(
            "--sha",
            help="The version to take back, by the start of its content hash (`files list`): a retracted one, or "
            "an earlier version that a newer one replaced. Default: the last retracted version.",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Take a retracted file, or with --sha an earlier version, back into use.

    With --sha: a version that a newer one replaced, once the newer one is retracted. The next run reads it
    again and loads it as new. When the landing folder holds no copy of it, its archived copy is put at its
    place; a copy there of a version that is out of use (retracted or replaced, which the archive keeps) is
    replaced by it."""
    import hashlib

    from warehouse import loads, storage

    settings = settings_or_exit(config)
    assert settings.landing is not None and settings.archive is not None
    archive_root, target = settings.archive, storage.join(settings.landing, name)
    held = storage.read_bytes(target) if storage.exists(target) else None
    held_sha = None if held is None else hashlib.sha256(held).hexdigest()

    def restore(con: Any) -> tuple[tuple[loads.Restored, storage.Location | None], str | None]:
        restored = loads.restore_file(con, name, sha)
        archived = storage.archived_copy(archive_root, restored.sha256, restored.archive_path)
        if held_sha != restored.sha256 and archived is None:  # refused before the ledger changes (LookupError)
            msg = (
                f"neither the landing folder nor the archive holds {name} ({restored.sha256[:12]}): put that export "
                f"back at {target}, then restore it again; nothing was changed"
            )
            raise LookupError(msg)
        query = "select status, archive_path from files where sha256 = ?"
        status = con.execute(query, [held_sha]).fetchall()
        # the landing copy may give way only to a version out of use whose bytes the archive keeps
        kept = bool(status) and status[0][0] in ("retracted", "replaced")
        held_kept = (
            kept and held_sha is not None and storage.archived_copy(archive_root, held_sha, status[0][1]) is not None
        )
        return (restored, archived), status[0][0] if held_kept else None

    (restored, archive), held_status = _ledger_change(settings, restore)
    where = "the landing folder holds it; the next `refranges run` loads it again"
    if held_sha is not None and held_sha != restored.sha256 and held_status is None:
        where = (
            f"{target} holds another version now, which the next run reads instead; to load the restored one "
            f"too, copy {archive} into a folder of its own in the landing folder"
        )
    elif held_sha != restored.sha256:
        assert archive is not None  # checked before the ledger changed
        storage.write_bytes(target, storage.read_bytes(archive))
        stale = (
            ""
            if held_sha is None
            else f" (in place of the {held_status} version {held_sha[:12]}, which the archive keeps)"
        )
        where = f"its archived copy is back at {target}{stale}; the next `refranges run` loads it again"
    console.print(f"restored {name} ({restored.sha256[:12]}, {restored.was} before): {where}.")


@releases_app.command("list")
def releases_list(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List published releases, oldest first."""
    from rich.table import Table

    settings = settings_or_exit(config)
    assert settings.releases is not None
    items = release_index(settings.releases)
    if as_json:
        typer.echo(json.dumps(items, indent=2))
        return
    if not items:
        console.print(f"no releases under {located(settings, 'releases')}")
        return
    table = Table("version", "created_at", "groups", "input_fingerprint")
    for item in items:
        table.add_row(item["version"], item["created_at"], str(item["groups"]), item["input_fingerprint"][:12])
    console.print(table)


def release_index(releases: str | Path) -> list[dict[str, Any]]:
    """The release store's index, or exit with a one-line reason naming it when it is damaged."""
    from warehouse.releases import ReleaseError, read_index

    try:
        return read_index(releases)
    except ReleaseError as exc:
        fail(str(exc))


def release_version(settings: Settings, version: str) -> str:
    """``version`` as written, or the newest published release for 'latest' (as `score --release` takes
    it); exits with a one-line reason when nothing is published yet."""
    if version != "latest":
        return version
    assert settings.releases is not None
    index = release_index(settings.releases)
    if not index:
        fail(no_release(settings, "latest"))
    return str(index[-1]["version"])


@releases_app.command("show")
def releases_show(
    version: Annotated[str, typer.Argument(help="Version, or 'latest'.")], config: ConfigOption = None
) -> None:
    """Print the manifest of one release."""
    settings = settings_or_exit(config)
    typer.echo(json.dumps(manifest_of(settings, release_version(settings, version)), indent=2))


def manifest_of(settings: Settings, version: str) -> dict[str, Any]:
    """The manifest of release ``version``, or exit with a one-line reason (no such release, where the store
    is; or a manifest that cannot be read)."""
    from warehouse.releases import ReleaseError, ReleaseNotFound, read_manifest

    assert settings.releases is not None
    try:
        return read_manifest(settings.releases, version)
    except ReleaseNotFound:
        fail(no_release(settings, version))
    except ReleaseError as exc:
        fail(str(exc))


@releases_app.command("diff")
def releases_diff(
    old: Annotated[str, typer.Argument(help="The older version.")],
    new: Annotated[str, typer.Argument(help="The newer version, or 'latest'.")],
    config: ConfigOption = None,
) -> None:
    """Groups added or removed, and limits that moved by more than their CI, between two releases."""

    from transforms.diff import diff_intervals
    from warehouse.releases import read_table

    settings = settings_or_exit(config)
    assert settings.releases is not None
    old, new = release_version(settings, old), release_version(settings, new)
    manifest_of(settings, old)  # each exists and reads, or the command ends with why
    manifest_of(settings, new)
    tables = [read_table(settings.releases, v, "reference_intervals") for v in (old, new)]
    typer.echo(json.dumps(diff_intervals(*tables), indent=2, default=str))


@releases_app.command("verify")
def releases_verify(
    version: Annotated[str | None, typer.Argument(help="Version, or 'latest' (default: every release).")] = None,
    config: ConfigOption = None,
) -> None:
    """Recompute every checksum of a release; exit 1 on any mismatch."""
    from warehouse.releases import ReleaseError, ReleaseNotFound, verify

    settings = settings_or_exit(config)
    assert settings.releases is not None
    if version:
        versions = [release_version(settings, version)]
    else:
        versions = [i["version"] for i in release_index(settings.releases)]
        if not versions:  # exit 1: a store with nothing to verify is most often the wrong folder
            fail(f"no releases under {located(settings, 'releases')}; nothing to verify")
    bad = 0
    for v in versions:
        try:
            problems = verify(settings.releases, v)
        except ReleaseNotFound:
            problems = [f"no such release under {located(settings, 'releases')}"]
        except ReleaseError as exc:  # its manifest cannot be read: a damaged release, and the others are checked
            problems = [str(exc)]
        if problems:
            bad += 1
            err.print(Text(f"{v}: {'; '.join(problems)}", style="red"))
        else:
            console.print(f"{v}: ok")
    if bad:
        raise typer.Exit(1)


@app.command()
def score(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="The person's exports as the lab sent them (any layout the ingest reads), and optionally the "
            "sample manifest that says whose each sample is; or folders of them (one per visit, say)."
        ),
    ],
    release: Annotated[str, typer.Option("--release", help="Release version, or 'latest'.")] = "latest",
    sample: Annotated[
        list[str] | None, typer.Option("--sample", help="The person's sample id in the exports (repeat for several).")
    ] = None,
    subject: Annotated[
        str | None, typer.Option(help="Who the results are of (with a manifest: which subject).")
    ] = None,
    matrix: Annotated[str, typer.Option(help="Sample matrix without a manifest: serum or plasma.")] = "serum",
    sex: Annotated[str | None, typer.Option(help="F or M without a manifest, for sex-specific groups.")] = None,
    age: Annotated[float | None, typer.Option(help="Age in years without a manifest, for age bands.")] = None,
    date: Annotated[
        list[str] | None,
        typer.Option("--date", help="Collection date YYYY-MM-DD per export, in order, without a manifest."),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv, json or html (a page per person).")] = "table",
    out: Annotated[
        Path | None, typer.Option(help="Write here instead of standard output (html for several people: a folder).")
    ] = None,
    record: Annotated[
        bool,
        typer.Option("--record", help="Also append the results to the warehouse table person_scores (pseudonymised)."),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Place a person's retest exports against a release, on the release's scale (measurement and context for
    a discussion with a clinician, never a diagnosis). Writes nothing into the warehouse unless --record,
    and never changes the release."""
    from datetime import date as Date

    from transforms.retest import Person, PersonError
    from transforms.score import DISCLAIMER
    from warehouse.client import ReleaseIntegrityError, ReleaseNotFoundError, ScoreError, load_release
    from warehouse.client import score as score_exports
    from warehouse.lookups import DictionaryError, read_analyte_dictionary

    if fmt not in ("table", "csv", "json", "html"):
        fail(f"--format {fmt!r}: use table, csv, json or html", code=2)
    settings = settings_or_exit(config)
    assert settings.releases is not None
    from flows.landing import files_named

    try:
        files = files_named(files)
    except FileNotFoundError as exc:
        fail(str(exc))
    # a file goes by its name unless two share one (visit1/export.csv, visit2/export.csv): then by its path
    plain = len({p.name for p in files}) == len(files)
    exports = {(p.name if plain else str(p)): p.read_bytes() for p in files}
    try:
        dates = [Date.fromisoformat(d) for d in date or []]
    except ValueError as exc:
        fail(f"--date: {exc}; write dates as YYYY-MM-DD", code=2)
    try:
        dictionary, dictionary_sha256 = read_analyte_dictionary(extra=settings.analyte_dictionary_extra)
    except DictionaryError as exc:  # as check_dictionary refuses it, read once here
        fail(str(exc), 2)
    try:
        tables = load_release(settings.releases, release)
    except ReleaseNotFoundError:
        fail(no_release(settings, release))
    try:
        scored = score_exports(
            exports,
            tables,
            person=Person(subject or Person().subject, sex, age, matrix),
            sample_ids=sample or [],
            dates=dates,
            dictionary=dictionary,
            dictionary_sha256=dictionary_sha256,
        )
    except (ReleaseIntegrityError, FileNotFoundError, ScoreError, PersonError) as exc:
        fail(str(exc))
    report = scored.to_json()
    if record:
        with stopped_in_one_line():
            written = _record_scores(settings, scored)
        err.print(f"recorded {written} results in person_scores of {settings.warehouse}")
    if fmt == "html":
        _write_pages(scored, report, tables, out)
        return
    if fmt == "json":
        _emit(json.dumps(report, indent=2, default=str) + "\n", out)
    elif fmt == "csv":
        _emit(spreadsheet_safe(scored.results).write_csv(), out)
    else:
        _score_tables(report)
        console.print(Text(DISCLAIMER, style="bold"))


def _on_work_copy(settings: Settings, change: Callable[[Any], Any]) -> Any:
    """Change the warehouse as runs write it: under the writer lock, on a private copy swapped into place
    (no Prefect needed). Returns what ``change`` returns, given the copy's connection; when it raises, the
    copy is never swapped in."""
    from warehouse import db

    assert settings.warehouse is not None
    public = settings.warehouse
    with db.writer_lock(public, wait_seconds=settings.writer_wait_seconds):
        work = db.open_work_copy(public)
        try:
            with db.connect(work) as con:
                done = change(con)
        except BaseException:
            work.unlink(missing_ok=True)  # never swapped in (the next writer would remove it as stale)
            raise
        db.publish_work_copy(work, public)
    return done


def _record_scores(settings: Settings, scored: Any) -> int:
    """Append a scoring to person_scores (:func:`_on_work_copy`). Returns the rows written."""
    from flows.config import subject_key
    from warehouse import loads

    return int(
        _on_work_copy(
            settings,
            lambda con: loads.record_person_scores(
                con,
                scored.results,
                release=scored.release,
                manifest_sha256=scored.manifest_sha256,
                key=subject_key(settings),
            ),
        )
    )


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        err.print(f"wrote {out}")


def _write_pages(scored: object, report: dict, tables: dict, out: Path | None) -> None:
    """One HTML page per person: to ``out`` (a file for one person, a folder for several) or stdout."""
    import re

    import polars as pl

    from warehouse.person_page import render_person_page

    grid = pl.DataFrame(pl.from_arrow(tables["reference_quantiles"]))
    intervals = tables["reference_intervals"]
    shares = intervals.column("coverage").drop_null().to_pylist() if "coverage" in intervals.column_names else []
    coverage = float(shares[0]) if shares else 0.95  # one setting per release
    people = report["people"]
    if len(people) > 1 and (out is None or out.suffix == ".html"):
        fail(f"{len(people)} people in the exports: give --out FOLDER for one page each")
    for person in people:
        mine = scored.results.filter(pl.col("subject_id") == person["subject_id"])  # type: ignore[attr-defined]
        page = render_person_page(person, mine, report, grid, coverage=coverage)
        if out is None:
            typer.echo(page, nl=False)
            continue
        target = out
        if len(people) > 1 or out.is_dir():
            out.mkdir(parents=True, exist_ok=True)
            target = out / (re.sub(r"[^A-Za-z0-9._-]+", "_", str(person["subject_id"])) + ".html")
        target.write_text(page, encoding="utf-8")
        err.print(f"wrote {target}")


def _score_tables(report: dict) -> None:
    from rich.table import Table

    for person in report["people"]:
        table = Table(
            "date",
            "marker",
            "value",
            "percentile",
            "position",
            "change",
            "vs RCV",
            "note",
            title=f"{person['subject_id']} against release {report['release']}",
        )
        for r in person["results"]:
            short = rcv_verdict(r["change_vs_rcv"] or "")
            table.add_row(
                r["collection_date"] or "",
                f"{r['analyte']} ({r['platform']})",
                r["shown"] or "",
                r["percentile"] or "",
                r["position"] or "",
                r["change"] or "",
                short,
                "" if r["status"] == "placed" else r["status"],
            )
        console.print(table)
    if any(r["change_vs_rcv"] for p in report["people"] for r in p["results"]):
        console.print(
            "RCV: reference change value, the change that analytical and within-person variation of "
            "healthy people rarely exceeds (`--format json` gives the figures; docs/statistics.md)."
        )
    theirs = {s["sample_id"] for p in report["people"] for s in p["samples"]}
    for problem in report["not_scored"]:  # the person's rows and whole files; the JSON has the controls too
        if problem["sample_id"] is not None and problem["sample_id"] not in theirs:
            continue
        rows = "" if problem["n_rows"] == 1 else f" ({problem['n_rows']} rows)"
        err.print(Text.assemble(("not scored:", "yellow"), " ", f"{problem['reason']}{rows}"), highlight=False)
    for note in report["notes"]:
        err.print(Text.assemble(("note:", "yellow"), " ", note), highlight=False)
    if report["other_samples_rows"]:
        err.print(f"{report['other_samples_rows']} rows of other samples on these plates were not scored")


@app.command()
def serve(
    config: ConfigOption = None,
    prefect_yaml: Annotated[
        Path | None, typer.Option("--prefect-yaml", help="Deployments to serve (default: prefect.yaml of refranges).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port of the local Prefect server (when PREFECT_API_URL is not set).")
    ] = None,
) -> None:
    """Run the scheduled deployments (hourly ingest, nightly publish) until Ctrl-C or SIGTERM.

    Without PREFECT_API_URL a local Prefect server is started on 127.0.0.1 and stopped again at the end.
    """
    settings = settings_or_exit(config)
    # scheduled runs keep their INFO lines (progress, run summary) in the Prefect run logs
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    quiet_environment(settings)
    from flows.serve import DEFAULT_PREFECT_YAML, ServeError, serve_schedules

    chosen = config_path(config)
    assert settings.prefect_home is not None
    try:
        serve_schedules(
            prefect_yaml=prefect_yaml or DEFAULT_PREFECT_YAML,
            config=chosen.resolve() if chosen else None,
            port=port,
            log_dir=settings.prefect_home,
            announce=console.print,
            cache=settings.cache,
        )
    except ServeError as exc:
        fail(str(exc), 2)


#: Rows of a query result a terminal table shows at most (`refranges sql --max-rows`).
SQL_TABLE_ROWS = 40

#: Rows of a query result written as CSV at a time.
CSV_BATCH_ROWS = 100_000


def _echo_as(relation: Any, fmt: str) -> bool:
    """Write a query result as ``fmt`` when it is csv or json (every row, in batches); False for a table,
    which the caller draws."""
    if fmt == "csv":
        _echo_csv(relation)
    elif fmt == "json":
        _echo_json(relation)
    return fmt in ("csv", "json")


def _echo_csv(relation: Any) -> None:
    """A query result as spreadsheet-safe CSV on stdout, in batches of CSV_BATCH_ROWS (memory follows a
    batch, not the result); a result with no rows still gets its header."""
    import polars as pl

    reader = relation.to_arrow_reader(CSV_BATCH_ROWS)
    header = True
    for batch in reader:
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        typer.echo(spreadsheet_safe(frame).write_csv(include_header=header), nl=False)
        header = False
    if header:
        empty = pl.from_arrow(reader.schema.empty_table())
        assert isinstance(empty, pl.DataFrame)
        typer.echo(empty.write_csv(), nl=False)


def _echo_json(relation: Any) -> None:
    """A query result as one JSON array of row objects on stdout (polars' ``write_json``), written in batches of
    CSV_BATCH_ROWS: the whole result as one frame took 4 GB for three columns of 15 million rows."""
    import polars as pl

    typer.echo("[", nl=False)
    first = True
    for batch in relation.to_arrow_reader(CSV_BATCH_ROWS):
        if batch.num_rows == 0:
            continue
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        rows = frame.write_json()  # "[{...},{...}]": its rows, without the brackets, continue the array
        typer.echo(("" if first else ",") + rows[1:-1], nl=False)
        first = False
    typer.echo("]")


def attempt_text(attempt: dict[str, Any]) -> str:
    """A run that is writing the warehouse now, failed, or was killed (warehouse.loads.last_attempt), in words:
    the warehouse keeps no trace of a run that did not complete, so `status` showed an older run as the last
    one while the scheduled runs after it failed."""
    started = str(attempt.get("started_at", "?")).replace("T", " ").replace("+00:00", " UTC")
    run = f"{attempt.get('run_id', '?')}, started {started}"
    if attempt.get("state") == "running":
        return f"{run}: running now (process {attempt.get('pid')} on {attempt.get('host')})"
    kept = "the warehouse is as the last completed run left it"
    if attempt.get("state") == "killed":
        return f"{run}: never finished (killed, or its machine stopped); {kept}"
    why = f"{attempt.get('error', '')}: {attempt.get('message', '')}".strip(": ")
    return f"{run}: failed ({why}); {kept}; its log is in Prefect (`prefect flow-run ls`, the UI)"


@app.command()
def status(config: ConfigOption = None, fmt: FormatOption = "table") -> None:
    """The warehouse at a glance: the last run, runs and files by status, open problems, the latest release.

    For the people who watch the scheduled runs: the last run's outcome, files and release message, the
    problems still open (files quarantined whole, rows held back by check). Reads only; exit 1 when there is
    no warehouse yet."""
    from collections import Counter

    from rich.table import Table

    from warehouse import db, loads

    settings = settings_or_exit(config)
    assert settings.warehouse is not None and settings.releases is not None
    _check_format(fmt)
    check_warehouse(settings, writing=False)
    attempt = loads.last_attempt(settings.warehouse)
    if not settings.warehouse.is_file():
        first = f" ({attempt_text(attempt)})" if attempt else ""
        fail(f"no warehouse at {located(settings, 'warehouse')}{first}; run `refranges run` (or `make demo`) first")
    with db.connect(settings.warehouse, read_only=True) as con:
        state = loads.warehouse_status(con)
        registered = loads.registered_releases(con)
    state["last_attempt"] = attempt
    index = release_index(settings.releases)
    from warehouse.releases import lost_store, missing_registered

    missing = missing_registered(settings.releases, registered, index)
    state["releases"] = {"count": len(index), "latest": index[-1] if index else None, "missing_from_store": missing}
    state["warehouse"] = str(settings.warehouse)
    if fmt == "json":
        typer.echo(json.dumps(state, default=str, indent=1))
        return

    def counts(by: Any) -> str:
        return f"{sum(by.values())}: " + ", ".join(f"{n} {k}" for k, n in by.items()) if by else "none"

    table = Table("what", "detail", title=f"refranges status of {settings.warehouse}", show_header=False)
    last = state["last_run"]
    if last is None:
        table.add_row("last run", "none recorded")
    else:
        summary = last["summary"] or {}
        took = (
            f", took {(last['finished_at'] - last['started_at']).total_seconds():.1f} s" if last["finished_at"] else ""
        )
        outcome = Counter(f["status"] for f in summary.get("files", []))
        files = ", ".join(f"{outcome[k]} {k}" for k in ("loaded", "quarantined", "skipped") if outcome[k]) or "no files"
        extra = [
            f"{len(summary[key])} {label}"
            for key, label in (("landing_waiting", "waiting"), ("landing_gone", "gone from landing"))
            if summary.get(key)
        ]
        report = f"; QC report {summary['report_path']}" if summary.get("report_path") else ""
        table.add_row(
            "last run",
            f"{last['run_id']}: {last['status']}, started {last['started_at']:%Y-%m-%d %H:%M} UTC{took}; "
            f"files {', '.join([files, *extra])}; release: {summary.get('release_message') or '-'}{report}",
        )
    if attempt:
        table.add_row("last attempt", attempt_text(attempt))
    table.add_row("runs", counts(state["runs"]))
    table.add_row("files", counts(state["files"]) + " (`refranges files list`)")
    total, named = state["quarantined_files_total"], state["quarantined_files"]
    whole = f"{total} quarantined whole" + (f": {', '.join(named)}" if named else "")
    whole += f" and {total - len(named)} more" if total > len(named) else ""
    whole += (
        " (a corrected export of the same name replaces one; `files retract NAME` closes one that will not come back)"
        if total
        else ""
    )
    held = state["held_by_check"]
    rows = ", ".join(f"{k} {n}" for k, n in held.items()) if held else "none"
    table.add_row("open problems", f"files {whole}; rows held back by check: {rows} (the `quarantine` view)")
    latest = state["releases"]["latest"]
    lost = state["releases"]["missing_from_store"]
    table.add_row(
        "latest release",
        (
            f"{latest['version']}, created {latest['created_at']}, {latest['groups']} groups "
            f"({state['releases']['count']} published; `refranges releases verify latest` checks its files)"
            if latest
            else "none published yet"
        )
        + (f"; {lost_store(settings.releases, lost)}; runs publish nothing until it is back" if lost else ""),
    )
    console.print(table)


@app.command(context_settings={"ignore_unknown_options": True})  # a query may begin with a "--" comment
def sql(
    query: Annotated[str, typer.Argument(help="A read-only SQL query over the warehouse views.")],
    config: ConfigOption = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    max_rows: Annotated[
        int, typer.Option("--max-rows", min=1, help="Rows a table shows at most (csv and json give every row).")
    ] = SQL_TABLE_ROWS,
) -> None:
    """Run a read-only query against the warehouse and print the result.

    The connection is DuckDB's sandbox (warehouse.db.connect_analyst): queries only, files readable only in
    the raw and normalised stores and the release folder, no extension, settings locked (docs/warehouse.md).
    A table shows the first ``max_rows`` rows and says when more follow: ``select * from measurements`` is
    tens of millions of rows, which a terminal table cannot show (it held them all in memory, then drew them
    for minutes). CSV is written in batches, so any result goes to a file."""
    import duckdb
    from rich.table import Table

    from expectations.runner import display_text
    from warehouse import storage
    from warehouse.db import RefusedQueryError, analyst_query, connect_analyst, printable
    from warehouse.loads import NORMALISED_DIR, RAW_DIR, point_views_here

    settings = settings_or_exit(config)
    assert settings.warehouse is not None
    if not settings.warehouse.exists():
        fail(f"no warehouse at {located(settings, 'warehouse')}; run `refranges run` (or `make demo`) first")
    readable = [settings.warehouse.parent / RAW_DIR, settings.warehouse.parent / NORMALISED_DIR]
    if settings.releases is not None and not storage.is_url(settings.releases):  # an object store: not readable
        readable.append(Path(settings.releases))
    if fmt not in ("table", "csv", "json"):
        fail(f"--format must be table, csv or json, not {fmt!r}", 2)
    more = False
    try:
        with connect_analyst(settings.warehouse, readable=[p for p in readable if p.is_dir()]) as con:
            point_views_here(con)  # a warehouse moved since its last run: its store views read the files here
            relation = printable(analyst_query(con, query), fmt)
            if _echo_as(relation, fmt):
                return
            # a table: one row past it says whether more follow, without counting them all
            frame = relation.limit(max_rows + 1).pl()
            frame, more = frame.head(max_rows), frame.height > max_rows
    except RefusedQueryError as exc:
        fail(f"refused: {exc}")
    except duckdb.Error as exc:
        fail(f"query failed: {one_line_error(exc)}")
    table = Table(*frame.columns)
    for row in frame.iter_rows():
        table.add_row(*["" if v is None else display_text(v) for v in row])  # csv and json: every digit
    console.print(table)
    if more:
        err.print(
            f"the first {max_rows:,} rows; more follow. Add LIMIT or an aggregate to the query, raise --max-rows, "
            "or write every row with --format csv > file.csv"
        )


if __name__ == "__main__":
    app()
