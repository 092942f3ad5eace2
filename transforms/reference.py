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
from functools import lru_cache
from itertools import pairwise

import numpy as np
import polars as pl
from scipy import stats

from transforms import schema

DEFAULT_GRID = np.round(np.arange(1, 100) / 100.0, 2)


@lru_cache(maxsize=4096)
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


def dixon_outliers(values: np.ndarray) -> np.ndarray:
    """Dixon's rule: the most extreme value is an outlier when its gap to the next value exceeds a third of
    the range (D/R > 1/3); repeated at both ends until none is found. Censored values (-inf) never are."""
    x = np.asarray(values, dtype=float)
    order = np.argsort(x, kind="stable")
    lo, hi = 0, x.size - 1
    out = np.zeros(x.size, dtype=bool)
    while hi - lo >= 2:
        finite_lo = lo
        while finite_lo < hi and np.isinf(x[order[finite_lo]]):
            finite_lo += 1
        rng = x[order[hi]] - x[order[finite_lo]]
        if rng <= 0:
            break
        if (x[order[hi]] - x[order[hi - 1]]) / rng > 1 / 3:
            out[order[hi]] = True
            hi -= 1
        elif finite_lo == lo and (x[order[lo + 1]] - x[order[lo]]) / rng > 1 / 3:
            out[order[lo]] = True
            lo += 1
        else:
            break
    return out


def _value(x: float, lod: float | None) -> tuple[float | None, bool]:
    if np.isneginf(x):
        return lod, True
    if np.isposinf(x):
        return None, True
    return float(x), False


NONPARAMETRIC_MIN_N = 120
SMALL_MIN_N = 20
BOOTSTRAP_SEED = 20261125
BOOTSTRAP_B = 500


def parametric_limits(
    t: np.ndarray, *, coverage: float = 0.95, ci_level: float = 0.90
) -> tuple[float, float, float, float, float, float, float]:
    """Gaussian limits on an already transformed scale: mean -/+ z * sd, CIs with se = sd * sqrt(1/n + z^2/(2n)).

    Returns lower, upper, lower CI low/high, upper CI low/high and the centre (mean). Matches R
    referenceIntervals' parametric method.
    """
    n = t.size
    m, sd = float(t.mean()), float(t.std(ddof=1))
    z = stats.norm.ppf(1 - (1 - coverage) / 2)
    zc = stats.norm.ppf(1 - (1 - ci_level) / 2)
    se = sd * np.sqrt(1 / n + z**2 / (2 * n))
    lo, hi = m - z * sd, m + z * sd
    return lo, hi, lo - zc * se, lo + zc * se, hi - zc * se, hi + zc * se, m


def _biweight_location(t: np.ndarray, c: float = 3.7, tol: float = 1e-10, max_iter: int = 200) -> float:
    centre = float(np.median(t))
    mad = float(np.median(np.abs(t - centre))) / 0.6745 or 1e-12
    for _ in range(max_iter):
        u = (t - centre) / (c * mad)
        w = np.where(np.abs(u) < 1, (1 - u**2) ** 2, 0.0)
        new = float(np.sum(w * t) / np.sum(w))
        if abs(new - centre) < tol:
            return new
        centre = new
    return centre


def _biweight_scale(t: np.ndarray, centre: float, c: float = 9.0) -> float:
    """Biweight midvariance (Hoaglin, Mosteller and Tukey 1983) about ``centre``, as a standard deviation."""
    mad = float(np.median(np.abs(t - np.median(t)))) or 1e-12
    u = (t - centre) / (c * mad)
    inside = np.abs(u) < 1
    num = np.sqrt(t.size * np.sum(((t - centre) ** 2 * (1 - u**2) ** 4)[inside]))
    den = abs(np.sum(((1 - u**2) * (1 - 5 * u**2))[inside]))
    return float(num / den)


def robust_limits(t: np.ndarray, *, coverage: float = 0.95) -> tuple[float, float, float]:
    """Horn and Pesce (1998) robust limits on a transformed scale: biweight location T and scale S,
    T -/+ t(n-1) * sqrt(S^2 + S^2/n). Returns lower, upper, centre."""
    n = t.size
    centre = _biweight_location(t)
    scale = _biweight_scale(t, centre)
    q = stats.t.ppf(1 - (1 - coverage) / 2, n - 1)
    half = q * np.sqrt(scale**2 + scale**2 / n)
    return centre - half, centre + half, centre


def choose_transform(x: np.ndarray) -> tuple[str, float | None]:
    """Box-Cox lambda by maximum likelihood for positive values (0 = log); ('identity', None) otherwise."""
    if np.all(x > 0):
        _, lam = stats.boxcox(x)
        return "boxcox", float(lam)
    return "identity", None


def _forward(x: np.ndarray, lam: float | None) -> np.ndarray:
    if lam is None:
        return x
    return np.log(x) if abs(lam) < 1e-12 else (x**lam - 1) / lam


def _inverse(y: float, lam: float | None) -> float:
    if lam is None:
        return float(y)
    if abs(lam) < 1e-12:
        return float(np.exp(y))
    base = lam * y + 1
    return float(base ** (1 / lam)) if base > 0 else float("nan")


def _small_sample_interval(
    x: np.ndarray, *, coverage: float, ci_level: float, method: str, excluded: np.ndarray
) -> ReferenceInterval:
    """Parametric (after Box-Cox) or robust limits for 20 <= n < 120 (uncensored values only)."""
    kind, lam = choose_transform(x)
    t = _forward(x, lam)
    if method == "auto":
        normal_enough = stats.shapiro(t).pvalue >= 0.05
        method = "parametric" if normal_enough else "robust"
    if method == "parametric":
        lo, hi, llo, lhi, ulo, uhi, _ = parametric_limits(t, coverage=coverage, ci_level=ci_level)
        cis = [_inverse(v, lam) for v in (llo, lhi, ulo, uhi)]
    else:
        lo, hi, _centre = robust_limits(t, coverage=coverage)
        rng = np.random.default_rng(BOOTSTRAP_SEED)
        boots = np.array([robust_limits(rng.choice(t, t.size), coverage=coverage)[:2] for _ in range(BOOTSTRAP_B)])
        a = (1 - ci_level) / 2
        qs = np.quantile(boots, [a, 1 - a], axis=0)
        cis = [_inverse(v, lam) for v in (qs[0, 0], qs[1, 0], qs[0, 1], qs[1, 1])]
    label = f"{method} ({'log' if lam is not None and abs(lam) < 1e-12 else kind}"
    label += f", lambda={lam:.3f})" if lam is not None else ")"
    return ReferenceInterval(
        n=x.size,
        n_below_lod=0,
        n_outliers_excluded=int(excluded.sum()),
        method=label,
        lower_limit=_inverse(lo, lam),
        upper_limit=_inverse(hi, lam),
        lower_ci_low=cis[0],
        lower_ci_high=cis[1],
        upper_ci_low=cis[2],
        upper_ci_high=cis[3],
        median=float(np.median(x)),
        coverage=coverage,
        ci_level=ci_level,
        lod=None,
        lower_limit_censored=False,
        excluded_index=np.flatnonzero(excluded).tolist(),
    )


def reference_interval(
    values: np.ndarray,
    *,
    censored: np.ndarray | None = None,
    lod: float | None = None,
    coverage: float = 0.95,
    ci_level: float = 0.90,
    method: str = "auto",
    outliers: str | None = "tukey",
    log_scale: np.ndarray | None = None,
) -> ReferenceInterval:
    """EP28-A3c reference interval of ``values`` (the reporting scale).

    ``method``: ``nonparametric`` (order statistics), ``parametric`` (Gaussian after Box-Cox), ``robust``
    (Horn and Pesce, bootstrap CIs) or ``auto``: non-parametric for n >= 120; for 20 <= n < 120 parametric
    when the Box-Cox-transformed values pass Shapiro-Wilk (p >= 0.05), robust otherwise. Censored values
    (below LOD) rank below every value in the non-parametric method; the small-sample methods need
    uncensored values and raise ValueError otherwise. ``outliers``: ``tukey`` (fences on ``log_scale``,
    default log of values), ``dixon`` (D/R > 1/3 at either end, repeated) or None.
    """
    if method not in {"nonparametric", "parametric", "robust", "auto"}:
        msg = f"method {method!r} is not one of nonparametric, parametric, robust, auto"
        raise ValueError(msg)
    x = np.asarray(values, dtype=float)
    cens = np.zeros(x.size, dtype=bool) if censored is None else np.asarray(censored, dtype=bool)
    if log_scale is None:
        with np.errstate(divide="ignore", invalid="ignore"):
            log_scale = np.where(cens, -np.inf, np.log(x))
    if outliers == "tukey":
        excluded = tukey_outliers(np.asarray(log_scale, dtype=float), cens)
    elif outliers == "dixon":
        excluded = dixon_outliers(np.where(cens, -np.inf, x))
    else:
        excluded = np.zeros(x.size, dtype=bool)
    keep = ~excluded
    n_kept = int(keep.sum())
    small = method in {"parametric", "robust"} or (method == "auto" and n_kept < NONPARAMETRIC_MIN_N)
    if small:
        if cens[keep].any():
            msg = "parametric and robust limits need uncensored values; this group has values below the LOD"
            raise ValueError(msg)
        if n_kept < SMALL_MIN_N:
            msg = f"n = {n_kept} is below {SMALL_MIN_N}: no reference interval can be estimated"
            raise ValueError(msg)
        return _small_sample_interval(x[keep], coverage=coverage, ci_level=ci_level, method=method, excluded=excluded)
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


def harris_boyd(a: np.ndarray, b: np.ndarray) -> tuple[bool, float, float]:
    """Harris and Boyd (1990): partition when z = |m1 - m2| / sqrt(s1^2/n1 + s2^2/n2) exceeds
    z* = 3 * sqrt(n_mean / 120), or when the larger SD is more than 1.5 times the smaller. Returns
    (partition, z, z*). Use on a scale where the values are roughly Gaussian (here: log)."""
    n1, n2 = a.size, b.size
    if n1 < 2 or n2 < 2:
        return False, 0.0, float("inf")
    s1, s2 = a.std(ddof=1), b.std(ddof=1)
    z = abs(a.mean() - b.mean()) / np.sqrt(s1**2 / n1 + s2**2 / n2)
    z_star = 3 * np.sqrt(((n1 + n2) / 2) / 120)
    ratio = max(s1, s2) / max(min(s1, s2), 1e-12)
    return bool(z > z_star or ratio > 1.5), float(z), float(z_star)


def _group_arrays(group: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, float | None]:
    """Values (above-ULOQ as +inf), below-LOD mask, log values and the group LOD (highest limit)."""
    below = group["censoring"].is_in(["below_lod", "below_lloq"]).fill_null(False).to_numpy()
    above = (group["censoring"] == "above_uloq").fill_null(False).to_numpy()
    values = np.where(above, np.inf, group["value"].to_numpy().astype(float))
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
    return values, below, logv, lod


def build_reference(
    measurements: pl.DataFrame,
    *,
    min_n: int = 120,
    min_n_small: int = 40,
    coverage: float = 0.95,
    ci_level: float = 0.90,
    grid: np.ndarray = DEFAULT_GRID,
    k_privacy: int = 5,
    age_bands: list[float] | None = None,
    outliers: str = "tukey",
) -> ReferenceBuild:
    """Reference groups from healthy normalised measurements (one row per sample x analyte x platform).

    Needs the NORMALISED columns plus ``matrix`` (and ``sex``, ``age`` for partitions). For every analyte,
    platform, panel, matrix and unit the ``sex = all`` group is published when it has n >= ``min_n``
    (non-parametric) or n >= ``min_n_small`` without censored values (parametric or robust, chosen by
    ``reference_interval(method="auto")``). Sex groups and age bands (cut points ``age_bands``) are
    published too when Harris-Boyd says they differ and every part reaches the minimum n.
    """
    keys = ["analyte", "uniprot", "platform", "panel", "matrix", "unit"]
    intervals: list[dict[str, object]] = []
    quantiles: list[pl.DataFrame] = []
    outlier_rows: list[pl.DataFrame] = []
    skipped: list[dict[str, object]] = []

    def publish(group: pl.DataFrame, meta: dict[str, object]) -> bool:
        values, below, logv, lod = _group_arrays(group)
        n = group.height
        if n < min_n_small or (n < min_n and below.any()):
            why = (
                f"n = {n} < minimum {min_n_small}"
                if n < min_n_small
                else (f"n = {n} < {min_n} and values below the LOD (small-sample methods need uncensored values)")
            )
            skipped.append(meta | {"n": n, "why": why})
            return False
        ri = reference_interval(
            values,
            censored=below,
            lod=lod,
            coverage=coverage,
            ci_level=ci_level,
            log_scale=logv,
            outliers=outliers,
            method="nonparametric" if n >= min_n else "auto",
        )
        floor = min_n if ri.method == "nonparametric" else min_n_small
        if ri.n < floor:
            skipped.append(meta | {"n": ri.n, "why": f"n = {ri.n} after outlier exclusion < minimum {floor}"})
            return False
        intervals.append(meta | {k: v for k, v in ri.__dict__.items() if k != "excluded_index"})
        keep = np.ones(values.size, dtype=bool)
        keep[ri.excluded_index] = False
        q = quantile_grid(values[keep], censored=below[keep], lod=lod, grid=grid, k=k_privacy)
        quantiles.append(q.with_columns(pl.lit(v).alias(k) for k, v in meta.items()))
        if ri.excluded_index:
            outlier_rows.append(
                group[ri.excluded_index]
                .select("sample_id", "value")
                .with_columns(pl.lit(v).alias(k) for k, v in meta.items())
            )
        return True

    def measured_log(group: pl.DataFrame) -> np.ndarray:
        ok = group.filter(pl.col("censoring").is_null() & pl.col("log_value").is_finite())
        return ok["log_value"].to_numpy().astype(float)

    for key, group in measurements.sort("sample_id").group_by(keys, maintain_order=True):
        base = dict(zip(keys, key, strict=True))
        if not publish(group, base | {"sex": "all", "age_min": None, "age_max": None}):
            continue
        if "sex" in group.columns:
            women, men = group.filter(pl.col("sex") == "F"), group.filter(pl.col("sex") == "M")
            split, _, _ = harris_boyd(measured_log(women), measured_log(men))
            if split and min(women.height, men.height) >= min_n_small:
                publish(women, base | {"sex": "F", "age_min": None, "age_max": None})
                publish(men, base | {"sex": "M", "age_min": None, "age_max": None})
        if age_bands and "age" in group.columns:
            edges = [None, *sorted(age_bands), None]
            bands = []
            for lo, hi in pairwise(edges):
                cond = pl.lit(True)
                if lo is not None:
                    cond = cond & (pl.col("age") >= lo)
                if hi is not None:
                    cond = cond & (pl.col("age") < hi)
                bands.append((lo, hi, group.filter(cond)))
            differ = any(harris_boyd(measured_log(a[2]), measured_log(b[2]))[0] for a, b in pairwise(bands))
            if differ and min(part.height for _, _, part in bands) >= min_n_small:
                for lo, hi, part in bands:
                    publish(part, base | {"sex": "all", "age_min": lo, "age_max": hi})
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
        schema.conform(pl.concat(outlier_rows, how="diagonal_relaxed"), out_schema)
        if outlier_rows
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
