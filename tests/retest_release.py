"""Test helper: a release built from the demo generator's own truth, not from the pipeline.

Every Olink and MSD marker of the demo gets a reference group drawn from the distribution the generator
samples healthy people from (Olink: normal in NPX around the assay centre; MSD: log-normal around the
median), and plate-control anchors at the level the generator puts the controls on a plate without a plate
effect. A retest plate with a planted shift must therefore come back to that level exactly (up to noise).
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import polars as pl

from transforms import schema
from transforms.demo import MSD_ASSAYS, MSD_CONTROLS, OLINK_ASSAYS, OLINK_CONTROLS
from transforms.variation import RETEST_VARIATION

OLINK_PANEL = "Olink Target 96 Inflammation"
RCV_LOG = {"olink": 1.0, "msd": 0.6}  # NPX; natural log
P_GRID = [p / 100 for p in range(1, 100)]


def _markers() -> list[dict[str, Any]]:
    olink = [
        {"analyte": h, "uniprot": u, "platform": "olink", "panel": OLINK_PANEL, "unit": "NPX", "mu": c, "sd": sd}
        for _, h, _, u, c, sd in OLINK_ASSAYS
    ]
    msd = [
        {
            "analyte": h,
            "uniprot": None,
            "platform": "msd",
            "panel": "MSD",
            "unit": "pg/mL",
            "mu": math.log(m),
            "sd": math.log(g),
        }
        for _, h, m, g, _ in MSD_ASSAYS
    ]
    return olink + msd


def synthetic_release(version: str = "2026.01.01-1", matrix: str = "serum") -> dict[str, Any]:
    """A release dict as ``warehouse.client.load_release`` returns it (tables as pyarrow)."""
    z = NormalDist()
    intervals, grid, variation, anchors = [], [], [], []
    for m in _markers():
        log = m["platform"] == "msd"

        def at(p: float, m: dict[str, Any] = m, log: bool = log) -> float:
            v = m["mu"] + m["sd"] * z.inv_cdf(p)
            return math.exp(v) if log else v

        keys = {k: m[k] for k in ("analyte", "uniprot", "platform", "panel", "unit")} | {"matrix": matrix}
        group = keys | {"sex": "all", "age_min": None, "age_max": None}
        intervals.append(
            group
            | {
                "n": 400,
                "n_below_lod": 0,
                "n_outliers_excluded": 0,
                "method": "nonparametric",
                "lower_limit": at(0.025),
                "upper_limit": at(0.975),
                "lower_ci_low": at(0.015),
                "lower_ci_high": at(0.04),
                "upper_ci_low": at(0.96),
                "upper_ci_high": at(0.985),
                "median": at(0.5),
                "coverage": 0.95,
                "ci_level": 0.9,
                "lod": None,
                "lower_limit_censored": False,
            }
        )
        grid += [group | {"p": p, "value": at(p), "censored": False} for p in P_GRID]
        variation.append(
            keys
            | {
                "scale": "log",
                "n_subjects": 40,
                "n_samples": 80,
                "probability": 0.95,
                "rcv_log": RCV_LOG[m["platform"]],
                "rcv_increase_pct": math.expm1(RCV_LOG[m["platform"]]) * 100,
                "rcv_decrease_pct": math.expm1(-RCV_LOG[m["platform"]]) * 100,
            }
        )
    for _, h, _, _, centre, _ in OLINK_ASSAYS:
        for control, offset in OLINK_CONTROLS.items():
            anchors.append(("olink", OLINK_PANEL, h, control, "NPX", centre + offset))
    for _, h, median, _, _ in MSD_ASSAYS:
        for control, factor in MSD_CONTROLS.items():
            anchors.append(("msd", "MSD", h, control, "pg/mL", math.log(median * factor)))
    anchor_frame = pl.DataFrame(
        anchors, schema=["platform", "panel", "analyte", "control_id", "unit", "level"], orient="row"
    ).with_columns(pl.lit(12, pl.Int64).alias("n_plates"))
    from expectations.suites import DEFAULT_THRESHOLDS

    return {
        "manifest": {"version": version, "parameters": {"quality_thresholds": dict(DEFAULT_THRESHOLDS)}},
        "manifest_sha256": "0" * 64,
        "reference_intervals": schema.conform(
            pl.DataFrame(intervals, infer_schema_length=None), schema.REFERENCE_INTERVAL
        ).to_arrow(),
        "reference_quantiles": schema.conform(
            pl.DataFrame(grid, infer_schema_length=None), schema.REFERENCE_QUANTILE
        ).to_arrow(),
        "retest_variation": schema.conform(
            pl.DataFrame(variation, infer_schema_length=None), RETEST_VARIATION
        ).to_arrow(),
        "normalisation_anchors": anchor_frame.to_arrow(),
    }
