"""Place one person's results against a release: percentile and inside/outside the reference interval.

A comparison with a healthy reference, for research and discussion with a clinician. It never says
"abnormal", "positive" or anything that reads as a diagnosis.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import polars as pl

from transforms import schema
from transforms.normalise import LOG_SCALE_UNITS

DISCLAIMER = (
    "This compares measured values with a healthy reference distribution. It is not a diagnosis; discuss "
    "results with a clinician."
)


#: What a censored result is shown as: never a number.
CENSORED_TEXT = {"below_lod": "< LOD", "below_lloq": "< LLOQ", "above_uloq": "> ULOQ"}

#: Columns of the results passed through to the score rows when present (retests from exports carry them).
PASSED_THROUGH = ["subject_id", "sample_id", "source_file", "batch_method", "plate_shift", "plate_controls"]

#: Columns of the reference group copied to each placed result.
GROUP_FIELDS = [
    "panel",
    "matrix",
    "sex",
    "age_min",
    "age_max",
    "n",
    "method",
    *schema.LIMITS,
    "lower_limit_censored",
    "upper_limit_censored",  # null for a release published before the column existed
]

#: One row per result placed (or not) against a release.
SCORE: dict[str, pl.DataType] = {
    "subject_id": pl.String(),
    "collection_date": pl.Date(),
    "sample_id": pl.String(),
    "analyte": pl.String(),
    "platform": pl.String(),
    "value": pl.Float64(),  # null when censored: see shown and censoring
    "unit": pl.String(),
    "shown": pl.String(),  # the value as a person reads it: "2.31 pg/mL", "< LOD"
    "censoring": pl.String(),
    "limit_value": pl.Float64(),  # the limit a censored value lies beyond, in unit
    "percentile": pl.String(),
    "percentile_value": pl.Float64(),  # the same as a number where it is one (not "< 1")
    "position": pl.String(),
    "reference_group": pl.String(),
    **{k: schema.REFERENCE_INTERVAL[k] for k in GROUP_FIELDS},
    "change": pl.String(),
    "change_log": pl.Float64(),  # the change on the log scale (NPX difference, or natural log of the ratio)
    "rcv_log": pl.Float64(),
    "change_vs_rcv": pl.String(),
    "batch_method": pl.String(),
    "plate_shift": pl.Float64(),
    "plate_controls": pl.Int64(),
    "source_file": pl.String(),
    "status": pl.String(),
}


def _shown(value: float | None, unit: str) -> str:
    return "" if value is None else f"{value:.4g} {unit}"


def _group_label(group: dict[str, object]) -> str:
    band = ""
    if group["age_min"] is not None or group["age_max"] is not None:
        lo, hi = group["age_min"], group["age_max"]
        band = f" age {'' if lo is None else f'{lo:g}'}-{'' if hi is None else f'{hi:g}'}"
    return f"{group['platform']} {group['matrix']} sex={group['sex']}{band}"


def _pick_group(groups: pl.DataFrame, sex: str | None, age: float | None) -> dict[str, object] | None:
    """The most specific published group that applies: sex-specific, then age band, then 'all'."""
    candidates = []
    for g in groups.iter_rows(named=True):
        if g["sex"] != "all" and g["sex"] != sex:
            continue
        lo, hi = g["age_min"], g["age_max"]
        if (lo is not None or hi is not None) and (
            age is None or (lo is not None and age < lo) or (hi is not None and age >= hi)
        ):
            continue
        specificity = (g["sex"] != "all") + (lo is not None or hi is not None)
        candidates.append((specificity, g))
    return max(candidates, key=lambda c: c[0])[1] if candidates else None


def score_person(
    results: pl.DataFrame,
    intervals: pl.DataFrame,
    quantiles: pl.DataFrame,
    *,
    matrix: str,
    sex: str | None = None,
    age: float | None = None,
    variation: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One row per result: reference group used, percentile, position relative to the interval, or why the
    marker cannot be placed. ``results`` needs analyte, platform, panel, unit, value, censoring, and
    optionally collection_date.

    With results from several collection dates, each later result also gets its change from the previous
    one and whether that change is larger than the marker's reference change value in ``variation``
    (the release's ``retest_variation`` table), i.e. larger than analytical plus within-person variation
    would make likely in a healthy person."""
    rows = []
    for r in results.iter_rows(named=True):
        censored = r.get("censoring") in CENSORED_TEXT
        base = {
            **{k: r.get(k) for k in PASSED_THROUGH},
            "analyte": r["analyte"],
            "platform": r["platform"],
            "unit": r["unit"],
            "value": None if censored else r["value"],  # a censored value is never shown as a number
            "shown": CENSORED_TEXT[r["censoring"]] if censored else _shown(r["value"], r["unit"]),
            "limit_value": r.get("limit_value") if censored else None,
            "collection_date": r.get("collection_date"),
            "censoring": r.get("censoring"),
        }
        same = intervals.filter((pl.col("analyte") == r["analyte"]) & (pl.col("matrix") == matrix))
        if same.height == 0:
            rows.append(
                base | {"status": f"not placed: no {matrix} reference group for {r['analyte']} in this release"}
            )
            continue
        match = same.filter((pl.col("platform") == r["platform"]) & (pl.col("unit") == r["unit"]))
        if match.height == 0:
            offered = ", ".join(sorted({f"{g['platform']} in {g['unit']}" for g in same.iter_rows(named=True)}))
            rows.append(
                base
                | {
                    "status": f"not placed: measured on {r['platform']} in {r['unit']}; the release "
                    f"has {offered}; values from other platforms or units are not comparable"
                }
            )
            continue
        row_age = r.get("age") if r.get("age") is not None else age  # a series spans birthdays
        group = _pick_group(match, r.get("sex") or sex, row_age)
        if group is None:
            rows.append(base | {"status": "not placed: no group for this sex and age"})
            continue
        grid = quantiles.filter(schema.same_group(group)).sort("p")
        p, v = grid["p"].to_numpy(), grid["value"].to_numpy()
        value = r["value"]
        exact = None
        if r.get("censoring") in ("below_lod", "below_lloq") or value is None:
            percentile = f"< {p.min() * 100:.0f}" if p.size else "below LOD"
        elif r.get("censoring") == "above_uloq":
            percentile = f"> {p.max() * 100:.0f}" if p.size else "above ULOQ"
        elif p.size == 0:
            percentile = "n/a"
        elif value < v.min():
            percentile = f"< {p.min() * 100:.0f}"
        elif value > v.max():
            percentile = f"> {p.max() * 100:.0f}"
        else:
            exact = float(np.interp(value, v, p)) * 100
            percentile = f"{exact:.0f}"
        lower = None if group["lower_limit_censored"] else group["lower_limit"]
        # the upper limit itself below the LOD: nearly every healthy person's value is below it, and the limit
        # published is the LOD, so a value below the LOD is where they are, and a measured one is above them
        under = bool(group.get("upper_limit_censored"))
        if value is None or r.get("censoring") in ("below_lod", "below_lloq"):
            position = "below the LOD" + (
                ", as is the whole reference interval"
                if under
                else " (interval starts below the LOD)"
                if lower is None
                else ""
            )
        elif r.get("censoring") == "above_uloq":
            position = "above the upper limit of quantification" + (
                "" if group["upper_limit"] is None else ", above the reference interval"
            )
        elif lower is not None and value < lower:
            position = "below the reference interval"
        elif value > group["upper_limit"] or (under and value >= group["upper_limit"]):
            position = "above the reference interval" + (", which lies below the LOD" if under else "")
        else:
            position = "inside the reference interval"
        rows.append(
            base
            | {
                "status": "placed",
                "reference_group": _group_label(group),
                **{k: group.get(k) for k in GROUP_FIELDS},
                "percentile": percentile,
                "percentile_value": exact,
                "position": position,
            }
        )
    _retest_changes(rows, variation, matrix)
    out = pl.DataFrame(rows, schema_overrides=SCORE, infer_schema_length=None) if rows else pl.DataFrame()
    return schema.conform(out, SCORE)


def _retest_changes(rows: list[dict[str, object]], variation: pl.DataFrame | None, matrix: str) -> None:
    """Add ``change`` and ``change_vs_rcv`` to every result that has an earlier result of the same marker."""
    series: dict[tuple[object, ...], list[dict[str, object]]] = {}
    for row in rows:
        if row.get("collection_date") is not None:
            series.setdefault((row["analyte"], row["platform"], row["unit"]), []).append(row)
    for (analyte, platform, unit), visits in series.items():
        visits.sort(key=lambda r: str(r["collection_date"]))
        rcv = None
        if variation is not None and variation.height:
            match = variation.filter(
                (pl.col("analyte") == analyte)
                & (pl.col("platform") == platform)
                & (pl.col("unit") == unit)
                & (pl.col("matrix") == matrix)
            )
            rcv = match.row(0, named=True) if match.height else None
        for before, after in pairwise(visits):
            a, b = before["value"], after["value"]
            if before.get("censoring") or after.get("censoring") or a is None or b is None:
                after["change_vs_rcv"] = "not assessed: a value is censored (below the LOD or above the ULOQ)"
                continue
            npx = unit in LOG_SCALE_UNITS  # NPX: already log2, changes are differences
            if not npx and (float(a) <= 0 or float(b) <= 0):  # type: ignore[arg-type]
                after["change_vs_rcv"] = "not assessed: a value is not positive"
                continue
            delta = float(b) - float(a) if npx else float(np.log(float(b) / float(a)))  # type: ignore[arg-type]
            after["change"] = f"{delta:+.2f} NPX" if npx else f"{np.expm1(delta) * 100:+.0f} %"
            after["change_log"] = delta
            if rcv is None:
                after["change_vs_rcv"] = "no reference change value for this marker in this release"
                continue
            bounds = (
                f"±{rcv['rcv_log']:.2f} NPX"
                if npx
                else f"{rcv['rcv_increase_pct']:+.0f} % / {rcv['rcv_decrease_pct']:+.0f} %"
            )
            level = f"{rcv['probability'] * 100:.0f} %"
            after["rcv_log"] = rcv["rcv_log"]
            if abs(delta) > rcv["rcv_log"]:
                after["change_vs_rcv"] = (
                    f"larger than the reference change value ({bounds}, {level}): more than analytical and "
                    "within-person variation of healthy people usually explains"
                )
            else:
                after["change_vs_rcv"] = f"within the reference change value ({bounds}, {level})"
