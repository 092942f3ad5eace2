from __future__ import annotations

import polars as pl

from tests.transforms.test_diff import frame, group
from transforms import schema
from transforms.score import score_person


def grid(analyte: str, sex: str = "all") -> pl.DataFrame:
    g = group(analyte, 1.0, (0.8, 1.2), sex=sex)
    rows = [
        {**{k: g[k] for k in schema.GROUP_KEYS}, "p": p / 100, "value": 1.0 + 9.0 * (p - 1) / 98, "censored": False}
        for p in range(1, 100)
    ]
    return schema.conform(pl.DataFrame(rows, infer_schema_length=None), schema.REFERENCE_QUANTILE)


def test_score_places_values_and_refuses_other_platforms_and_units() -> None:
    intervals = frame([group("IL6", 1.0, (0.8, 1.2)), group("IL6", 1.5, (1.3, 1.7), sex="F")])
    quantiles = pl.concat([grid("IL6"), grid("IL6", sex="F")])
    results = pl.DataFrame(
        {
            "analyte": ["IL6", "IL6", "IL6", "IL6", "TNF"],
            "platform": ["msd", "msd", "olink", "msd", "msd"],
            "panel": ["MSD"] * 5,
            "unit": ["pg/mL", "pg/mL", "NPX", "pg/mL", "pg/mL"],
            "value": [5.5, 12.0, 3.0, 0.5, 2.0],
            "censoring": [None, None, None, None, None],
        }
    )
    out = score_person(results, intervals, quantiles, matrix="serum", sex="F", age=40)
    rows = out.to_dicts()
    assert rows[0]["percentile"] == "50" and rows[0]["position"] == "inside the reference interval"
    assert rows[0]["reference_group"] == "msd serum sex=F"  # the sex-specific group is preferred
    assert rows[1]["percentile"] == "> 99" and rows[1]["position"] == "above the reference interval"
    assert rows[2]["status"].startswith("not placed: measured on olink in NPX")
    assert rows[3]["position"] == "below the reference interval"
    assert rows[4]["status"] == "not placed: no serum reference group for TNF in this release"
    text = " ".join(str(v) for r in rows for v in r.values()).lower()
    assert "abnormal" not in text and "diagnos" not in text


def test_retests_are_compared_with_the_reference_change_value() -> None:
    from datetime import date

    intervals = frame([group("IL6", 1.0, (0.8, 1.2))])
    quantiles = grid("IL6")
    variation = pl.DataFrame(
        {
            "analyte": ["IL6"],
            "platform": ["msd"],
            "matrix": ["serum"],
            "unit": ["pg/mL"],
            "probability": [0.95],
            "rcv_log": [0.5],
            "rcv_increase_pct": [64.9],
            "rcv_decrease_pct": [-39.3],
        }
    )
    results = pl.DataFrame(
        {
            "analyte": ["IL6"] * 4 + ["TNF"] * 2,
            "platform": ["msd"] * 6,
            "panel": ["MSD"] * 6,
            "unit": ["pg/mL"] * 6,
            # visit order differs from row order: changes follow collection dates
            "value": [4.0, 2.0, 2.4, None, 1.0, 3.0],
            "censoring": [None, None, None, "below_lod", None, None],
            "collection_date": [
                date(2026, 6, 1),
                date(2026, 1, 1),
                date(2026, 3, 1),
                date(2026, 9, 1),
                date(2026, 1, 1),
                date(2026, 3, 1),
            ],
        }
    )
    out = score_person(results, intervals, quantiles, matrix="serum", variation=variation)
    by_date = {(r["analyte"], str(r["collection_date"])): r for r in out.to_dicts()}
    first = by_date[("IL6", "2026-01-01")]
    assert first["change"] is None and first["change_vs_rcv"] is None
    second = by_date[("IL6", "2026-03-01")]  # 2.0 -> 2.4: +20 %, ln 0.18 < 0.5
    assert second["change"] == "+20 %" and second["change_vs_rcv"].startswith("within the reference change value")
    third = by_date[("IL6", "2026-06-01")]  # 2.4 -> 4.0: +67 %, ln 0.51 > 0.5
    assert third["change"] == "+67 %" and third["change_vs_rcv"].startswith("larger than the reference change")
    assert by_date[("IL6", "2026-09-01")]["change_vs_rcv"].startswith("not assessed: a value is censored")
    assert by_date[("TNF", "2026-03-01")]["change_vs_rcv"] == (
        "no reference change value for this marker in this release"
    )
    text = " ".join(str(v) for r in out.to_dicts() for v in r.values()).lower()
    assert "abnormal" not in text and "diagnos" not in text and "significant" not in text
    # the score table's short verdicts say why a change is not assessed (it said "not assessed" for every one)
    from flows.cli import rcv_verdict

    assert [rcv_verdict(by_date[k]["change_vs_rcv"] or "") for k in sorted(by_date)] == [
        "",  # IL6 2026-01-01: the first visit
        "within RCV",
        "larger than RCV",
        "not assessed: censored",
        "",
        "no RCV in release",  # TNF: too few healthy people seen twice in the release
    ]


def test_a_marker_whose_whole_interval_is_below_the_lod_says_so() -> None:
    """A marker nearly every healthy person has below its LOD publishes the LOD as its limits, with
    lower_limit_censored and upper_limit_censored. A result below the LOD is where healthy people are, and a
    measured one, even at the LOD itself, is above the interval: the position says both, and the JSON
    carries the flag. A release published before the flag existed (no column) still scores."""
    under = {**group("IL4", 0.1, (0.1, 0.1)), "upper_limit": 0.1, "upper_ci_low": 0.1, "upper_ci_high": 0.1}
    under |= {"median": 0.1, "lod": 0.1, "lower_limit_censored": True, "upper_limit_censored": True}
    intervals = frame([under, {**group("IL6", 1.0, (0.8, 1.2)), "upper_limit_censored": False}])
    quantiles = pl.concat([grid("IL4"), grid("IL6")])
    results = pl.DataFrame(
        {
            "analyte": ["IL4", "IL4", "IL4", "IL6"],
            "platform": ["msd"] * 4,
            "panel": ["MSD"] * 4,
            "unit": ["pg/mL"] * 4,
            "value": [None, 0.1, 0.35, 0.5],
            "censoring": ["below_lod", None, None, "below_lod"],
            "limit_value": [0.1, None, None, 0.5],
        }
    )
    rows = score_person(results, intervals, quantiles, matrix="serum").to_dicts()
    assert [r["position"] for r in rows] == [
        "below the LOD, as is the whole reference interval",
        "above the reference interval, which lies below the LOD",
        "above the reference interval, which lies below the LOD",
        "below the LOD",
    ]
    assert [r["upper_limit_censored"] for r in rows] == [True, True, True, False]
    before = intervals.drop("upper_limit_censored")  # a release published before the column existed
    assert [r["position"] for r in score_person(results, before, quantiles, matrix="serum").to_dicts()][:2] == [
        "below the LOD (interval starts below the LOD)",
        "inside the reference interval",
    ]
    from warehouse.person_page import _strip

    strip = _strip([rows[2]], grid("IL4").sort("p"))  # the page's strip names the upper limit as the LOD
    assert "upper reference limit 0.1 pg/mL (below the limit of detection: the limit shown is the LOD)" in strip
    assert "below the limit of detection" not in _strip([rows[3]], grid("IL6").sort("p")).split("upper reference")[1]
