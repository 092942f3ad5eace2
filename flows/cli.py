"""`refranges` command line. Thin: parse options, call flows and stores, print results."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from flows.config import ConfigError, Settings, config_path, load_settings

if TYPE_CHECKING:
    import polars as pl

app = typer.Typer(
    help="Raw immunoassay exports -> versioned healthy reference distributions (never a diagnosis).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
releases_app = typer.Typer(help="List, show and verify published releases.", no_args_is_help=True)
app.add_typer(releases_app, name="releases")
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
    that a log line holds a whole reason (rich would squeeze everything into 80 columns)."""
    stream = sys.stderr if stderr else sys.stdout
    terminal = stream.isatty()
    return Console(stderr=stderr, width=None if terminal else LOG_WIDTH, soft_wrap=not terminal)


console = output_console()
err = output_console(stderr=True)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="refranges.toml to use (default: ./refranges.toml).")
]


def fail(message: str, code: int = 1) -> None:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def settings_or_exit(config: Path | None, home: Path | None = None) -> Settings:
    try:
        return load_settings(config, home=home)
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
) -> None:
    """Write a demo data set (a manifest plus Olink and MSD exports, or an Olink Explore HT file) into OUT."""
    from flows.landing import copy_demo

    if healthy < 1 or patients < 0:
        fail("--healthy must be >= 1 and --patients >= 0")
    paths = copy_demo(_demo_files(platform, seed=seed, n_healthy=healthy, n_patients=patients), out)
    console.print(f"wrote {len(paths)} files to {out}")


def _demo_files(platform: str, **options: int) -> dict[str, bytes]:
    """The files of a demo data set of ``platform`` (mixed | explore-ht); exits with a reason for another."""
    from transforms.demo import DemoData, generate_demo
    from transforms.demo_explore import generate_explore

    makers: dict[str, Callable[..., DemoData]] = {"mixed": generate_demo, "explore-ht": generate_explore}
    if platform not in makers:
        fail(f"--platform must be one of {', '.join(makers)}, not {platform!r}")
    return makers[platform](**options).files


FormatOption = Annotated[
    str, typer.Option("--format", help="table (for people) or json (the whole summary, for schedulers and scripts).")
]


@contextmanager
def prefect_server(settings: Settings) -> Iterator[None]:
    """The run's temporary Prefect server when no PREFECT_API_URL is set: started first, so that it gets
    ready on the other core while the run imports its modules and Great Expectations; stopped by its
    process id at the end (docs/operations.md)."""
    quiet_environment(settings)
    from flows.serve import LocalServer, ServeError, start_run_server

    server: LocalServer | None = None
    if not os.environ.get("PREFECT_API_URL"):
        server = start_run_server(Path(os.environ["PREFECT_HOME"]))  # its log beside Prefect's database
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
        yield
    finally:
        if server is not None:
            server.stop()
            os.environ.pop("PREFECT_API_URL", None)


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


def _run(settings: Settings, fmt: str = "table") -> int:
    _check_format(fmt)
    with prefect_server(settings):
        from flows.pipeline import on_runner, run_pipeline
        from flows.progress import progress_bars
        from flows.summary import print_summary
        from warehouse.db import WarehouseBusyError

        try:
            with progress_bars(err):
                summary = on_runner(run_pipeline, settings)(settings)
        except WarehouseBusyError as exc:
            fail(str(exc), 3)
        except OSError as exc:
            fail(stopped_by_os_error(exc), 1)
    if fmt == "json":
        typer.echo(json.dumps(summary.as_dict(), default=str, indent=1))
    else:
        print_summary(summary, console)
    return 0


@app.command()
def run(config: ConfigOption = None, fmt: FormatOption = "table") -> None:
    """Run one pass of the pipeline over the landing folder."""
    settings = settings_or_exit(config)
    raise typer.Exit(_run(settings, fmt))


@app.command()
def demo(
    home: Annotated[Path | None, typer.Option("--home", help="Data home (default from configuration: ./data).")] = None,
    config: ConfigOption = None,
    seed: Annotated[int, typer.Option(help="Random seed of the demo data.")] = 2026,
    platform: PlatformOption = "mixed",
    fmt: FormatOption = "table",
) -> None:
    """Generate the demo data set into the landing folder and run the pipeline once."""
    from flows.landing import copy_demo

    settings = settings_or_exit(config, home=home)
    quiet_environment(settings)  # before anything imports Prefect
    assert settings.landing is not None
    copy_demo(_demo_files(platform, seed=seed), settings.landing)
    raise typer.Exit(_run(settings, fmt))


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Export or manifest files to ingest.")],
    config: ConfigOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be loaded and quarantined; write nothing.")
    ] = False,
    fmt: FormatOption = "table",
) -> None:
    """Read files into the warehouse without building a release."""
    from rich.table import Table

    _check_format(fmt)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        fail(f"not a file: {', '.join(missing)}")
    settings = settings_or_exit(config)
    quiet_environment(settings)
    summary: dict[str, object] = {"dry_run": dry_run}
    if dry_run:
        from flows.pipeline import dry_run as plan

        outcomes = plan(paths, settings)
    else:
        from flows.pipeline import ingest_paths, on_runner
        from warehouse.db import WarehouseBusyError

        with prefect_server(settings):
            try:
                done = on_runner(ingest_paths, settings)(settings, paths)
            except WarehouseBusyError as exc:
                fail(str(exc), 3)
            except OSError as exc:
                fail(stopped_by_os_error(exc), 1)
        outcomes = done.files
        summary = {"dry_run": False, **done.as_dict()}
    if fmt == "json":
        summary["files"] = [asdict(o) for o in outcomes]
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
    would = {"loaded": "would load", "quarantined": "would quarantine", "skipped": "already ingested"}
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
    if any(o.status == "quarantined" for o in outcomes):
        raise typer.Exit(1)


@releases_app.command("list")
def releases_list(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List published releases, oldest first."""
    from rich.table import Table

    from warehouse.releases import read_index

    settings = settings_or_exit(config)
    assert settings.releases is not None
    items = read_index(settings.releases)
    if as_json:
        typer.echo(json.dumps(items, indent=2))
        return
    if not items:
        console.print(f"no releases under {settings.releases}")
        return
    table = Table("version", "created_at", "groups", "input_fingerprint")
    for item in items:
        table.add_row(item["version"], item["created_at"], str(item["groups"]), item["input_fingerprint"][:12])
    console.print(table)


@releases_app.command("show")
def releases_show(version: str, config: ConfigOption = None) -> None:
    """Print the manifest of one release."""
    from warehouse.releases import ReleaseError, read_manifest

    settings = settings_or_exit(config)
    assert settings.releases is not None
    try:
        manifest = read_manifest(settings.releases, version)
    except ReleaseError as exc:
        fail(str(exc))
    typer.echo(json.dumps(manifest, indent=2))


@releases_app.command("diff")
def releases_diff(
    old: Annotated[str, typer.Argument(help="The older version.")],
    new: Annotated[str, typer.Argument(help="The newer version.")],
    config: ConfigOption = None,
) -> None:
    """Groups added or removed, and limits that moved by more than their CI, between two releases."""

    from transforms.diff import diff_intervals
    from warehouse.releases import ReleaseError, read_manifest, read_table

    settings = settings_or_exit(config)
    assert settings.releases is not None
    try:
        read_manifest(settings.releases, old)
        read_manifest(settings.releases, new)
    except ReleaseError as exc:
        fail(str(exc))
    tables = [read_table(settings.releases, v, "reference_intervals") for v in (old, new)]
    typer.echo(json.dumps(diff_intervals(*tables), indent=2, default=str))


@releases_app.command("verify")
def releases_verify(
    version: Annotated[str | None, typer.Argument(help="Version (default: every release).")] = None,
    config: ConfigOption = None,
) -> None:
    """Recompute every checksum of a release; exit 1 on any mismatch."""
    from warehouse.releases import ReleaseError, read_index, verify

    settings = settings_or_exit(config)
    assert settings.releases is not None
    versions = [version] if version else [i["version"] for i in read_index(settings.releases)]
    bad = 0
    for v in versions:
        try:
            problems = verify(settings.releases, v)
        except ReleaseError as exc:
            fail(str(exc))
        if problems:
            bad += 1
            err.print(f"[red]{v}: {'; '.join(problems)}[/red]")
        else:
            console.print(f"{v}: ok")
    if bad:
        raise typer.Exit(1)


@app.command()
def score(
    input_file: Annotated[Path, typer.Argument(help="One person's results in the generic tidy format.")],
    release: Annotated[str, typer.Option("--release", help="Release version, or 'latest'.")] = "latest",
    matrix: Annotated[str, typer.Option(help="Sample matrix of the results: serum or plasma.")] = "serum",
    sex: Annotated[str | None, typer.Option(help="F or M, to use sex-specific groups where published.")] = None,
    age: Annotated[float | None, typer.Option(help="Age in years, to use age bands where published.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    config: ConfigOption = None,
) -> None:
    """Place one person's results against a release (a comparison with healthy people, not a diagnosis)."""
    import hashlib

    import polars as pl
    from rich.table import Table

    from transforms.normalise import convert_units, dictionary_lookup, resolve_analytes
    from transforms.readers import UnreadableFileError, read_file
    from transforms.score import DISCLAIMER, score_person
    from warehouse.client import ReleaseIntegrityError, load_release
    from warehouse.lookups import read_analyte_dictionary

    settings = settings_or_exit(config)
    assert settings.releases is not None
    if not input_file.is_file():
        fail(f"not a file: {input_file}")
    data = input_file.read_bytes()
    try:
        parsed = read_file(data, source=input_file.name, sha256=hashlib.sha256(data).hexdigest())
        tables = load_release(settings.releases, release)
    except (UnreadableFileError, ReleaseIntegrityError, FileNotFoundError) as exc:
        fail(str(exc))
    named, held_names = resolve_analytes(
        parsed.rows, dictionary_lookup(read_analyte_dictionary(extra=settings.analyte_dictionary_extra)[0])
    )
    converted, held_units = convert_units(named)
    results = converted.with_columns(pl.col("run_date").alias("collection_date"))
    intervals = pl.DataFrame(pl.from_arrow(tables["reference_intervals"]))
    grid = pl.DataFrame(pl.from_arrow(tables["reference_quantiles"]))
    variation = pl.DataFrame(pl.from_arrow(tables["retest_variation"])) if "retest_variation" in tables else None
    out = score_person(results, intervals, grid, matrix=matrix, sex=sex, age=age, variation=variation)
    problems = [*parsed.quarantine["reason"], *held_names["reason"], *held_units["reason"]]
    if fmt == "csv":
        typer.echo(spreadsheet_safe(out).write_csv(), nl=False)
    elif fmt == "json":
        typer.echo(
            json.dumps(
                {
                    "disclaimer": DISCLAIMER,
                    "release": tables["manifest"]["version"],
                    "results": out.to_dicts(),
                    "not_read": problems,
                },
                indent=2,
                default=str,
            )
        )
    else:
        table = Table(
            "date",
            "marker",
            "value",
            "percentile",
            "position",
            "change",
            "vs RCV",
            "note",
            title=f"release {tables['manifest']['version']}",
        )
        for r in out.iter_rows(named=True):
            verdict = r["change_vs_rcv"] or ""
            short = (
                "within RCV"
                if verdict.startswith("within")
                else "larger than RCV"
                if verdict.startswith("larger")
                else ("not assessed" if verdict else "")
            )
            table.add_row(
                "" if r["collection_date"] is None else str(r["collection_date"]),
                f"{r['analyte']} ({r['platform']})",
                "" if r["value"] is None else f"{r['value']:.4g} {r['unit']}",
                r["percentile"] or "",
                r["position"] or "",
                r["change"] or "",
                short,
                "" if r["status"] == "placed" else r["status"],
            )
        console.print(table)
        if out["change_vs_rcv"].drop_nulls().len():
            console.print(
                "RCV: reference change value, the change that analytical and within-person variation of "
                "healthy people rarely exceeds (`--format json` gives the figures; docs/statistics.md)."
            )
        for problem in problems:
            err.print(f"[yellow]not read:[/yellow] {problem}")
        console.print(f"[bold]{DISCLAIMER}[/bold]")


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
        )
    except ServeError as exc:
        fail(str(exc), 2)


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="A read-only SQL query over the warehouse views.")],
    config: ConfigOption = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
) -> None:
    """Run a read-only query against the warehouse and print the result.

    The connection is DuckDB's sandbox (warehouse.db.connect_analyst): queries only, files readable only in
    the raw store and the release folder, no extension, settings locked (docs/warehouse.md)."""
    import duckdb
    from rich.table import Table

    from warehouse import storage
    from warehouse.db import RefusedQueryError, analyst_query, connect_analyst
    from warehouse.loads import RAW_DIR

    settings = settings_or_exit(config)
    assert settings.warehouse is not None
    if not settings.warehouse.exists():
        fail(f"no warehouse at {settings.warehouse}; run `refranges run` (or `make demo`) first")
    readable = [settings.warehouse.parent / RAW_DIR]
    if settings.releases is not None and not storage.is_url(settings.releases):  # an object store: not readable
        readable.append(Path(settings.releases))
    try:
        with connect_analyst(settings.warehouse, readable=[p for p in readable if p.is_dir()]) as con:
            frame = analyst_query(con, query).pl()
    except RefusedQueryError as exc:
        fail(f"refused: {exc}")
    except duckdb.Error as exc:
        fail(f"query failed: {str(exc).splitlines()[0]}")
    if fmt == "csv":
        typer.echo(spreadsheet_safe(frame).write_csv(), nl=False)
    elif fmt == "json":
        typer.echo(frame.write_json())
    elif fmt == "table":
        table = Table(*frame.columns)
        for row in frame.iter_rows():
            table.add_row(*["" if v is None else str(v) for v in row])
        console.print(table)
    else:
        fail(f"--format must be table, csv or json, not {fmt!r}", 2)


if __name__ == "__main__":
    app()
