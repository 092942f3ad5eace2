"""The run summary as people read it (rich tables)."""

from __future__ import annotations

import io
from collections import Counter

from rich.console import Console
from rich.table import Table
from rich.text import Text

from flows.pipeline import FileOutcome, RunSummary

DISCLAIMER = (
    "Reference distributions describe where a value sits among healthy people. "
    "They are for research and for discussion with a clinician, never a diagnosis."
)


def print_summary(
    summary: RunSummary, console: Console | None = None, *, sql_hint: str = 'refranges sql "select ..."'
) -> None:
    """The run summary as a table; ``sql_hint``: the `refranges sql` command line that reaches this run's
    warehouse (flows.cli.sql_hint)."""
    console = console or Console(markup=False)
    new = summary.files_new
    skipped = [f for f in summary.files if f.status == "skipped"]
    bad_files = [f for f in summary.files if f.status == "quarantined"]
    table = Table(title=f"refranges run {summary.run_id}", show_header=True, header_style="bold")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_column("detail", overflow="fold")
    table.add_row(
        "files ingested",
        str(len([f for f in new if f.status == "loaded"])),
        ", ".join(sorted(Counter(f.layout or "?" for f in new if f.status == "loaded").elements()))
        if len(new) < 6
        else _counts(Counter(f.layout or "?" for f in new if f.status == "loaded")),
    )
    table.add_row("files unchanged (skipped)", str(len(skipped)), skipped_detail(skipped))
    table.add_row("files quarantined", str(len(bad_files)), "; ".join(f.named_reason for f in bad_files))
    table.add_row("rows read", str(sum(f.rows_read for f in new)), "")
    table.add_row("rows loaded", str(sum(f.rows_loaded for f in new)), "")
    table.add_row("rows quarantined at ingest", str(sum(f.rows_quarantined for f in new)), "")
    held = ", ".join(f"{k}: {v}" for k, v in sorted(summary.held_by_check.items())) or "none"
    table.add_row("held back in warehouse (all runs)", str(sum(summary.held_by_check.values())), held)
    table.add_row(
        "reference groups published",
        str(summary.groups_published),
        groups_skipped_detail(summary.groups_skipped),
    )
    if summary.analytes_by_uniprot:
        named = (
            "not in the analyte dictionary; identified by the UniProt accession their export gives "
            "(docs/normalisation.md): " + named_some(summary.analytes_by_uniprot, "; ")
        )
        table.add_row("analytes named by UniProt", str(len(summary.analytes_by_uniprot)), named)
    if summary.landing_waiting:
        waiting = (
            "changed too recently to be read (landing_min_age_seconds), as a copy still being written would be; "
            "a later run reads them: " + named_some(summary.landing_waiting, "; ")
        )
        table.add_row("landing files waiting", str(len(summary.landing_waiting)), waiting)
    if summary.landing_gone:
        gone = (
            "removed from the landing folder, but their rows stay in use: the warehouse keeps what it loaded; "
            "`refranges files retract NAME --reason TEXT` takes a file out of use: " + named_some(summary.landing_gone)
        )
        table.add_row("loaded files gone from landing", str(len(summary.landing_gone)), gone)
    if summary.landing_kept:
        kept = "loaded, but could not be removed (landing_mode = move); the next run skips them: " + "; ".join(
            summary.landing_kept
        )
        table.add_row("landing files kept", str(len(summary.landing_kept)), kept)
    table.add_row("release", summary.release_version or "-", summary.release_message)
    if summary.release_path:
        table.add_row("release folder", "", summary.release_path)
    table.add_row("QC report", "", summary.report_path)
    table.add_row("warehouse", "", summary.warehouse)
    table.add_row("open the warehouse", "", f"duckdb -readonly {summary.warehouse}   or   {sql_hint}")
    console.print(table)
    if summary.status != "completed":
        where = [
            *(
                ["the quarantine folder and the `quarantine` view"]
                if any(f.status == "quarantined" for f in summary.files)
                else []
            ),
            *(["the release line above"] if summary.release_blocked or summary.release_damaged else []),
        ]
        console.print(
            Text.assemble(
                (f"run status: {summary.status}", "yellow"), f" (see {' and '.join(where) or 'the table above'})"
            )
        )
    console.print(Text(DISCLAIMER, style="dim"))


#: How the summary names what a skipped file's content was before (FileOutcome.earlier).
EARLIER = {
    "quarantined": "quarantined before under the same settings",
    "retracted": "retracted by hand",
    "replaced": "an earlier version, replaced",
    "this run": "the same content as an earlier file of this run",
}
#: Skipped files named one by one in the summary, per kind, before "and N more" (each file's reason is in the
#: run's log, its JSON summary and `refranges ingest`'s table).
MAX_NAMED = 5


def groups_skipped_detail(skipped: list[str]) -> str:
    """ "20 groups below the minimum n; 2 with one value repeated: IL10 tidy serum: ...": every skipped group
    was told as below the minimum n, also one whose values were all one number (named, to check the export)."""
    constant = [g for g in skipped if "every value is" in g]
    parts = [f"{len(skipped) - len(constant)} groups below the minimum n"] if len(skipped) > len(constant) else []
    parts += [f"{len(constant)} with one value repeated: {named_some(constant, '; ')}"] if constant else []
    return "; ".join(parts)


def named_some(names: list[str], sep: str = ", ") -> str:
    """The first MAX_NAMED of ``names``, then "and N more"."""
    more = len(names) - MAX_NAMED
    return sep.join(names[:MAX_NAMED]) + (f" and {more} more" if more > 0 else "")


def skipped_detail(skipped: list[FileOutcome]) -> str:
    """What the skipped files' contents were before, by kind: "same content already ingested" for all of them
    hid a file quarantined under the same settings (never ingested), a retracted one, an old version."""
    loaded = sum(f.earlier in (None, "loaded") for f in skipped)
    parts = [f"{loaded} already loaded (same content)"] if loaded else []
    for kind, label in EARLIER.items():
        names = [f.name for f in skipped if f.earlier == kind]
        if names:
            parts.append(f"{len(names)} {label}: {named_some(names)}")
    return "; ".join(parts)


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k} x{v}" for k, v in sorted(counter.items()))


def summary_text(summary: RunSummary, width: int = 110) -> str:
    """The same summary as plain text, for the Prefect run log."""
    console = Console(
        record=True, width=width, force_terminal=False, color_system=None, file=io.StringIO(), markup=False
    )
    print_summary(summary, console)
    return console.export_text()
