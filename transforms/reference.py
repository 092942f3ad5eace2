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


def _ci_ranks_many(n: np.ndarray, p: float, ci_level: float = 0.90) -> tuple[np.ndarray, np.ndarray]:
    """:func:`ci_ranks` for many sample sizes at once, 0 where a rank does not exist.

    The binomial tails are evaluated with the same calls as :func:`ci_ranks`, but only in a window around
    the quantile (``binom.ppf`` / ``binom.isf``); a size whose answer is not inside its window is computed
    by :func:`ci_ranks` itself, so the result is always the same.
    """
    n = np.asarray(n, dtype=np.int64)
    lo_rank, hi_rank = np.zeros(n.size, dtype=np.int64), np.zeros(n.size, dtype=np.int64)
    if n.size == 0:
        return lo_rank, hi_rank
    tail = (1.0 - ci_level) / 2.0
    sizes, back = np.unique(n, return_inverse=True)
    offsets = np.arange(-3, 4)
    with np.errstate(invalid="ignore"):
        # lower rank r: the largest with P(B <= r - 1) <= tail, i.e. r - 1 = the largest k with cdf(k) <= tail
        k = np.nan_to_num(stats.binom.ppf(tail, sizes, p))[:, None].astype(np.int64) + offsets
        k_ok = (k >= 0) & (k <= sizes[:, None])
        fits = k_ok & (stats.binom.cdf(k, sizes[:, None], p) <= tail)
        lo = np.where(fits.any(axis=1), np.max(np.where(fits, k, -1), axis=1) + 1, 0)
        # upper rank r: the smallest r <= n with P(B >= r) <= tail
        r = np.nan_to_num(stats.binom.isf(tail, sizes, p))[:, None].astype(np.int64) + offsets
        r_ok = (r >= 1) & (r <= sizes[:, None])
        fits_hi = r_ok & (stats.binom.sf(r - 1, sizes[:, None], p) <= tail)
        hi = np.where(fits_hi.any(axis=1), np.min(np.where(fits_hi, r, np.iinfo(np.int64).max), axis=1), 0)
    # the answer must sit strictly inside the window: a qualifying top (lower rank) or a qualifying bottom
    # (upper rank) could continue outside it, and an empty window says nothing
    unsure = (
        fits[:, -1] | (~fits.any(axis=1) & (k[:, 0] > 0)) | fits_hi[:, 0] | (~fits_hi.any(axis=1) & (r[:, -1] < sizes))
    )
    for i in np.flatnonzero(unsure & (sizes > 0)):
        a, b = ci_ranks(int(sizes[i]), p, ci_level)
        lo[i], hi[i] = a or 0, b or 0
    lo[sizes == 0] = 0
    hi[sizes == 0] = 0
    return lo[back].astype(np.int64), hi[back].astype(np.int64)


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
    # the upper limit or the median lies below the LOD too (a marker mostly below it): reported as the LOD, a bound
    upper_limit_censored: bool = False
    median_censored: bool = False
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


class NoInterval(ValueError):
    """The values of a group cannot give a reference interval (too few, censored for a small-sample method,
    one value repeated): the group is listed among those skipped, with this reason."""


def choose_transform(x: np.ndarray) -> tuple[str, float | None]:
    """Box-Cox lambda by maximum likelihood for positive values (0 = log); ('identity', None) otherwise."""
    if x.size and np.ptp(x) == 0:
        msg = (
            f"every value is {x[0]:g}: a small-sample method needs values that vary (a constant is a fill value or "
            "a reporting floor, or what the outlier rule left; check the export)"
        )
        raise NoInterval(msg)
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
    uncensored values and raise NoInterval (a ValueError) otherwise. ``outliers``: ``tukey`` (fences on ``log_scale``,
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
            raise NoInterval(msg)
        if n_kept < SMALL_MIN_N:
            msg = f"n = {n_kept} is below {SMALL_MIN_N}: no reference interval can be estimated"
            raise NoInterval(msg)
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
    upper, upper_cens = _value(high, lod)
    median, median_cens = _value(med, lod)
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
        upper_limit_censored=upper_cens,
        median_censored=median_cens,
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
    stats_ = [np.array([float(v)]) for v in (a.size, a.mean() if a.size else 0.0, a.std(ddof=1) if a.size > 1 else 0.0)]
    stats_ += [
        np.array([float(v)]) for v in (b.size, b.mean() if b.size else 0.0, b.std(ddof=1) if b.size > 1 else 0.0)
    ]
    split, z, z_star = _harris_boyd_many(*stats_)
    return bool(split[0]), float(z[0]), float(z_star[0])


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


KEYS = schema.MARKER_KEYS


def _type6_many(s: np.ndarray, start: np.ndarray, n: np.ndarray, p: np.ndarray | np.floating) -> np.ndarray:
    """:func:`quantile_type6` for many groups at once: group g holds ``s[start[g] : start[g] + n[g]]``
    (sorted); ``p`` broadcasts against ``start``. Groups with n = 0 give NaN."""
    if s.size == 0:
        return np.full(np.broadcast(start, p).shape, np.nan)
    n_safe = np.maximum(n, 1)
    h = p * (n_safe + 1)
    j = np.clip(np.floor(h).astype(np.int64), 1, n_safe)
    g = np.where((h >= 1) & (h < n_safe), h - np.floor(h), 0.0)
    last = s.size - 1  # empty groups index anywhere valid; their result is NaN
    lo = s[np.minimum(start + j - 1, last)]
    hi = s[np.minimum(start + np.minimum(j, n_safe - 1), last)]
    with np.errstate(invalid="ignore"):
        out = np.where(g > 0, lo + g * (hi - lo), lo)
    touched = np.isinf(lo) | ((g > 0) & np.isinf(hi))
    out = np.where(touched, np.where((lo < 0) | (hi < 0), -np.inf, np.inf), out)
    return np.where(n > 0, out, np.nan)


def _limit_values(q: np.ndarray, lod: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised :func:`_value`: -inf -> the LOD (censored), +inf -> NaN (censored)."""
    return np.where(np.isneginf(q), lod, np.where(np.isposinf(q), np.nan, q)), np.isinf(q)


def _order_stats(s: np.ndarray, start: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """1-based order statistics per group; NaN where the rank does not exist (0) or the value is censored."""
    ok = ranks > 0
    if s.size == 0:
        return np.full(ranks.shape, np.nan)
    v = s[np.minimum(start + np.where(ok, ranks, 1) - 1, s.size - 1)]
    return np.where(ok & np.isfinite(v), v, np.nan)


@dataclass
class _Instances:
    """Rows of many reference groups, sorted by (group, value): the input of :func:`_nonparametric_many`."""

    gid: np.ndarray  # int64, ascending
    value: np.ndarray  # as measured, above-ULOQ +inf, below-LOD -inf (before the common LOD)
    log: np.ndarray  # log scale, same infinities
    below: np.ndarray  # below the LOD or LLOQ as reported
    limit: np.ndarray | None  # limit_value of a below-LOD row, else NaN; None: no row has one
    lod: np.ndarray | None  # reported LOD of the row (NaN if none); None: no row has one


def _nonparametric_many(
    inst: _Instances,
    n_groups: int,
    *,
    min_n: int,
    coverage: float,
    ci_level: float,
    grid: np.ndarray,
    k_privacy: int,
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    """Non-parametric limits, Tukey exclusion and the quantile grid for every group at once.

    Exactly what ``reference_interval(method="nonparametric", outliers="tukey")`` and :func:`quantile_grid`
    give for each group (tests/transforms/test_reference.py checks it group by group), without a Python loop
    over groups: one sort by (group, value) serves the quartiles, the limits, the CIs and the grid.
    Returns per-group columns, the mask of excluded rows (in ``inst`` order) and the grid rows.
    """
    gid = inst.gid
    counts = np.bincount(gid, minlength=n_groups)
    # the group's LOD: the highest limit of its censored values, else the highest reported LOD
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    filled = counts > 0

    def group_max(v: np.ndarray) -> np.ndarray:
        """Per-group maximum, NaN ignored (-inf for none)."""
        out = np.full(n_groups, -np.inf)
        if v.size:
            out[filled] = np.fmax.reduceat(v, start[filled])
        return np.where(np.isnan(out), -np.inf, out)

    no_limit = np.full(n_groups, -np.inf)
    lod_from_cens = no_limit if inst.limit is None else group_max(np.where(inst.below, inst.limit, -np.inf))
    lod_reported = no_limit if inst.lod is None else group_max(inst.lod)
    lod = np.where(np.isfinite(lod_from_cens), lod_from_cens, np.where(np.isfinite(lod_reported), lod_reported, np.nan))
    if np.isnan(lod).all():  # no limits at all: values and logs already carry the censoring
        cens, x, logv = inst.below, inst.value, inst.log
    else:
        with np.errstate(invalid="ignore"):
            common = ~np.isposinf(inst.value) & (inst.value < lod[gid])
        cens = inst.below | common
        x = np.where(cens, -np.inf, inst.value)
        logv = np.where(cens, -np.inf, inst.log)

    q1 = _type6_many(logv, start, counts, np.float64(0.25))
    q3 = _type6_many(logv, start, counts, np.float64(0.75))
    fenced = np.isfinite(q1) & np.isfinite(q3)
    with np.errstate(invalid="ignore"):
        iqr = q3 - q1
        low_f, high_f = q1 - 1.5 * iqr, q3 + 1.5 * iqr
        excluded = fenced[gid] & ~cens & ((logv < low_f[gid]) | (logv > high_f[gid]))

    def group_count(mask: np.ndarray) -> np.ndarray:
        out = np.zeros(n_groups, dtype=np.int64)
        if mask.size:
            out[filled] = np.add.reduceat(mask, start[filled], dtype=np.int64)
        return out

    x2 = x[~excluded] if excluded.any() else x
    n2 = counts - group_count(excluded)
    start2 = np.cumsum(n2) - n2
    p_low, p_high = (1 - coverage) / 2, 1 - (1 - coverage) / 2
    low = _type6_many(x2, start2, n2, np.float64(p_low))
    med = _type6_many(x2, start2, n2, np.float64(0.5))
    high = _type6_many(x2, start2, n2, np.float64(p_high))
    r = np.stack([*_ci_ranks_many(n2, p_low, ci_level), *_ci_ranks_many(n2, p_high, ci_level)], axis=1)
    lower, lower_cens = _limit_values(low, lod)
    upper, upper_cens = _limit_values(high, lod)
    median, median_cens = _limit_values(med, lod)
    out = {
        "n": n2,
        "n_below_lod": group_count(cens),  # censored values are never excluded
        "n_outliers_excluded": counts - n2,
        "lower_limit": lower,
        "upper_limit": upper,
        "lower_ci_low": _order_stats(x2, start2, r[:, 0]),
        "lower_ci_high": _order_stats(x2, start2, r[:, 1]),
        "upper_ci_low": _order_stats(x2, start2, r[:, 2]),
        "upper_ci_high": _order_stats(x2, start2, r[:, 3]),
        "median": median,
        "lod": lod,
        "lower_limit_censored": lower_cens,
        "upper_limit_censored": upper_cens,
        "median_censored": median_cens,
        "published": n2 >= min_n,
    }
    # quantile grid: p kept where at least k order statistics lie on each side of rank p(n + 1)
    h = grid[None, :] * (n2[:, None] + 1)
    ok = (np.floor(h) >= k_privacy) & (n2[:, None] - np.ceil(h) + 1 >= k_privacy) & out["published"][:, None]
    g_idx, p_idx = np.nonzero(ok)
    q = _type6_many(x2, start2[g_idx], n2[g_idx], grid[p_idx])
    grid_rows = {
        "gid": g_idx,
        "p": grid[p_idx].astype(float),
        "value": np.where(np.isneginf(q), lod[g_idx], q),
        "censored": np.isinf(q),
    }
    return out, excluded, grid_rows


def _harris_boyd_many(
    n1: np.ndarray, m1: np.ndarray, s1: np.ndarray, n2: np.ndarray, m2: np.ndarray, s2: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`harris_boyd` from counts, means and SDs (ddof = 1), for many pairs at once."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(m1 - m2) / np.sqrt(s1**2 / n1 + s2**2 / n2)
        z_star = 3 * np.sqrt(((n1 + n2) / 2) / 120)
        ratio = np.maximum(s1, s2) / np.maximum(np.minimum(s1, s2), 1e-12)
    enough = (n1 >= 2) & (n2 >= 2)
    split = enough & ((z > z_star) | (ratio > 1.5))
    return split, np.where(enough, z, 0.0), np.where(enough, z_star, np.inf)


@dataclass
class _Moments:
    """Measured log values of the sorted layout, shifted by their group's mean, for one-pass counts, means
    and SDs by any split of the groups: the shift keeps the sums of squares from cancelling."""

    centre: np.ndarray  # per group
    weight: np.ndarray  # 1.0 where measured, else 0.0
    shifted: np.ndarray  # log - centre where measured, else 0.0
    squared: np.ndarray  # shifted ** 2

    @classmethod
    def of(cls, start: np.ndarray, log: np.ndarray, measured: np.ndarray) -> _Moments:
        """``start``: first position of each group (every group has rows)."""
        weight = measured.astype(float)
        sizes = np.diff(np.append(start, log.size))
        centre = np.zeros(start.size)
        if log.size:
            with np.errstate(divide="ignore", invalid="ignore"):  # groups are contiguous: sums by reduceat
                count = np.add.reduceat(weight, start)
                centre = np.where(count > 0, np.add.reduceat(np.where(measured, log, 0.0), start) / count, 0.0)
        with np.errstate(invalid="ignore"):
            shifted = np.where(measured, log - np.repeat(centre, sizes), 0.0)
        return cls(centre, weight, shifted, shifted * shifted)

    def stats(self, ids: np.ndarray, per_group: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Count, mean and SD (ddof = 1) of measured values per id = group * per_group + part."""
        size = self.centre.size * per_group
        n = np.bincount(ids, weights=self.weight, minlength=size)
        s1 = np.bincount(ids, weights=self.shifted, minlength=size)
        s2 = np.bincount(ids, weights=self.squared, minlength=size)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.repeat(self.centre, per_group) + s1 / n
            sd = np.sqrt(np.maximum(s2 - s1 * s1 / n, 0.0) / (n - 1))
        return n, mean, sd


# flag bits of a row in the sorted layout (bits 0-1: sex code F 0, M 1, other 2; bits 2-7: age band)
_BAND_MASK = 63
_MAX_CUTS = 62  # age band codes 0 .. cuts + 1 fit in 6 bits
_CENSORING_SET = 256  # the row carries a censoring flag (so its value is not a plain measurement)
_UNUSABLE = 512  # a measured value without a usable number or log


@dataclass
class _Layout:
    """Every input row in (group, value) order: the one sort the vectorised build shares."""

    keys: pl.DataFrame  # one row per group: KEYS and _base (the group's number), in KEYS order
    start: np.ndarray  # first position of each group
    gid: np.ndarray  # group at each position, ascending
    row: np.ndarray  # input row at each position
    value: np.ndarray  # above-ULOQ +inf, below-LOD -inf
    log: np.ndarray  # same infinities
    flags: np.ndarray  # int32 bits as above
    limit: np.ndarray | None  # limit_value of a below-LOD row, else NaN; None when no row has one
    lod: np.ndarray | None  # reported LOD (NaN if none); None when no row has one


def _sorted_layout(frame: pl.DataFrame, *, has_sex: bool, cuts: list[float]) -> _Layout:
    """Group the rows by KEYS and sort each group by value, in one parallel group-by.

    Grouping on a 64-bit hash of the keys is many times faster than on six text columns; a second,
    differently seeded hash must agree within every group, else (a collision, never seen) the text keys are
    used. The per-row columns are prepared in one polars pass and gathered once into the sorted order.
    """
    nan, inf = float("nan"), float("inf")
    censoring = pl.col("censoring")
    below = censoring.is_in(["below_lod", "below_lloq"]).fill_null(False)
    above = (censoring == "above_uloq").fill_null(False)
    raw_value = pl.col("value").cast(pl.Float64).fill_null(nan)
    raw_log = pl.col("log_value").cast(pl.Float64).fill_null(nan)

    def censored(x: pl.Expr) -> pl.Expr:
        return pl.when(above).then(inf).when(below).then(-inf).otherwise(x)

    sex = pl.col("sex").cast(pl.String) if has_sex else pl.lit(None, pl.String)
    sex_code = pl.when(sex == "F").then(0).when(sex == "M").then(1).otherwise(2)
    band: pl.Expr = pl.lit(0)
    if cuts:
        age = pl.col("age").cast(pl.Float64)
        below_age = pl.sum_horizontal([(age >= c).cast(pl.Int32) for c in cuts])  # = searchsorted(side="right")
        band = pl.when(age.is_null() | age.is_nan()).then(len(cuts) + 1).otherwise(below_age)
    unusable = ~below & ~above & ~(raw_value.is_finite() & raw_log.is_finite())
    flags = (
        sex_code
        + band * 4
        + censoring.is_not_null().cast(pl.Int32) * _CENSORING_SET
        + unusable.cast(pl.Int32) * _UNUSABLE
    ).cast(pl.Int32)
    # only the key columns that vary are hashed: a part of the pipeline usually varies in analyte alone,
    # and hashing one column is ten times faster than hashing six
    constant = frame.select(pl.col(k).eq_missing(pl.col(k).first()).all() for k in KEYS).row(0) if len(frame) else ()
    varying = [k for k, same in zip(KEYS, constant, strict=False) if not same] or KEYS[:1]

    def key_hash(seed: int) -> pl.Expr:
        return pl.col(varying[0]).hash(seed=seed) if len(varying) == 1 else pl.struct(varying).hash(seed=seed)

    has_limit = bool(frame["limit_value"].is_not_null().any())
    has_lod = bool(frame["lod"].is_not_null().any())
    prep = frame.select(
        _h=key_hash(0),
        _h2=key_hash(7),
        _v=censored(raw_value),
        _l=censored(raw_log),
        _f=flags,
        **({"_lim": pl.when(below).then(pl.col("limit_value").cast(pl.Float64)).otherwise(nan)} if has_limit else {}),
        **({"_lod": pl.col("lod").cast(pl.Float64).fill_null(nan)} if has_lod else {}),
    ).hstack([pl.Series("_row", np.arange(frame.height, dtype=np.int64))])  # (an int_range in the select is slow)
    by_hash = (
        prep.select("_h", "_h2", "_row", "_v")
        .group_by("_h")
        .agg(
            pl.col("_row").sort_by("_v"),
            pl.col("_row").first().alias("_first"),
            (pl.col("_h2").min() != pl.col("_h2").max()).alias("_clash"),
        )
    )
    if by_hash["_clash"].any():
        by_group = (
            frame.select(KEYS)
            .hstack(prep.select("_row", "_v"))
            .group_by(KEYS)
            .agg(pl.col("_row").sort_by("_v"))
            .sort(KEYS, nulls_last=False)
        )
    else:
        firsts = by_hash["_first"].to_numpy()
        by_group = pl.concat([frame[firsts].select(KEYS), by_hash.select("_row")], how="horizontal").sort(
            KEYS, nulls_last=False
        )
    keys = by_group.select(KEYS).with_row_index("_base").with_columns(pl.col("_base").cast(pl.Int64))
    sizes = by_group["_row"].list.len().to_numpy().astype(np.int64)
    row = by_group["_row"].explode().to_numpy() if keys.height else np.array([], dtype=np.int64)

    # one parallel gather puts every per-row column in the sorted order
    ordered = prep.select(pl.exclude("_h", "_h2", "_row"))[row]
    return _Layout(
        keys=keys,
        start=np.cumsum(sizes) - sizes,
        gid=np.repeat(np.arange(keys.height, dtype=np.int64), sizes),
        row=row,
        value=ordered["_v"].to_numpy(),
        log=ordered["_l"].to_numpy(),
        flags=ordered["_f"].to_numpy(),
        limit=ordered["_lim"].to_numpy() if has_limit else None,
        lod=ordered["_lod"].to_numpy() if has_lod else None,
    )


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

    Groups of n >= ``min_n`` with Tukey's rule are built together, vectorised across groups
    (:func:`_nonparametric_many`); smaller groups, Dixon's rule and groups with unusable values go through
    :func:`reference_interval` one by one. Both give the same numbers (tested).
    """
    grid = np.asarray(grid, dtype=float)
    has_sex, has_age = "sex" in measurements.columns, "age" in measurements.columns
    cuts = sorted(age_bands) if age_bands and has_age else []
    if len(cuts) > _MAX_CUTS:
        msg = f"at most {_MAX_CUTS} age band cut points are supported, got {len(cuts)}"
        raise ValueError(msg)
    frame = measurements.select(
        *KEYS,
        "sample_id",
        "value",
        "log_value",
        "censoring",
        "limit_value",
        "lod",
        *(["sex"] if has_sex else []),
        *(["age"] if has_age else []),
    )
    layout = _sorted_layout(frame, has_sex=has_sex, cuts=cuts)
    base_keys, n_base = layout.keys, layout.keys.height
    order, gid, flags = layout.row, layout.gid, layout.flags
    value, log = layout.value, layout.log
    irregular = np.zeros(n_base, dtype=bool)
    if n_base:
        irregular = np.logical_or.reduceat((flags & _UNUSABLE) != 0, layout.start)

    intervals: list[pl.DataFrame] = []
    quantiles: list[pl.DataFrame] = []
    outlier_rows: list[pl.DataFrame] = []
    skipped: list[dict[str, object]] = []

    def publish_one(group: pl.DataFrame, meta: dict[str, object]) -> bool:
        """One group through reference_interval (small groups, Dixon's rule, unusable values)."""
        values, cens, logv, group_lod = _group_arrays(group)
        n = group.height
        if n < min_n_small or (n < min_n and cens.any()):
            why = (
                f"n = {n} < minimum {min_n_small}"
                if n < min_n_small
                else (f"n = {n} < {min_n} and values below the LOD (small-sample methods need uncensored values)")
            )
            skipped.append(meta | {"n": n, "why": why})
            return False
        try:
            ri = reference_interval(
                values,
                censored=cens,
                lod=group_lod,
                coverage=coverage,
                ci_level=ci_level,
                log_scale=logv,
                outliers=outliers,
                method="nonparametric" if n >= min_n else "auto",
            )
        except NoInterval as exc:  # what the data cannot give (a constant small group): listed, never fatal
            skipped.append(meta | {"n": n, "why": f"n = {n}: {exc}"})
            return False
        floor = min_n if ri.method == "nonparametric" else min_n_small
        if ri.n < floor:
            skipped.append(meta | {"n": ri.n, "why": f"n = {ri.n} after outlier exclusion < minimum {floor}"})
            return False
        intervals.append(
            pl.DataFrame(
                [meta | {k: v for k, v in ri.__dict__.items() if k != "excluded_index"}], infer_schema_length=None
            )
        )
        keep = np.ones(values.size, dtype=bool)
        keep[ri.excluded_index] = False
        q = quantile_grid(values[keep], censored=cens[keep], lod=group_lod, grid=grid, k=k_privacy)
        quantiles.append(q.with_columns(pl.lit(v).alias(k) for k, v in meta.items()))
        if ri.excluded_index:
            outlier_rows.append(
                group[ri.excluded_index]
                .select("sample_id", "value")
                .with_columns(pl.lit(v).alias(k) for k, v in meta.items())
            )
        return True

    def publish(pos: np.ndarray | None, part_gid: np.ndarray, meta: pl.DataFrame) -> np.ndarray:
        """Build the groups ``part_gid`` (0 .. meta.height - 1, ascending) made of the sorted-layout rows
        ``pos`` (None: all of them, in order); True where a group was published."""
        n_groups = meta.height
        height = np.bincount(part_gid, minlength=n_groups)
        vector = (height >= min_n) & (outliers == "tukey") & ~irregular[meta["_base"].to_numpy()]
        take = vector[part_gid]
        if take.all():
            p, g = pos, part_gid
        else:
            p = np.flatnonzero(take) if pos is None else pos[take]
            g = part_gid[take]

        def at(a: np.ndarray | None) -> np.ndarray | None:
            return a if a is None or p is None else a[p]

        logs = at(log)
        assert logs is not None
        # log_value must rise with value (it is its log); a group where it does not goes one by one
        bad = (g[1:] == g[:-1]) & (logs[1:] < logs[:-1])
        if bad.any():
            vector[np.unique(g[1:][bad])] = False
            ok = vector[g]
            p = np.flatnonzero(ok) if p is None else p[ok]
            g = g[ok]
            logs = at(log)
            assert logs is not None
        published = np.zeros(n_groups, dtype=bool)
        if vector.any():
            values = at(value)
            assert values is not None
            inst = _Instances(g, values, logs, np.isneginf(values), at(layout.limit), at(layout.lod))
            cols, excluded, grid_rows = _nonparametric_many(
                inst,
                n_groups,
                min_n=min_n,
                coverage=coverage,
                ci_level=ci_level,
                grid=grid,
                k_privacy=k_privacy,
            )
            published = vector & cols["published"]
            groups = meta.with_columns(
                *(pl.Series(name, values) for name, values in cols.items() if name != "published"),
                method=pl.lit("nonparametric"),
                coverage=pl.lit(coverage),
                ci_level=pl.lit(ci_level),
            ).with_columns(pl.col(pl.Float64).fill_nan(None))
            intervals.append(groups.filter(pl.Series(published)))
            too_few = groups.filter(pl.Series(vector & ~published))
            skipped.extend(
                row | {"why": f"n = {row['n']} after outlier exclusion < minimum {min_n}"}
                for row in too_few.select(*meta.columns, "n").to_dicts()
            )
            grid_frame = pl.DataFrame(grid_rows).with_columns(pl.col("value").fill_nan(None))
            quantiles.append(grid_frame.join(meta.with_row_index("gid"), on="gid").drop("gid"))
            out = np.flatnonzero(excluded & published[g])
            if out.size:
                out_rows = order[out if p is None else p[out]]
                outlier_rows.append(frame.select("sample_id", "value")[out_rows].hstack(meta[g[out]].drop("_base")))
        loop = np.flatnonzero(~vector & (height > 0))
        if loop.size:
            member = np.flatnonzero(np.isin(part_gid, loop))
            sub = frame[order[member if pos is None else pos[member]]].with_columns(_gid=pl.Series(part_gid[member]))
            metas = meta.to_dicts()
            for (gi,), group in sub.group_by(["_gid"], maintain_order=True):
                m = {k: v for k, v in metas[int(gi)].items() if k != "_base"}
                published[int(gi)] = publish_one(group.sort("sample_id"), m)
        return published

    everyone = base_keys.with_columns(
        sex=pl.lit("all"), age_min=pl.lit(None, pl.Float64), age_max=pl.lit(None, pl.Float64)
    )
    base_ok = publish(None, gid, everyone)

    # partitions (Harris and Boyd on the measured log values) of the published groups; the sorted layout
    # keeps every part of a group in value order, so a part is a selection of its group's rows
    moments = _Moments.of(layout.start, log, ((flags & _CENSORING_SET) == 0) & np.isfinite(log))
    part_pos: list[np.ndarray] = []
    part_gid: list[np.ndarray] = []
    meta_parts: list[pl.DataFrame] = []

    def partition(code: np.ndarray, labels: pl.DataFrame) -> None:
        """Split the published groups into ``labels.height`` parts (``code``: each row's part, or
        labels.height for none) where neighbouring parts differ by Harris-Boyd and every part reaches
        ``min_n_small``; queue the parts for building."""
        n_parts = labels.height
        size = n_base * (n_parts + 1)
        ids = gid * (n_parts + 1) + code
        n_rows = np.bincount(ids, minlength=size).reshape(n_base, n_parts + 1)[:, :n_parts]
        cnt, mean, sd = (a.reshape(n_base, n_parts + 1)[:, :n_parts] for a in moments.stats(ids, n_parts + 1))
        differ = np.zeros(n_base, dtype=bool)
        for i in range(n_parts - 1):
            differ |= _harris_boyd_many(cnt[:, i], mean[:, i], sd[:, i], cnt[:, i + 1], mean[:, i + 1], sd[:, i + 1])[0]
        chosen = np.flatnonzero(base_ok & differ & (n_rows.min(axis=1) >= min_n_small))
        if not chosen.size:
            return
        slot = np.full(n_base, -1)
        slot[chosen] = np.arange(chosen.size)
        in_chosen = slot[gid] >= 0
        offset = sum(m.height for m in meta_parts)
        for j in range(n_parts):  # part j of chosen group s is group offset + j * len(chosen) + s: ascending
            pos = np.flatnonzero(in_chosen & (code == j))
            part_pos.append(pos)
            part_gid.append(offset + j * chosen.size + slot[gid[pos]])
            meta_parts.append(pl.concat([base_keys[chosen], pl.concat([labels[j]] * chosen.size)], how="horizontal"))

    no_age = pl.lit(None, pl.Float64)
    if has_sex:
        partition(flags & 3, pl.DataFrame({"sex": ["F", "M"]}).with_columns(age_min=no_age, age_max=no_age))
    if cuts:
        edges = [None, *cuts, None]
        bands = pl.DataFrame(
            {"sex": ["all"] * (len(cuts) + 1), "age_min": edges[:-1], "age_max": edges[1:]},
            schema={"sex": pl.String, "age_min": pl.Float64, "age_max": pl.Float64},
        )
        partition((flags >> 2) & _BAND_MASK, bands)
    if part_pos:
        publish(np.concatenate(part_pos), np.concatenate(part_gid), pl.concat(meta_parts))

    interval_frame = (
        schema.conform(pl.concat(intervals, how="diagonal_relaxed"), schema.REFERENCE_INTERVAL)
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
    return _ordered(ReferenceBuild(interval_frame, quantile_frame, outlier_frame, skipped_frame))


GROUP_ORDER = ["analyte", "platform", "panel", "matrix", "unit", "sex", "age_min", "age_max"]


def _ordered(build: ReferenceBuild) -> ReferenceBuild:
    return ReferenceBuild(
        build.intervals.sort(GROUP_ORDER, nulls_last=False),
        build.quantiles.sort([*GROUP_ORDER, "p"], nulls_last=False),
        build.outliers.sort([*GROUP_ORDER, "sample_id"], nulls_last=False),
        build.skipped.sort(GROUP_ORDER, nulls_last=False),
    )


def combine_builds(parts: list[ReferenceBuild]) -> ReferenceBuild:
    """One build from builds of disjoint analytes, in the same order as a single build of all of them."""
    if not parts:
        msg = "combine_builds needs at least one build"
        raise ValueError(msg)
    return _ordered(
        ReferenceBuild(
            *(pl.concat([getattr(p, f) for p in parts]) for f in ("intervals", "quantiles", "outliers", "skipped"))
        )
    )
