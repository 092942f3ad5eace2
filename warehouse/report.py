"""The release report: releases/<version>/report.html, one self-contained offline page.

One plot per reference group (inline SVG, written here as text: the browser draws it, so a plot costs
about a millisecond and the page needs no image library): the healthy distribution as its published
quantile curve, the reference limits with their confidence intervals shaded, and the
median percentile of each patient cohort marked where the release carries cohort comparisons.
"""

from __future__ import annotations

import html
import math

import numpy as np
import polars as pl

from transforms import schema

DISCLAIMER = (
    "Healthy reference distributions, for research and for discussion with a clinician. A value outside a "
    "reference interval is not a diagnosis."
)


#: Plot size (SVG user units) and its margins: left, right, top, bottom.
WIDTH, HEIGHT = 520, 260
MARGIN = (52, 12, 34, 38)
COHORT_COLOURS = {"patient": "#6a4c93", "patient_early": "#2a9d8f", "patient_long": "#8d99ae"}


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values (1, 2, 2.5 or 5 times a power of ten apart) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    digits = max(0, 2 - math.floor(math.log10(step)))  # enough for 2.5 x 10^k; drops float noise
    return [round(first + i * step, digits) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _number(value: float) -> str:
    return f"{value:.4g}"


def _plot(group: dict[str, object], grid: pl.DataFrame, cohorts: pl.DataFrame) -> str:
    """The group's plot as inline SVG (text, drawn by the browser: no image library, no outside request):
    the healthy quantile curve (value against percentile), the reference limits, their confidence intervals
    shaded, and each patient cohort's median percentile as a dot on the curve."""
    pairs = [(float(p) * 100, float(v)) for p, v in zip(grid["p"], grid["value"], strict=True) if v is not None]
    ps, values = [p for p, _ in pairs], [v for _, v in pairs]  # a null grid value is no point to draw
    marks = [
        float(str(group[k]))
        for side in ("lower", "upper")
        for k in (f"{side}_limit", f"{side}_ci_low", f"{side}_ci_high")
        if group.get(k) is not None
    ]
    finite = [v for v in values + marks if math.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 1, hi + 1
    pad = (hi - lo) * 0.04
    lo, hi = lo - pad, hi + pad
    left, right, top, bottom = MARGIN
    inner_w, inner_h = WIDTH - left - right, HEIGHT - top - bottom

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo) * inner_w

    def y(p: float) -> float:
        return top + (1 - p / 100) * inner_h

    parts = [f"<rect x='{left}' y='{top}' width='{inner_w}' height='{inner_h}' fill='#fff' stroke='#99a'/>"]
    for side in ("lower", "upper"):
        a, b, limit = group.get(f"{side}_ci_low"), group.get(f"{side}_ci_high"), group.get(f"{side}_limit")
        if a is not None and b is not None:
            x0, x1 = sorted((x(float(str(a))), x(float(str(b)))))
            parts.append(
                f"<rect x='{x0:.1f}' y='{top}' width='{max(x1 - x0, 0.5):.1f}' height='{inner_h}' "
                f"fill='#f4a261' fill-opacity='0.3'><title>{side} limit CI {_number(float(str(a)))} to "
                f"{_number(float(str(b)))}</title></rect>"
            )
        if limit is not None:
            xl = x(float(str(limit)))
            parts.append(
                f"<line x1='{xl:.1f}' x2='{xl:.1f}' y1='{top}' y2='{top + inner_h}' stroke='#e76f51' "
                f"stroke-width='1.4'><title>{side} limit {_number(float(str(limit)))}</title></line>"
            )
    for t in nice_ticks(lo, hi, 6):
        xt = x(t)
        parts.append(
            f"<line x1='{xt:.1f}' x2='{xt:.1f}' y1='{top + inner_h}' y2='{top + inner_h + 4}' stroke='#556'/>"
            f"<text x='{xt:.1f}' y='{top + inner_h + 15}' text-anchor='middle'>{_number(t)}</text>"
        )
    for p in (0, 25, 50, 75, 100):
        parts.append(
            f"<line x1='{left - 4}' x2='{left}' y1='{y(p):.1f}' y2='{y(p):.1f}' stroke='#556'/>"
            f"<text x='{left - 6}' y='{y(p) + 3:.1f}' text-anchor='end'>{p}</text>"
        )
    points = " ".join(f"{x(v):.1f},{y(p):.1f}" for v, p in zip(values, ps, strict=True) if math.isfinite(v))
    if points:
        parts.append(f"<polyline points='{points}' fill='none' stroke='#1f4e79' stroke-width='1.6'/>")
    legend = ["<tspan fill='#1f4e79'>healthy quantile curve</tspan>"]
    for c in cohorts.iter_rows(named=True) if cohorts.height else []:
        pct = c.get("median_percentile")
        if pct is None or not values:
            continue
        at = float(np.interp(float(pct) / 100, np.asarray(ps) / 100, np.asarray(values)))
        colour = COHORT_COLOURS.get(str(c["cohort"]), "#222")
        name = html.escape(str(c["cohort"]))
        parts.append(
            f"<circle cx='{x(at):.1f}' cy='{y(float(pct)):.1f}' r='4' fill='{colour}'>"
            f"<title>{name} median: percentile {float(pct):.0f}</title></circle>"
        )
        legend.append(f"<tspan fill='{colour}'> \u25cf {name} median</tspan>")
    title = html.escape(f"{group['analyte']} ({group['platform']}, {group['matrix']}, sex={group['sex']})")
    parts.append(f"<text x='{left}' y='12' font-weight='600'>{title}</text>")  # the legend on its own line
    parts.append(f"<text x='{WIDTH - right}' y='27' text-anchor='end'>{''.join(legend)}</text>")
    parts.append(
        f"<text x='{left + inner_w / 2:.0f}' y='{HEIGHT - 4}' text-anchor='middle'>{html.escape(str(group['unit']))}"
        f"</text><text transform='translate(13 {top + inner_h / 2:.0f}) rotate(-90)' text-anchor='middle'>"
        "percentile</text>"
    )
    return (
        f"<svg class='plot' viewBox='0 0 {WIDTH} {HEIGHT}' width='{WIDTH}' height='{HEIGHT}' role='img' "
        f"aria-label='{title}' font-size='10' font-family='sans-serif' "
        f"fill='#1d2733'>{''.join(parts)}</svg>"
    )


MAX_PLOTS = 1000  # plots per report by default (about 3 kB and 1 ms each); every group keeps its table


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
    plotted = _plotted(intervals, max_plots)
    # the grids and cohorts of the plotted groups only: a release of 3,000 groups plots 1,000 by default,
    # and sorting every group's grid took 1 of the report's 1.5 s
    drawn = intervals.with_row_index("__row").filter(pl.col("__row").is_in(sorted(plotted))).drop("__row")
    grids = (
        quantiles.join(drawn.select(keys), on=keys, how="semi", nulls_equal=True)
        .sort("p", maintain_order=True)  # each group's grid in p order, with one sort
        .partition_by(keys, as_dict=True, maintain_order=True)
        if quantiles.height
        else {}
    )
    has_cohorts = comparison is not None and comparison.height > 0
    cohort_keys = [k for k in keys if comparison is not None and k in comparison.columns]
    by_group = (
        comparison.join(drawn.select(cohort_keys), on=cohort_keys, how="semi", nulls_equal=True).partition_by(  # type: ignore[union-attr]
            cohort_keys, as_dict=True
        )
        if has_cohorts
        else {}
    )
    no_grid = quantiles.clear()
    sections = []
    for row, group in enumerate(intervals.iter_rows(named=True)):
        rows = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(group[k]))}</td></tr>"
            for k in (
                "n",
                "method",
                *schema.LIMITS,
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
            grid = grids.get(tuple(group[k] for k in keys), no_grid)
            cohorts = by_group.get(tuple(group[k] for k in cohort_keys), pl.DataFrame())
            picture = _plot(group, grid, cohorts)
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
h2{{font-size:.95rem}}svg.plot{{display:block;max-width:100%;height:auto}}
@media print{{section{{break-inside:avoid}}}}
table{{border-collapse:collapse;font-size:.8rem}}td{{border:1px solid #dde;padding:.15rem .4rem}}
</style></head><body>
<h1>refranges release {html.escape(version)}</h1>
<p>{html.escape(DISCLAIMER)}</p>
<p>{intervals.height} reference groups. Orange lines: reference limits; shaded: their confidence intervals;
dots: median percentile of each patient cohort (group level only). {html.escape(shown)}</p>
{"".join(sections)}
</body></html>
"""
