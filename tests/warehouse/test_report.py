"""The release report's plots: inline SVG that says what the numbers say, and nothing a browser would run."""

from __future__ import annotations

import itertools
import math
import xml.etree.ElementTree as ET

import polars as pl
from hypothesis import assume, given
from hypothesis import strategies as st

from transforms import schema
from warehouse.report import HEIGHT, MARGIN, WIDTH, _plot, nice_ticks, render_release_report

GROUP = {
    "analyte": "IL6",
    "platform": "olink",
    "matrix": "serum",
    "sex": "all",
    "unit": "NPX",
    "lower_limit": 1.0,
    "upper_limit": 5.0,
    "lower_ci_low": 0.8,
    "lower_ci_high": 1.2,
    "upper_ci_low": 4.6,
    "upper_ci_high": 5.5,
}


def _grid() -> pl.DataFrame:
    p = [i / 100 for i in range(1, 100)]
    return pl.DataFrame({"p": p, "value": [1.0 + 4.0 * q for q in p]})


def _x(value: float, lo: float, hi: float) -> float:
    left, right, _, _ = MARGIN
    return left + (value - lo) / (hi - lo) * (WIDTH - left - right)


def test_the_plot_draws_the_curve_the_limits_and_the_cohort_medians_where_the_numbers_are() -> None:
    cohorts = pl.DataFrame({"cohort": ["patient"], "median_percentile": [75.0]})
    svg = ET.fromstring(_plot(GROUP, _grid(), cohorts))
    assert svg.tag == "svg" and svg.get("viewBox") == f"0 0 {WIDTH} {HEIGHT}"
    curve = [tuple(map(float, pt.split(","))) for pt in svg.find("polyline").get("points").split()]  # type: ignore[union-attr]
    assert len(curve) == 99
    xs, ys = zip(*curve, strict=True)
    assert list(xs) == sorted(xs) and list(ys) == sorted(ys, reverse=True)  # value up, percentile up (y down)
    # the axis spans the data and the CIs, padded by 4 %: 0.8 .. 5.5
    lo, hi = 0.8 - 0.04 * 4.7, 5.5 + 0.04 * 4.7
    limits = {e.find("title").text: float(e.get("x1")) for e in svg.iter("line") if e.find("title") is not None}  # type: ignore[union-attr,arg-type]
    assert math.isclose(limits["lower limit 1"], _x(1.0, lo, hi), abs_tol=0.06)
    assert math.isclose(limits["upper limit 5"], _x(5.0, lo, hi), abs_tol=0.06)
    bands = [e for e in svg.iter("rect") if e.find("title") is not None]
    assert [b.find("title").text for b in bands] == ["lower limit CI 0.8 to 1.2", "upper limit CI 4.6 to 5.5"]  # type: ignore[union-attr]
    assert math.isclose(float(bands[1].get("x")), _x(4.6, lo, hi), abs_tol=0.06)  # type: ignore[arg-type]
    (dot,) = svg.iter("circle")
    assert math.isclose(float(dot.get("cx")), _x(1.0 + 4.0 * 0.75, lo, hi), abs_tol=0.06)  # on the curve at p75  # type: ignore[arg-type]
    _, _, top, bottom = MARGIN
    assert math.isclose(float(dot.get("cy")), top + 0.25 * (HEIGHT - top - bottom), abs_tol=0.06)  # type: ignore[arg-type]


def test_names_from_the_data_are_escaped_in_the_plot_and_the_page() -> None:
    hostile = GROUP | {"analyte": "<script>alert(1)</script>", "unit": "<img src=x onerror=alert(2)>"}
    svg = _plot(hostile, _grid(), pl.DataFrame({"cohort": ["<b>x</b>"], "median_percentile": [50.0]}))
    ET.fromstring(svg)  # still well formed
    assert "<script" not in svg and "<img" not in svg and "<b>" not in svg
    extra = {"age_min": None, "age_max": None, "n": 120, "method": "nonparametric", "median": 3.0}
    extra |= {"uniprot": None, "panel": None, "n_below_lod": 0, "n_outliers_excluded": 0, "lower_limit_censored": False}
    intervals = pl.DataFrame([hostile | extra])
    keys = [k for k in schema.GROUP_KEYS if k in intervals.columns]
    quantiles = _grid().join(intervals.select(keys), how="cross")
    page = render_release_report("v1", intervals, quantiles, None)
    assert "<script" not in page and "<img" not in page and "&lt;script&gt;" in page


def test_a_group_without_a_grid_or_with_one_value_still_gets_a_plot() -> None:
    flat = GROUP | {k: 2.0 for k in GROUP if k.endswith(("_limit", "_low", "_high"))}
    empty, one = pl.DataFrame({"p": [], "value": []}), pl.DataFrame({"p": [0.5], "value": [2.0]})
    for group, grid in ((GROUP, empty), (flat, one)):
        ET.fromstring(_plot(group, grid, pl.DataFrame()))
    # a grid with a value missing (a release of a marker with measured zeros had one) is drawn without it: the
    # publish step failed on it with "float() argument must be ... not 'NoneType'"
    gap = _grid().with_columns(pl.when(pl.col("p") == 0.01).then(None).otherwise(pl.col("value")).alias("value"))
    drawn = ET.fromstring(_plot(GROUP, gap, pl.DataFrame()))
    curve = next(e for e in drawn.iter() if e.tag.endswith("polyline"))
    assert len(curve.get("points", "").split()) == 98


@given(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.floats(1e-6, 1e6, allow_nan=False),
)
def test_ticks_are_round_evenly_spaced_and_inside_the_axis(lo: float, span: float) -> None:
    assume(span > abs(lo) * 1e-6)  # an axis is never narrower than a millionth of its position
    hi = lo + span
    ticks = nice_ticks(lo, hi)
    assert 2 <= len(ticks) <= 11
    tol = span * 1e-9
    assert all(lo - tol <= t <= hi + tol for t in ticks)
    steps = [b - a for a, b in itertools.pairwise(ticks)]
    assert max(steps) - min(steps) <= max(abs(t) for t in ticks) * 1e-9 + span * 1e-9
    mantissa = steps[0] / 10 ** math.floor(math.log10(steps[0]))
    assert any(math.isclose(mantissa, m, rel_tol=1e-6) for m in (1, 2, 2.5, 5, 10))
