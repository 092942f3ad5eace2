"""One person's results against a release as a page a person can read: one self-contained offline HTML file.

A row per marker: a strip of the healthy distribution drawn from the release's quantile grid (the middle
half darkest, the reference interval lighter, 1st to 99th percentile lightest), the reference limits with
their confidence intervals, the person's values over time as dots (the latest filled), and, where there is
an earlier result, the band of the reference change value around it: a later value outside the band has
changed more than analytical and within-person variation of healthy people usually explains. Censored
results are shown as ``< LOD`` at the edge, never as a number. Inline SVG and CSS only: no script, no
font, no request to any other host; it prints on A4.
"""

from __future__ import annotations

import html
import math
from typing import Any

import polars as pl

from transforms import schema
from transforms.normalise import LOG_SCALE_UNITS
from transforms.score import DISCLAIMER
from warehouse.report import nice_ticks

WIDTH, HEIGHT = 520, 80
LEFT, RIGHT, TOP = 12, 12, 18
BAND_H = 22
BANDS = [(0.01, 0.99, "#dbe7f3"), (0.025, 0.975, "#b3cde6"), (0.25, 0.75, "#7aa6d2")]
DOT = "#c0392b"


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _quantile(grid: pl.DataFrame, p: float) -> float | None:
    """The grid's value at ``p`` (linear between grid points), or None outside the grid."""
    ps, vs = grid["p"].to_list(), grid["value"].to_list()
    if not ps or p < ps[0] - 1e-9 or p > ps[-1] + 1e-9:
        return None
    for (p0, v0), (p1, v1) in zip(zip(ps, vs, strict=True), zip(ps[1:], vs[1:], strict=True), strict=True):
        if p0 - 1e-9 <= p <= p1 + 1e-9:
            return float(v0) if p1 == p0 else float(v0) + (p - p0) / (p1 - p0) * (float(v1) - float(v0))
    return float(vs[-1])


def _strip(visits: list[dict[str, Any]], grid: pl.DataFrame) -> str:
    """The SVG strip of one marker: healthy distribution, limits and CIs, the person's values, RCV band."""
    last = visits[-1]
    unit = str(last["unit"])
    log_axis = unit not in LOG_SCALE_UNITS  # concentrations are skewed: a log axis shows them evenly
    known = [float(v) for v in grid["value"].to_list() if v is not None and (not log_axis or v > 0)]
    for v in visits:
        for k in ("value", "limit_value", "lower_limit", "upper_limit", "lower_ci_low", "upper_ci_high"):
            val = v.get(k)
            if val is not None and math.isfinite(float(val)) and (not log_axis or float(val) > 0):
                known.append(float(val))
    if not known:
        return ""

    def t(x: float) -> float:
        return math.log10(x) if log_axis else x

    lo, hi = t(min(known)), t(max(known))
    if hi <= lo:
        lo, hi = lo - 1, hi + 1
    pad = (hi - lo) * 0.06
    lo, hi = lo - pad, hi + pad
    inner = WIDTH - LEFT - RIGHT

    def x(value: float) -> float:
        return LEFT + (t(value) - lo) / (hi - lo) * inner

    def ok(value: object) -> bool:
        return value is not None and math.isfinite(float(str(value))) and (not log_axis or float(str(value)) > 0)

    parts = []
    below = grid.filter(pl.col("censored")) if "censored" in grid.columns else grid.clear()
    grid = grid.filter(~pl.col("censored")) if "censored" in grid.columns else grid
    if below.height and grid.height:  # the part of the healthy distribution below the limit of detection
        edge = x(float(grid["value"][0]))
        parts.append(
            f"<rect x='{LEFT}' y='{TOP}' width='{max(edge - LEFT, 0.5):.1f}' height='{BAND_H}' fill='url(#lod)'>"
            f"<title>healthy people below the limit of detection (up to percentile "
            f"{float(below['p'].max()) * 100:.0f})</title></rect>"  # type: ignore[arg-type]
        )
    p_lo, p_hi = (float(grid["p"].min()), float(grid["p"].max())) if grid.height else (0.5, 0.5)  # type: ignore[arg-type]
    for p0, p1, colour in BANDS:  # a small group's grid stops short of the extremes: the band stops with it
        p0, p1 = max(p0, p_lo), min(p1, p_hi)
        a, b = _quantile(grid, p0), _quantile(grid, p1)
        if a is not None and b is not None and ok(a) and ok(b):
            x0, x1 = x(a), x(b)
            parts.append(
                f"<rect x='{x0:.1f}' y='{TOP}' width='{max(x1 - x0, 0.5):.1f}' "
                f"height='{BAND_H}' fill='{colour}'><title>healthy people, percentiles {p0 * 100:g} to "
                f"{p1 * 100:g}</title></rect>"
            )
    median = _quantile(grid, 0.5)
    if ok(median):
        xm = x(float(str(median)))
        parts.append(f"<line x1='{xm:.1f}' x2='{xm:.1f}' y1='{TOP}' y2='{TOP + BAND_H}' stroke='#1f4e79'/>")
    below_lod = " (below the limit of detection: the limit shown is the LOD)"
    for side in ("lower", "upper"):
        limit, a, b = last.get(f"{side}_limit"), last.get(f"{side}_ci_low"), last.get(f"{side}_ci_high")
        if side == "lower" and last.get("lower_limit_censored"):
            continue
        if ok(a) and ok(b):
            x0, x1 = sorted((x(float(str(a))), x(float(str(b)))))
            parts.append(
                f"<rect x='{x0:.1f}' y='{TOP - 4}' width='{max(x1 - x0, 0.5):.1f}' height='4' fill='#e76f51' "
                f"fill-opacity='0.45'><title>{side} limit confidence interval</title></rect>"
            )
        if ok(limit):
            xl = x(float(str(limit)))
            parts.append(
                f"<line x1='{xl:.1f}' x2='{xl:.1f}' y1='{TOP - 4}' y2='{TOP + BAND_H + 4}' stroke='#e76f51' "
                f"stroke-width='1.6'><title>{side} reference limit {float(str(limit)):.4g} {_e(unit)}"
                f"{below_lod if side == 'upper' and last.get('upper_limit_censored') else ''}</title></line>"
            )
    # the RCV band around the previous result, on the latest row
    if len(visits) >= 2 and last.get("rcv_log") is not None and ok(visits[-2].get("value")):
        before, rcv = float(visits[-2]["value"]), float(last["rcv_log"])
        a, b = (before - rcv, before + rcv) if not log_axis else (before * math.exp(-rcv), before * math.exp(rcv))
        if ok(a) and ok(b):
            parts.append(
                f"<rect x='{x(a):.1f}' y='{TOP + BAND_H + 6}' width='{x(b) - x(a):.1f}' height='8' fill='none' "
                f"stroke='#6a4c93' stroke-dasharray='3 2'><title>reference change value around the previous "
                f"result: a later value outside this band changed more than healthy people's values usually "
                f"do</title></rect>"
            )
    y_dot = TOP + BAND_H + 10
    for i, v in enumerate(visits):
        latest = i == len(visits) - 1
        fill = DOT if latest else "#fff"
        when = _e(v.get("collection_date") or f"result {i + 1}")
        if v.get("value") is None and ok(v.get("limit_value")):  # censored: at its limit, with an arrow
            xv = x(float(str(v["limit_value"])))
            parts.append(
                f"<path d='M{xv:.1f},{y_dot - 5} l-8,5 l8,5 z' fill='{fill}' stroke='{DOT}'><title>{when}: "
                f"{_e(v['shown'])} (limit {float(str(v['limit_value'])):.4g} {_e(unit)})</title></path>"
            )
        elif v.get("value") is None:
            parts.append(f"<text x='{LEFT}' y='{y_dot + 4}' fill='{DOT}'>{_e(v['shown'])}<title>{when}</title></text>")
        elif ok(v.get("value")):
            xv = x(float(v["value"]))
            parts.append(
                f"<circle cx='{xv:.1f}' cy='{y_dot}' r='4.5' fill='{fill}' stroke='{DOT}' stroke-width='1.5'>"
                f"<title>{when}: {_e(v['shown'])}</title></circle>"
            )
    ticks = _log_ticks(lo, hi) if log_axis else nice_ticks(lo, hi, 6)
    for tick in ticks:
        xt = LEFT + (tick - lo) / (hi - lo) * inner
        label = f"{10**tick:.4g}" if log_axis else f"{tick:g}"
        parts.append(
            f"<line x1='{xt:.1f}' x2='{xt:.1f}' y1='{TOP + BAND_H}' y2='{TOP + BAND_H + 3}' stroke='#556'/>"
            f"<text x='{xt:.1f}' y='{HEIGHT - 2}' text-anchor='middle' fill='#556'>{label}</text>"
        )
    scale = f"{unit}, log scale" if log_axis else unit
    parts.append(f"<text x='{WIDTH - RIGHT}' y='12' text-anchor='end' fill='#556'>{_e(scale)}</text>")
    return (
        f"<svg class='strip' viewBox='0 0 {WIDTH} {HEIGHT}' width='{WIDTH}' height='{HEIGHT}' role='img' "
        f"aria-label='{_e(last['analyte'])}' font-size='11' font-family='sans-serif'>{''.join(parts)}</svg>"
    )


#: The hatching of the part of a healthy distribution below the limit of detection, defined once per page.
HATCH = (
    "<svg width='0' height='0' style='position:absolute' aria-hidden='true'><defs><pattern id='lod' width='6' "
    "height='6' patternUnits='userSpaceOnUse' patternTransform='rotate(45)'><rect width='6' height='6' "
    "fill='#eef0f3'/><line x1='0' y1='0' x2='0' y2='6' stroke='#aab' stroke-width='2'/></pattern></defs></svg>"
)


def _log_ticks(lo: float, hi: float) -> list[float]:
    """Ticks of a log10 axis from ``lo`` to ``hi`` (log10 units) at values people read: 1, 2, 5 x 10^k, or
    only the powers of ten when those are too many; ``nice_ticks`` when the range is under a factor of 3."""
    if hi - lo < math.log10(3):
        return nice_ticks(lo, hi, 5)
    for steps in ((1, 2, 5), (1, 3), (1,)):
        ticks = [
            math.log10(m * 10.0**k)
            for k in range(math.floor(lo) - 1, math.ceil(hi) + 1)
            for m in steps
            if lo <= math.log10(m * 10.0**k) <= hi
        ]
        if len(ticks) <= 7:
            return ticks
    return ticks


def outside_interval(position: str) -> bool:
    """Whether a result's position (``transforms.score``) lies outside its reference interval: below or above
    it, also when measured above the upper limit of quantification, or below the LOD where the interval's
    lower limit is measured (a position of "below the LOD" alone)."""
    return (
        position in ("below the LOD",)
        or position.startswith(("below the reference interval", "above the reference interval"))
        or position.endswith("above the reference interval")
    )


def _at_a_glance(placed: list[tuple[str, dict[str, Any]]], coverage: float) -> str:
    """The page's first section: which of the placed markers' latest results lie outside their interval and
    which changes are larger than the reference change value, each linked to its row, beside how many results
    outside an interval healthy people would have by construction. A panel of thousands of markers (Olink
    Explore HT) made a page of thousands of rows in name order, with the few that differ anywhere in it."""
    if not placed:
        return ""

    def links(items: list[tuple[str, dict[str, Any]]]) -> str:
        return ", ".join(
            f"<a href='#{anchor}'>{_e(r['analyte'])}</a> <small>({_e(r['platform'])}: {_e(r['shown'])})</small>"
            for anchor, r in items
        )

    outside = [(a, r) for a, r in placed if outside_interval(str(r.get("position") or ""))]
    expected = len(placed) * (1 - coverage)
    changed = [(a, r) for a, r in placed if r.get("change") is not None]
    assessed = [(a, r) for a, r in changed if str(r.get("change_vs_rcv") or "").startswith(("within", "larger"))]
    larger = [(a, r) for a, r in assessed if str(r.get("change_vs_rcv")).startswith("larger")]
    lines = [
        f"<p>Latest results outside their healthy reference interval: <b>{len(outside)} of {len(placed)}</b> "
        f"markers. Each interval holds {coverage * 100:.0f} % of healthy people, so a healthy person has about "
        f"{expected:.1f} of {len(placed)} results outside by chance alone."
        + (f"<br>{links(outside)}" if outside else "")
        + "</p>"
    ]
    if assessed:
        unassessed = len(changed) - len(assessed)
        lines.append(
            f"<p>Changes since the previous result larger than the reference change value: <b>{len(larger)} of "
            f"{len(assessed)}</b>"
            + (f" ({unassessed} more not assessed: see each marker)" if unassessed else "")
            + "."
            + (f"<br>{links(larger)}" if larger else "")
            + "</p>"
        )
    elif changed:
        lines.append(
            f"<p>{len(changed)} markers have an earlier result; none of their changes could be set against a "
            "reference change value (the release has none for them, or a value is censored): see each marker.</p>"
        )
    return "<h2>At a glance</h2>" + "".join(lines)


def render_person_page(
    person: dict[str, Any],
    results: pl.DataFrame,
    scored: dict[str, Any],
    grid: pl.DataFrame,
    *,
    coverage: float = 0.95,
) -> str:
    """The HTML page of one person (``person`` and ``results`` as ``warehouse.client.Scored`` holds them;
    ``scored`` its ``to_json()`` for the release facts and what was not scored; ``grid`` the release's
    reference_quantiles; ``coverage`` the share of healthy people inside its intervals)."""
    rows = []
    placed: list[tuple[str, dict[str, Any]]] = []  # (row anchor, latest result) of each placed marker
    order = results.sort("platform", "analyte", "collection_date", nulls_last=True)
    for k, ((analyte, platform), part) in enumerate(order.group_by(["analyte", "platform"], maintain_order=True)):
        visits = part.to_dicts()
        last = visits[-1]
        if last["status"] != "placed":
            rows.append(
                f"<tr><th>{_e(analyte)}<small>{_e(platform)}</small></th><td colspan='2' class='note'>"
                f"{_e(last['shown'])} {_e(last['status'])}</td></tr>"
            )
            continue
        placed.append((f"m{k}", last))
        keys = [k for k in schema.GROUP_KEYS if k != "uniprot"]  # a score row names its group without it
        mine = grid.filter(schema.same_group(last, keys)).sort("p")
        history = "".join(
            f"<li>{_e(v['collection_date'] or '')}: <b>{_e(v['shown'])}</b>, percentile {_e(v['percentile'])}"
            + ("" if v["change"] is None else f", change {_e(v['change'])}")
            + "</li>"
            for v in visits
        )
        verdict = last.get("change_vs_rcv") or ""
        rows.append(
            f"<tr id='m{k}'><th>{_e(analyte)}<small>{_e(platform)} · {_e(last['reference_group'])} · "
            f"n={_e(last['n'])}</small></th>"
            f"<td class='strip'>{_strip(visits, mine)}</td>"
            f"<td><b>{_e(last['shown'])}</b>, percentile {_e(last['percentile'])}, {_e(last['position'])}"
            f"<ul>{history}</ul><p class='note'>{_e(verdict)}</p></td></tr>"
        )
    samples = "".join(
        f"<li>{_e(s['collection_date'] or 'no date')}: sample {_e(s['sample_id'])} ({_e(s['file'])})</li>"
        for s in person["samples"]
    )
    problems = [p for p in scored["not_scored"] if p.get("sample_id") in {s["sample_id"] for s in person["samples"]}]
    problems += [p for p in scored["not_scored"] if p.get("sample_id") is None]
    held = "".join(
        f"<li>{_e(p['analyte_raw'] or '')} {_e(p['reason'])}"
        + ("" if p["n_rows"] == 1 else f" ({p['n_rows']} rows)")
        + "</li>"
        for p in problems
    )
    held_section = f"<h2>Not scored</h2><ul class='held'>{held}</ul>" if held else ""
    subject = _e(person["subject_id"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Immune markers of {subject}: release {_e(scored["release"])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5rem;color:#1d2733;max-width:78rem}}
.disclaimer{{border:2px solid #1f4e79;background:#eef4fa;padding:.6rem .9rem;font-weight:600}}
table{{border-collapse:collapse;width:100%}}
th,td{{border-bottom:1px solid #dde;padding:.35rem .4rem;vertical-align:top;text-align:left;font-size:.85rem}}
th small{{display:block;font-weight:400;color:#556}}.note{{color:#334;margin:.2rem 0 0}}
td.strip{{width:530px;min-width:360px}}th{{width:9rem}}td:last-child{{min-width:16rem}}
ul{{margin:.2rem 0 0 1rem;padding:0}}svg.strip{{display:block;max-width:100%;height:auto}}
.key span{{display:inline-block;width:1.2em;height:.8em;margin:0 .2em 0 .8em;vertical-align:middle}}
@media print{{body{{margin:0;max-width:none}}tr{{break-inside:avoid}}.disclaimer{{background:none}}}}
@page{{size:A4;margin:12mm}}</style></head><body>{HATCH}
<p class="disclaimer">{_e(DISCLAIMER)} Each marker is placed among healthy people measured the same way; a value
outside the healthy range is common in healthy people too (about 1 in 20 by construction, per marker).</p>
<h1>Immune markers of {subject}</h1>
<p>Sex {_e(person["sex"] or "not given")}, age {_e(person["age"] if person["age"] is not None else "not given")},
{_e(person["matrix"])}. Compared with healthy reference release <b>{_e(scored["release"])}</b>
(manifest sha256 {_e(scored["manifest_sha256"][:16])}…). Values from new plates were brought onto the
release's scale with its frozen plate-control anchors before they were placed.</p>
<ul>{samples}</ul>
{"".join(f"<p class='note'><b>Note:</b> {_e(n)}</p>" for n in scored.get("notes", []))}
{_at_a_glance(placed, coverage)}
<p class="key">How to read a strip: <span style="background:#7aa6d2"></span>middle half of healthy people
<span style="background:#b3cde6"></span>central 95 % <span style="background:#dbe7f3"></span>1st to 99th
percentile <span style="background:#eef0f3;border:1px solid #aab"></span>below the limit of detection;
orange lines: reference limits (with their confidence intervals above); dots: your results, the
latest filled; dashed box: the reference change value around the previous result.</p>
<table><tr><th>marker</th><th>healthy distribution and your results</th>
<th>latest result, earlier results, change from the previous result</th></tr>{"".join(rows)}</table>
{held_section}
<p><small>Made by refranges on this computer from the release files; no data was sent anywhere. The reference
change value combines the analytical and within-person variation of healthy people (docs/statistics.md).
</small></p>
</body></html>
"""
