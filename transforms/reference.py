"""Reference intervals (CLSI EP28-A3c) and the healthy quantile grid. Pure numpy/polars, no I/O.

Pinned choices (docs/statistics.md):

* percentile of sorted values at rank r = p(n + 1), linear between neighbouring order statistics
  (R quantile type 6); r < 1 gives the smallest value, r > n the largest;
* 90 % CI of a limit from the binomial distribution of order statistics, equal tails: for the p-th
  percentile, lower rank = the largest r with P(B <= r - 1) <= (1 - ci)/2, upper rank = the smallest r
  with P(B >= r) <= (1 - ci)/2, B ~ Binomial(n, p) (reproduces the EP28-A3c table);
* outliers: Tukey fences (1.5 IQR) on the log scale; censored values are never outliers;
* censoring: values below LOD count in n and rank below every measured value; when limits differ
  between plates, every value under the group's highest limit is censored at that limit; a percentile
  whose interpolation touches a censored order statistic is reported as the LOD with a censored flag.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl
from scipy import stats

from transforms import schema

DEFAULT_GRID = np.round(np.arange(1, 100) / 100.0, 2)


def ci_ranks(n: int, p: float, ci_level: float = 0.90) -> tuple[int | None, int | None]:
    """1-based order-statistic ranks bracketing the p-th percentile with ``ci_level`` confidence.

    None where the sample is too small for that side to exist (rank < 1 or > n).

    >>> ci_ranks(120, 0.025)
    (1, 7)
    >>> ci_ranks(120, 0.975)
    (114, 120)
    """
    tail = (1.0 - ci_level) / 2.0
    r = np.arange(0, n + 2)
    cdf_below = stats.binom.cdf(r - 1, n, p)  # P(B <= r - 1)
    sf_at = stats.binom.sf(r - 1, n, p)  # P(B >= r)
    low_ok = r[(cdf_below <= tail) & (r >= 1)]
    high_ok = r[(sf_at <= tail) & (r <= n)]
    lo = int(low_ok.max()) if low_ok.size else None
    hi = int(high_ok.min()) if high_ok.size else None
    return lo, hi


def quantile_type6(sorted_values: np.ndarray, p: np.ndarray | float) -> np.ndarray:
    """R's type-6 quantile of already sorted values (may contain -inf/+inf for censored values)."""
    x = np.asarray(sorted_values, dtype=float)
    n = x.size
    h = np.atleast_1d(np.asarray(p, dtype=float)) * (n + 1)
    j = np.clip(np.floor(h).astype(int), 1, n)
    g = np.where((h >= 1) & (h < n), h - np.floor(h), 0.0)
    lo = x[j - 1]
    hi = x[np.minimum(j, n - 1)]
    with np.errstate(invalid="ignore"):
        out = np.where(g > 0, lo + g * (hi - lo), lo)
    # an interpolation touching a censored value is censored
    touched = np.isinf(lo) | ((g > 0) & np.isinf(hi))
    return np.where(touched, np.where((lo < 0) | (hi < 0), -np.inf, np.inf), out)


@dataclass(frozen=True)
class ReferenceInterval:
    n: int
    n_below_lod: int
    n_outliers_excluded: int
    method: str
    lower_limit: float | None
    upper_limit: float | None
    lower_ci_low: float | None
    lower_ci_high: float | None
    upper_ci_low: float | None
    upper_ci_high: float | None
    median: float | None
    coverage: float
    ci_level: float
    lod: float | None
    lower_limit_censored: bool
    excluded_index: list[int] = field(default_factory=list)


def tukey_outliers(log_values: np.ndarray, censored: np.ndarray, k: float = 1.5) -> np.ndarray:
    """Boolean mask of measured values outside Tukey's fences (type-6 quartiles, censored ranked low)."""
    ranked = np.where(censored, -np.inf, log_values)
    s = np.sort(ranked)
    q1, q3 = quantile_type6(s, np.array([0.25, 0.75]))
    if not np.isfinite(q3):
        return np.zeros(log_values.size, dtype=bool)
    if np.isfinite(q1):
        iqr = q3 - q1
        low, high = q1 - k * iqr, q3 + k * iqr
        out = (log_values < low) | (log_values > high)
    else:  # lower quartile censored: no lower fence, and no IQR to build an upper one from
        out = np.zeros(log_values.size, dtype=bool)
    return out & ~censored


def _value(x: float, lod: float | None) -> tuple[float | None, bool]:
    if np.isneginf(x):
        return lod, True
    if np.isposinf(x):
        return None, True
    return float(x), False


def reference_interval(
    values: np.ndarray,
    *,
    censored: np.ndarray | None = None,
    lod: float | None = None,
    coverage: float = 0.95,
    ci_level: float = 0.90,
    method: str = "nonparametric",
    outliers: str | None = "tukey",
    log_scale: np.ndarray | None = None,
) -> ReferenceInterval:
    """EP28-A3c reference interval of ``values`` (the reporting scale).

    ``censored`` marks values below the LOD (their entry in ``values`` is ignored); ``log_scale`` is the
    scale for outlier fences (default: log of values). This version implements ``method="nonparametric"``.
    """
    if method not in {"nonparametric", "auto"}:
        msg = f"method {method!r} is not available yet; use 'nonparametric'"
        raise ValueError(msg)
    x = np.asarray(values, dtype=float)
    cens = np.zeros(x.size, dtype=bool) if censored is None else np.asarray(censored, dtype=bool)
    if log_scale is None:
        with np.errstate(divide="ignore", invalid="ignore"):
            log_scale = np.where(cens, -np.inf, np.log(x))
    excluded = (
        tukey_outliers(np.asarray(log_scale, dtype=float), cens)
        if outliers == "tukey"
        else np.zeros(x.size, dtype=bool)
    )
    keep = ~excluded
    ranked = np.sort(np.where(cens, -np.inf, x)[keep])
    n = ranked.size
    p_low, p_high = (1 - coverage) / 2, 1 - (1 - coverage) / 2
    low, med, high = quantile_type6(ranked, np.array([p_low, 0.5, p_high]))
    lo_r = ci_ranks(n, p_low, ci_level)
    hi_r = ci_ranks(n, p_high, ci_level)

    def order_stat(r: int | None) -> float | None:
        if r is None:
            return None
        v = ranked[r - 1]
        return None if np.isinf(v) else float(v)

    lower, lower_cens = _value(low, lod)
    upper, _ = _value(high, lod)
    median, _ = _value(med, lod)
    return ReferenceInterval(
        n=n,
        n_below_lod=int(cens[keep].sum()),
        n_outliers_excluded=int(excluded.sum()),
        method="nonparametric",
        lower_limit=lower,
        upper_limit=upper,
        lower_ci_low=order_stat(lo_r[0]),
        lower_ci_high=order_stat(lo_r[1]),
        upper_ci_low=order_stat(hi_r[0]),
        upper_ci_high=order_stat(hi_r[1]),
        median=median,
        coverage=coverage,
        ci_level=ci_level,
        lod=lod,
        lower_limit_censored=lower_cens,
        excluded_index=np.flatnonzero(excluded).tolist(),
    )


def quantile_grid(
    values: np.ndarray,
    *,
    censored: np.ndarray,
    lod: float | None,
    grid: np.ndarray = DEFAULT_GRID,
    k: int = 5,
) -> pl.DataFrame:
    """The healthy distribution as (p, value, censored), keeping only p with >= k values on each side.

    Privacy rule: rank p(n + 1) must leave at least k order statistics below and above it, so the grid
    never exposes the few most extreme individuals of a small group.
    """
    ranked = np.sort(np.where(censored, -np.inf, np.asarray(values, dtype=float)))
    n = ranked.size
    h = grid * (n + 1)
    ok = (np.floor(h) >= k) & (n - np.ceil(h) + 1 >= k)
    q = quantile_type6(ranked, grid[ok])
    is_cens = np.isinf(q)
    vals = np.where(np.isneginf(q), np.nan if lod is None else lod, q)
    return pl.DataFrame(
        {"p": grid[ok].astype(float), "value": vals.astype(float), "censored": is_cens},
        schema={"p": pl.Float64, "value": pl.Float64, "censored": pl.Boolean},
    ).with_columns(pl.col("value").fill_nan(None))


@dataclass(frozen=True)
class ReferenceBuild:
    intervals: pl.DataFrame  # schema.REFERENCE_INTERVAL
    quantiles: pl.DataFrame  # schema.REFERENCE_QUANTILE
    outliers: pl.DataFrame  # group keys + sample_id of every excluded value (warehouse only)
    skipped: pl.DataFrame  # group keys + n + why a group was not published


def build_reference(
    measurements: pl.DataFrame,
    *,
    min_n: int = 120,
    coverage: float = 0.95,
    ci_level: float = 0.90,
    grid: np.ndarray = DEFAULT_GRID,
    k_privacy: int = 5,
) -> ReferenceBuild:
    """Reference groups from healthy normalised measurements (one row per sample x analyte x platform).

    Needs the NORMALISED columns plus ``matrix``. Publishes the ``sex = all`` group of every analyte,
    platform, panel, matrix and unit with n >= ``min_n``. Above-ULOQ values rank above every value.
    """
    keys = ["analyte", "uniprot", "platform", "panel", "matrix", "unit"]
    intervals: list[dict[str, object]] = []
    quantiles: list[pl.DataFrame] = []
    outliers: list[pl.DataFrame] = []
    skipped: list[dict[str, object]] = []
    for key, group in measurements.sort("sample_id").group_by(keys, maintain_order=True):
        meta = dict(zip(keys, key, strict=True)) | {"sex": "all", "age_min": None, "age_max": None}
        below = group["censoring"].is_in(["below_lod", "below_lloq"]).fill_null(False).to_numpy()
        above = (group["censoring"] == "above_uloq").fill_null(False).to_numpy()
        values = group["value"].to_numpy().astype(float)
        values = np.where(above, np.inf, values)
        logv = group["log_value"].to_numpy().astype(float)
        logv = np.where(above, np.inf, np.where(below, -np.inf, logv))
        censored_limits = group.filter(pl.Series(below))["limit_value"].drop_nulls().to_numpy()
        reported_lods = group["lod"].drop_nulls().to_numpy()
        lod: float | None = None
        if censored_limits.size:
            lod = float(censored_limits.max())
        elif reported_lods.size:
            lod = float(reported_lods.max())
        if lod is not None:
            # limits differ between plates: censor every value under the highest limit of the group, so
            # that censored values rank below every measured one (a common threshold, docs/statistics.md)
            common = ~above & (values < lod)
            below = below | common
            logv = np.where(common, -np.inf, logv)
        if group.height < min_n:
            skipped.append(meta | {"n": group.height, "why": f"n = {group.height} < minimum {min_n}"})
            continue
        ri = reference_interval(values, censored=below, lod=lod, coverage=coverage, ci_level=ci_level, log_scale=logv)
        if ri.n < min_n:
            skipped.append(meta | {"n": ri.n, "why": f"n = {ri.n} after outlier exclusion < minimum {min_n}"})
            continue
        row = {k: v for k, v in ri.__dict__.items() if k != "excluded_index"}
        intervals.append(meta | row)
        keep = np.ones(values.size, dtype=bool)
        keep[ri.excluded_index] = False
        q = quantile_grid(values[keep], censored=below[keep], lod=lod, grid=grid, k=k_privacy)
        quantiles.append(q.with_columns(pl.lit(v).alias(k) for k, v in meta.items()))
        if ri.excluded_index:
            outliers.append(
                group[ri.excluded_index]
                .select("sample_id", "value")
                .with_columns(pl.lit(v).alias(k) for k, v in meta.items())
            )
    interval_frame = (
        schema.conform(pl.DataFrame(intervals, infer_schema_length=None), schema.REFERENCE_INTERVAL)
        if intervals
        else schema.empty(schema.REFERENCE_INTERVAL)
    )
    quantile_frame = (
        schema.conform(pl.concat(quantiles, how="diagonal_relaxed"), schema.REFERENCE_QUANTILE)
        if quantiles
        else schema.empty(schema.REFERENCE_QUANTILE)
    )
    out_schema = {
        **{k: schema.REFERENCE_INTERVAL[k] for k in schema.GROUP_KEYS},
        "sample_id": pl.String(),
        "value": pl.Float64(),
    }
    outlier_frame = (
        schema.conform(pl.concat(outliers, how="diagonal_relaxed"), out_schema)
        if outliers
        else schema.empty(out_schema)
    )
    skip_schema = {
        **{k: schema.REFERENCE_INTERVAL[k] for k in schema.GROUP_KEYS},
        "n": pl.Int64(),
        "why": pl.String(),
    }
    skipped_frame = (
        schema.conform(pl.DataFrame(skipped, infer_schema_length=None), skip_schema)
        if skipped
        else schema.empty(skip_schema)
    )
    sort_keys = ["analyte", "platform", "panel", "matrix", "unit", "sex"]
    return ReferenceBuild(
        interval_frame.sort(sort_keys),
        quantile_frame.sort([*sort_keys, "p"]),
        outlier_frame,
        skipped_frame,
    )
