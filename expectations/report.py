"""The per-run QC report: one self-contained HTML page (inline styles, no script, no outside request)."""

from __future__ import annotations

import html

import polars as pl

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1d2733;max-width:75rem}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem;border-bottom:1px solid #ccd}
table{border-collapse:collapse;width:100%;font-size:.85rem}th,td{border:1px solid #dde;padding:.3rem .5rem;
text-align:left;vertical-align:top}th{background:#f2f4f8}.ok{color:#176c2f;font-weight:600}
.fail{color:#a3161d;font-weight:600}.warn{color:#8a5a00;font-weight:600}.note{color:#556;font-size:.85rem}
"""


def _table(frame: pl.DataFrame) -> str:
    if frame.height == 0:
        return "<p class='note'>none</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    rows = []
    for row in frame.iter_rows():
        cells = []
        for c, v in zip(frame.columns, row, strict=True):
            text = "" if v is None else str(v)
            if c == "result":
                cls = {"passed": "ok", "failed": "fail", "warning": "warn"}.get(text, "")
                cells.append(f"<td class='{cls}'>{html.escape(text)}</td>")
            else:
                cells.append(f"<td>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _held_in_run(files: pl.DataFrame) -> str:
    """'; 3 rows held back and 1 file quarantined in this run: see below', or '' (checks outside the suites,
    such as a manifest that contradicts a loaded one, hold rows back while every suite passes)."""
    rows = int(files["rows_quarantined"].sum()) if "rows_quarantined" in files.columns else 0
    whole = files.filter(pl.col("status") == "quarantined").height if "status" in files.columns else 0
    said = [
        f"{n} {what}{'' if n == 1 else 's'} {done}"
        for n, what, done in ((rows, "row", "held back"), (whole, "file", "quarantined"))
        if n
    ]
    if not said:
        return ""
    return f"; <span class='fail'>{html.escape(' and '.join(said))} in this run</span>: see below"


def render_report(
    *, run_id: str, results: pl.DataFrame, quarantine: pl.DataFrame, files: pl.DataFrame, release: str
) -> str:
    """HTML for one run: suite results, what was held back and why, the file ledger, the release outcome."""
    shown = results.with_columns(
        pl.when(pl.col("success"))
        .then(pl.lit("passed"))
        .when(pl.col("action") == "warn")
        .then(pl.lit("warning"))
        .otherwise(pl.lit("failed"))
        .alias("result")
    ).select(
        "suite", "expectation", "result", "action", "unexpected_count", "element_count", "why", "unexpected_sample"
    )
    n_failed = shown.filter(pl.col("result") == "failed").height
    verdict = (
        "<span class='ok'>all checks passed</span>"
        if n_failed == 0
        else (f"<span class='fail'>{n_failed} check(s) failed</span>")
    )
    verdict += _held_in_run(files)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>refranges QC report {html.escape(run_id)}</title>
<style>{STYLE}</style></head><body>
<h1>refranges QC report, run {html.escape(run_id)}</h1>
<p>{verdict}. Release: {html.escape(release)}</p>
<p class="note">Quality checks on the data of this run. Reference distributions describe healthy people; they are
for research and discussion with a clinician, never a diagnosis.</p>
<h2>Expectations</h2>{_table(shown)}
<h2>Held back (all data in the warehouse, by stage and check)</h2>{_table(quarantine)}
<h2>Files of this run</h2>{_table(files)}
</body></html>
"""
