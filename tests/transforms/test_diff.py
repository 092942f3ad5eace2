from __future__ import annotations

import polars as pl

from transforms import schema
from transforms.diff import diff_intervals


def group(analyte: str, lower: float, lo_ci: tuple[float, float], sex: str = "all") -> dict[str, object]:
    return {
        "analyte": analyte,
        "uniprot": "X",
        "platform": "msd",
        "panel": "MSD",
        "matrix": "serum",
        "unit": "pg/mL",
        "sex": sex,
        "age_min": None,
        "age_max": None,
        "n": 200,
        "n_below_lod": 0,
        "n_outliers_excluded": 0,
        "method": "nonparametric",
        "lower_limit": lower,
        "upper_limit": 10.0,
        "lower_ci_low": lo_ci[0],
        "lower_ci_high": lo_ci[1],
        "upper_ci_low": 9.0,
        "upper_ci_high": 11.0,
        "median": 5.0,
        "coverage": 0.95,
        "ci_level": 0.9,
        "lod": None,
        "lower_limit_censored": False,
    }


def frame(rows: list[dict[str, object]]) -> pl.DataFrame:
    return schema.conform(pl.DataFrame(rows, infer_schema_length=None), schema.REFERENCE_INTERVAL)


def test_diff_reports_added_removed_and_moved_beyond_ci_only() -> None:
    old = frame([group("IL6", 1.0, (0.8, 1.2)), group("TNF", 1.0, (0.8, 1.2)), group("IL10", 1.0, (0.8, 1.2))])
    new = frame([group("IL6", 1.1, (0.9, 1.3)), group("TNF", 2.0, (1.8, 2.2)), group("IFNG", 1.0, (0.8, 1.2))])
    d = diff_intervals(old, new)
    assert d["groups_added"] == ["IFNG msd serum pg/mL sex=all"]
    assert d["groups_removed"] == ["IL10 msd serum pg/mL sex=all"]
    assert [(m["group"], m["limit"], m["old"], m["new"]) for m in d["limits_moved"]] == [
        ("TNF msd serum pg/mL sex=all", "lower_limit", 1.0, 2.0)
    ]
    assert diff_intervals(old, old) == {"groups_added": [], "groups_removed": [], "limits_moved": []}
