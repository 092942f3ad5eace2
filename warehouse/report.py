"""The release report: releases/<version>/report.html, one self-contained offline page.

One plot per reference group (matplotlib, Agg backend, embedded as base64 PNG): the healthy distribution
as its published quantile curve, the reference limits with their confidence intervals shaded, and the
median percentile of each patient cohort marked where the release carries cohort comparisons.
"""

from __future__ import annotations

import base64
import html
import io

import polars as pl

from transforms import schema

DISCLAIMER = (
    "Healthy reference distributions, for research and for discussion with a clinician. A value outside a "
    "reference interval is not a diagnosis."
)


def _plot(group: dict[str, object], grid: pl.DataFrame, cohorts: pl.DataFrame) -> str:
    from matplotlib.figure import Figure

    # a bare Figure (no pyplot state) with fixed margins: tight_layout measured every text twice and took
    # most of the time of a plot
    fig = Figure(figsize=(5.2, 2.6), dpi=90)
    fig.subplots_adjust(left=0.12, right=0.98, bottom=0.17, top=0.9)
    ax = fig.add_subplot()
    ax.plot(grid["value"], grid["p"] * 100, color="#1f4e79", lw=1.6, label="healthy (quantile curve)")
    for side in ("lower", "upper"):
        lo, hi, lim = group[f"{side}_ci_low"], group[f"{side}_ci_high"], group[f"{side}_limit"]
        if lo is not None and hi is not None:
            ax.axvspan(float(str(lo)), float(str(hi)), color="#f4a261", alpha=0.3, lw=0)
        if lim is not None:
            ax.axvline(float(str(lim)), color="#e76f51", lw=1.2)
    colours = {"patient": "#6a4c93", "patient_early": "#2a9d8f", "patient_long": "#8d99ae"}
    for c in cohorts.iter_rows(named=True):
        pct = c["median_percentile"]
        if pct is not None and grid.height:
            import numpy as np

            x = float(np.interp(pct / 100, grid["p"].to_numpy(), grid["value"].to_numpy()))
            ax.plot([x], [pct], "o", color=colours.get(str(c["cohort"]), "k"), label=f"{c['cohort']} median")
    ax.set_xlabel(str(group["unit"]))
    ax.set_ylabel("percentile")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=6, loc="lower right")
    ax.set_title(f"{group['analyte']} ({group['platform']}, {group['matrix']}, sex={group['sex']})", fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode()


MAX_PLOTS = 300  # plots per report by default (0.1 s each); every group keeps its table


def _plotted(intervals: pl.DataFrame, max_plots: int) -> set[int]:
    """Rows of ``intervals`` that get a plot: groups of everyone (sex all, no age band) first, in release
    order, then the partitioned groups, up to ``max_plots``."""
    everyone = (pl.col("sex") == "all") & pl.col("age_min").is_null() & pl.col("age_max").is_null()
    ranked = intervals.with_row_index("__row").sort(~everyone, "__row", maintain_order=True)
    return set(ranked["__row"].head(max_plots).to_list())


def render_release_report(
    version: str,
    intervals: pl.DataFrame,
    quantiles: pl.DataFrame,
    comparison: pl.DataFrame | None,
    *,
    max_plots: int = MAX_PLOTS,
) -> str:
    """The HTML of a release report (no script, no outside request). At most ``max_plots`` groups get a
    plot (everyone's groups first); the page says how many did."""
    keys = [k for k in schema.GROUP_KEYS if k in quantiles.columns]
    grids = quantiles.partition_by(keys, as_dict=True, maintain_order=True) if quantiles.height else {}
    has_cohorts = comparison is not None and comparison.height > 0
    cohort_keys = [k for k in keys if comparison is not None and k in comparison.columns]
    by_group = comparison.partition_by(cohort_keys, as_dict=True) if has_cohorts else {}  # type: ignore[union-attr]
    plotted = _plotted(intervals, max_plots)
    sections = []
    for row, group in enumerate(intervals.iter_rows(named=True)):
        grid = grids.get(tuple(group[k] for k in keys), quantiles.clear()).sort("p")
        cohorts = by_group.get(tuple(group[k] for k in cohort_keys), pl.DataFrame())
        rows = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(group[k]))}</td></tr>"
            for k in (
                "n",
                "method",
                "lower_limit",
                "upper_limit",
                "lower_ci_low",
                "lower_ci_high",
                "upper_ci_low",
                "upper_ci_high",
                "median",
                "n_below_lod",
                "n_outliers_excluded",
                "lower_limit_censored",
            )
        )
        title = html.escape(
            f"{group['analyte']} · {group['platform']} · {group['matrix']} · sex={group['sex']}"
            f" · age {group['age_min'] or ''}–{group['age_max'] or ''}"
        )
        picture = ""
        if row in plotted:
            png = _plot(group, grid, cohorts)
            picture = f"<img alt='{title}' src='data:image/png;base64,{png}'>"
        sections.append(f"<section><h2>{title}</h2>{picture}<table>{rows}</table></section>")
    shown = (
        "Every group has a plot."
        if len(plotted) == intervals.height
        else f"Plots are drawn for {len(plotted)} of the {intervals.height} groups (setting report_max_plots; "
        "the groups of everyone first); every group's numbers are in its table and in "
        "reference_intervals.parquet."
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>refranges release {html.escape(version)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;color:#1d2733;max-width:70rem}}
section{{display:inline-block;vertical-align:top;margin:0 1rem 1.5rem 0;width:30rem}}
h2{{font-size:.95rem}}table{{border-collapse:collapse;font-size:.8rem}}td{{border:1px solid #dde;padding:.15rem .4rem}}
</style></head><body>
<h1>refranges release {html.escape(version)}</h1>
<p>{html.escape(DISCLAIMER)}</p>
<p>{intervals.height} reference groups. Orange lines: reference limits; shaded: their confidence intervals;
dots: median percentile of each patient cohort (group level only). {html.escape(shown)}</p>
{"".join(sections)}
</body></html>
"""
