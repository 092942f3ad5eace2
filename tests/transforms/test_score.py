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
