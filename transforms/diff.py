"""What changed between two releases' reference intervals (pure: frames in, a small summary out)."""

from __future__ import annotations

from typing import Any

import polars as pl

from transforms import schema


def diff_intervals(old: pl.DataFrame, new: pl.DataFrame) -> dict[str, Any]:
    """Groups added and removed, and limits that moved by more than their confidence interval.

    A limit "moved" when the new limit lies outside the old limit's CI (or the old limit outside the new CI),
    so ordinary sampling noise between releases is not reported as a change.
    """
    keys = schema.GROUP_KEYS

    def label(frame: pl.DataFrame) -> list[str]:
        return sorted(
            f"{r['analyte']} {r['platform']} {r['matrix']} {r['unit']} sex={r['sex']}"
            + (f" age={r['age_min']}-{r['age_max']}" if r["age_min"] is not None or r["age_max"] is not None else "")
            for r in frame.iter_rows(named=True)
        )

    added = new.join(old.select(keys), on=keys, how="anti", nulls_equal=True)
    removed = old.join(new.select(keys), on=keys, how="anti", nulls_equal=True)
    both = old.join(new, on=keys, how="inner", nulls_equal=True, suffix="_new")
    moved = []
    for side in ("lower", "upper"):
        lim, lo, hi = f"{side}_limit", f"{side}_ci_low", f"{side}_ci_high"
        outside = (
            (pl.col(f"{lim}_new") < pl.col(lo))
            | (pl.col(f"{lim}_new") > pl.col(hi))
            | (pl.col(lim) < pl.col(f"{lo}_new"))
            | (pl.col(lim) > pl.col(f"{hi}_new"))
        ).fill_null(False)
        for r in both.filter(outside).iter_rows(named=True):
            moved.append(
                {
                    "group": label(pl.DataFrame([{k: r[k] for k in keys}]))[0],
                    "limit": lim,
                    "old": r[lim],
                    "new": r[f"{lim}_new"],
                }
            )
    return {"groups_added": label(added), "groups_removed": label(removed), "limits_moved": moved}
