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
