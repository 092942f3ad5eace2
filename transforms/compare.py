"""Patient cohorts against the healthy reference, at group level only. Pure numpy/scipy/polars.

Nothing here classifies a person: every output row describes a group (a cohort x reference group) with
effect sizes, confidence intervals, p-values and Benjamini-Hochberg q-values across markers.

Pinned choices (docs/statistics.md):
* all comparisons use the log scale (natural log for concentrations, NPX as is); values below the LOD rank
  below every measured value (a common threshold: the highest limit of the pair of groups);
* shares outside the reference interval with Wilson score intervals (95 %);
* Hodges-Lehmann shift (patients - healthy) with the Mann-Whitney-based 95 % CI (Bauer 1972), Cliff's
  delta, two-sided Mann-Whitney p-value;
* severity trend: ordinary least squares of the rank of the value on severity, age and sex among patients
  (rank-based regression, censoring-safe), t-test p-value; the slope of the log value per 100 severity
  points among measured values is reported beside it as an effect size;
* adjusted shift (when covariates are configured, e.g. Olink Explore HT sample handling): ordinary least
  squares of the rank of the value (patients and healthy pooled) on cohort plus the covariates (numbers as
  they are, text as indicator columns of its levels but the first), t-test p-value of the cohort term,
  over the people with every covariate present (``n_adjusted``).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import polars as pl
from scipy import special, stats

from transforms import schema

EARLY_YEARS = 3.0


def wilson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion k/n."""
    if n == 0:
        return float("nan"), float("nan")
    low, high = _wilson(k, n, level)
    return float(low), float(high)


def _wilson(k: Any, n: Any, level: float = 0.95) -> tuple[Any, Any]:
    """The Wilson interval's limits for counts ``k`` of ``n``, numbers or arrays alike (the same operations,
    so the same figures to the last bit)."""
    z = _z(level)
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return centre - half, centre + half


@functools.cache
def _z(level: float) -> float:
    """The two-sided normal quantile of ``level`` (scipy's ppf costs more than the rest of an interval)."""
    return float(stats.norm.ppf(1 - (1 - level) / 2))


def _starts(xs: np.ndarray, ys: np.ndarray, t: float) -> np.ndarray:
    """For each row i of the difference matrix xs[i] - ys[j] (sorted ``xs`` and ``ys``), the first j whose
    difference is at most t, exact in floating point: row i's differences fall as j rises (rounding is
    monotone), so the pairs at most t are a suffix of the row. Found by bisection on ``ys``, then corrected
    against the rounded differences."""
    start = np.searchsorted(ys, xs - t, side="left")
    n2 = ys.size
    while True:  # a rounded difference can sit on the other side of t than its estimate: step across
        back = (start > 0) & (xs - ys[np.maximum(start - 1, 0)] <= t)
        ahead = (start < n2) & (xs - ys[np.minimum(start, n2 - 1)] > t)
        if not (back.any() or ahead.any()):
            return start
        # move by whole blocks of tied ys (their differences are equal, so they are on the same side of t)
        before = np.searchsorted(ys, ys[np.maximum(start - 1, 0)], side="left")
        after = np.searchsorted(ys, ys[np.minimum(start, n2 - 1)], side="right")
        start = np.where(back, before, np.where(ahead, after, start))


# differences gathered at once when the bracket is this narrow: gathering and selecting cost more per
# difference than a counting pass (about 25 us for 1,000 x 4,000) saves, so the bracket is narrowed far
# (at 20,000 a comparison took 1.5 ms, at 2,000 0.6 ms; the counting passes were the same)
ENUMERATE = 2_000


def order_statistics(
    xs: np.ndarray,
    ys: np.ndarray,
    ranks: list[int],
    *,
    enumerate_at: int = ENUMERATE,
    probes: list[tuple[float, np.ndarray, int]] | None = None,
) -> list[float]:
    """The differences xs[i] - ys[j] of the given 0-based ranks (neighbouring ranks), exactly, without
    forming all of them: the value range is halved (counting the differences at most t in
    O(n log n)) until few differences lie in it, then those are gathered and selected. Each step tries the
    point where the counts at the bracket's ends, interpolated linearly, put the farther end just outside
    the wanted ranks (the counts follow the smooth distribution of the differences, so that lands close),
    and halves instead when that did not at least halve the bracket's count. Exact whatever the steps: the
    bracket only decides which differences are gathered. ``xs`` and ``ys`` sorted and finite. ``probes``: the
    counts of earlier calls on the same ``xs`` and ``ys`` (threshold, row starts, count), which start this
    search from the narrowest bracket they give; the new ones are added to it."""
    n2 = ys.size
    total = xs.size * n2
    first, last = min(ranks), max(ranks)
    lo = float(np.nextafter(xs[0] - ys[-1], -np.inf))  # below every difference: count 0
    hi = float(xs[-1] - ys[0])  # the largest difference: count total
    s_lo, s_hi = np.full(xs.size, n2), np.zeros(xs.size, dtype=np.int64)
    c_lo, c_hi = 0, total
    probes = [] if probes is None else probes
    for t, s_t, c_t in probes:  # what earlier searches counted narrows the start (same invariant)
        if c_t <= first and t > lo:
            lo, s_lo, c_lo = t, s_t, c_t
        elif c_t > last and t < hi:
            hi, s_hi, c_hi = t, s_t, c_t
    interpolate, steps = True, 0
    while c_hi - c_lo > enumerate_at:  # invariant: c_lo <= first and last < c_hi (the ranks lie in (lo, hi])
        width = c_hi - c_lo
        mid = lo + (hi - lo) / 2
        if interpolate:  # aim the farther end of the bracket to just outside the wanted ranks
            aim = first - enumerate_at / 4 if first - c_lo > c_hi - last else last + 1 + enumerate_at / 4
            guess = lo + (hi - lo) * (aim - c_lo) / width
            if lo < guess < hi:
                mid = guess
        if not lo < mid < hi:
            break  # neighbouring floats: nothing left to halve
        s_mid = _starts(xs, ys, mid)
        c_mid = total - int(s_mid.sum())
        probes.append((mid, s_mid, c_mid))
        if c_mid > last:
            hi, s_hi, c_hi = mid, s_mid, c_mid
        elif c_mid <= first:
            lo, s_lo, c_lo = mid, s_mid, c_mid
        else:
            break  # the ranks straddle mid: gather both sides
        steps += 1
        if steps > 6 and c_hi - c_lo > width // 2:  # slow to halve: one block of tied differences may hold them
            ends = s_hi < n2  # each row's largest difference at most hi is at its start column
            top = float(np.max(xs[ends] - ys[s_hi[ends]]))  # the largest difference at most hi: same count
            below = float(np.nextafter(top, -np.inf))
            if lo < below:
                s_below = _starts(xs, ys, below)
                c_below = total - int(s_below.sum())
                probes.append((below, s_below, c_below))
                if c_below <= first:  # ranks first..last all lie in (below, top]: each equals top
                    return [top] * len(ranks)
                if c_below > last:
                    hi, s_hi, c_hi = below, s_below, c_below
        interpolate = not interpolate or c_hi - c_lo <= width // 2  # a step that did not halve: halve next
    # the differences in (lo, hi]: row i, columns s_hi[i] <= j < s_lo[i]
    lengths = s_lo - s_hi
    rows = np.repeat(np.arange(xs.size), lengths)
    offsets = np.arange(rows.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    window = xs[rows] - ys[s_hi[rows] + offsets]
    local = [r - c_lo for r in ranks]
    picked = np.partition(window, sorted(set(local)))
    return [float(picked[r]) for r in local]


def hodges_lehmann(
    x: np.ndarray, y: np.ndarray, level: float = 0.95, *, presorted: bool = False
) -> tuple[float, float, float]:
    """Median of all pairwise differences x_i - y_j with its distribution-free CI (Mann-Whitney ranks).

    Exact for any group size: the order statistics are selected by :func:`order_statistics`, never by
    forming all m x n differences. ``presorted``: ``x`` and ``y`` are sorted already (the cohort comparisons
    sort every group's values once)."""
    n1, n2 = x.size, y.size
    xs, ys = (x, y) if presorted else (np.sort(x), np.sort(y))
    total = n1 * n2
    z = _z(level)
    k = int(np.floor(total / 2 - z * np.sqrt(total * (n1 + n2 + 1) / 12)))
    k = max(0, min(k, total // 2))
    probes: list[tuple[float, np.ndarray, int]] = []  # each search starts from what the others counted
    low, high = order_statistics(xs, ys, [(total - 1) // 2, total // 2], probes=probes)
    est = float((low + high) / 2)
    ci_low = order_statistics(xs, ys, [k], probes=probes)[0]
    return est, ci_low, order_statistics(xs, ys, [total - 1 - k], probes=probes)[0]


def shift_test(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Cliff's delta, P(X > Y) - P(X < Y) (ties count half), and the two-sided Mann-Whitney p-value, from one
    Mann-Whitney test.

    The test is scipy's ``mannwhitneyu`` (two-sided, continuity correction, normal approximation with the
    tie correction; scipy's exact distribution for groups of 8 or fewer without ties), computed here from
    one sort: the rank sum from binary searches, the tie counts from the sorted values. Every sum is of
    whole or half numbers, so it is exact, and the p-value is scipy's to the last bit (tested). The general
    call costs 2 to 3 ms per group in scipy's argument handling, across 9,000 groups of a large release."""
    n1, n2 = x.size, y.size
    if n1 == 0 or n2 == 0 or (n1 <= 8 or n2 <= 8) or np.isnan(x).any() or np.isnan(y).any():
        test = stats.mannwhitneyu(x, y, alternative="two-sided")  # small, empty or NaN: scipy's own rules
        return float(2 * test.statistic / (n1 * n2) - 1), float(test.pvalue)
    values = np.sort(np.concatenate([x, y]))
    left, right = np.searchsorted(values, x, side="left"), np.searchsorted(values, x, side="right")
    r1 = np.sum((left + right + 1) / 2)  # average ranks (1-based) of x, half-integers: an exact sum
    u1 = r1 - n1 * (n1 + 1) / 2
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])  # != keeps equal infinities together
    ties = np.diff(np.r_[starts, values.size]).astype(np.float64)
    delta, p = _mann_whitney(u1, n1, n2, np.sum(ties**3 - ties))
    return float(delta), float(p)


def _mann_whitney(u1: Any, n1: Any, n2: Any, tie_sum: Any) -> tuple[Any, Any]:
    """Cliff's delta and the two-sided p of the Mann-Whitney test (normal approximation with continuity and
    tie corrections, as scipy's ``mannwhitneyu``) from U of the first group and the sum of t^3 - t over the
    blocks of tied values; numbers or arrays alike (the same operations, so the same figures)."""
    n = n1 + n2
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.sqrt(n1 * n2 / 12 * ((n + 1) - tie_sum / (n * (n - 1))))
        z = (np.maximum(u1, n1 * n2 - u1) - n1 * n2 / 2 - 0.5) / s
        return 2 * u1 / (n1 * n2) - 1, np.clip(special.ndtr(-z) * 2, 0, 1)


def cliffs_delta(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) - P(X < Y), from the Mann-Whitney U statistic (ties count half)."""
    return shift_test(x, y)[0]


def _t_sf(t: float, dof: int) -> float:
    """Student's t upper tail, as ``stats.t.sf`` computes it (``special.stdtr(dof, -t)``) without its
    argument handling (0.1 ms a call, across 18,000 tests of a large release)."""
    return float(special.stdtr(dof, -t))


def average_ranks(y: np.ndarray) -> np.ndarray:
    """``stats.rankdata(y)`` (ties get their average rank, 1-based) from one sort and two binary searches:
    every rank is a whole or half number, so the figures are scipy's exactly (tested); with a NaN, scipy's
    own rule (all NaN). scipy's general call costs more than the ranking at a group's size."""
    if np.isnan(y).any():
        return np.asarray(stats.rankdata(y), dtype=np.float64)
    ordered = np.sort(y)
    return (np.searchsorted(ordered, y, side="left") + np.searchsorted(ordered, y, side="right") + 1) / 2


def rank_trend(y: np.ndarray, severity: np.ndarray, age: np.ndarray, male: np.ndarray) -> tuple[float, float]:
    """OLS of rank(y) on severity + age + sex; returns (t statistic, two-sided p) for severity. Not defined
    (NaN) when the values do not vary (e.g. all below the LOD) or the severity does not: the fit would give
    rounding noise."""
    ranks = average_ranks(y)
    if ranks.size and (np.all(ranks == ranks[0]) or np.all(severity == severity[0])):
        return float("nan"), float("nan")
    design = np.column_stack([np.ones(y.size), severity, age, male])
    beta, *_ = np.linalg.lstsq(design, ranks, rcond=None)
    resid = ranks - design @ beta
    dof = y.size - design.shape[1]
    if dof <= 0:
        return float("nan"), float("nan")
    sigma2 = resid @ resid / dof
    cov = sigma2 * np.linalg.pinv(design.T @ design)
    t = beta[1] / np.sqrt(cov[1, 1])
    return float(t), float(2 * _t_sf(abs(t), dof))


def adjusted_shift(y: np.ndarray, patient: np.ndarray, covariates: np.ndarray) -> tuple[float, float]:
    """OLS of rank(y) on an intercept, the patient indicator and ``covariates`` (a 2-D design block);
    returns (t statistic, two-sided p) of the patient term. Censored values rank at their end (-inf/inf)."""
    ranks = average_ranks(y)
    design = np.column_stack([np.ones(y.size), patient, covariates])
    dof = y.size - np.linalg.matrix_rank(design)
    if dof <= 0:
        return float("nan"), float("nan")
    beta, *_ = np.linalg.lstsq(design, ranks, rcond=None)
    resid = ranks - design @ beta
    cov = (resid @ resid / dof) * np.linalg.pinv(design.T @ design)
    t = beta[1] / np.sqrt(cov[1, 1])
    return float(t), float(2 * _t_sf(abs(t), dof))


def covariate_block(frame: pl.DataFrame, covariates: list[str]) -> np.ndarray:
    """The design columns of ``covariates``: a numeric column (or text that reads as numbers) as it is, other
    text as indicators of its levels but the first (sorted). Rows must have every covariate present."""
    blocks = []
    for c in covariates:
        values = frame.get_column(c)
        numeric = values.cast(pl.Float64, strict=False)
        if numeric.null_count() == 0:
            blocks.append(numeric.to_numpy()[:, None])
            continue
        text = values.cast(pl.String)
        for level in sorted(set(text.to_list()))[1:]:
            blocks.append((text == level).cast(pl.Float64).to_numpy()[:, None])
    return np.hstack(blocks) if blocks else np.empty((frame.height, 0))


BELOW = pl.col("censoring").is_in(["below_lod", "below_lloq"]).fill_null(False)
ABOVE = (pl.col("censoring") == "above_uloq").fill_null(False)
FLAGS = ("__below", "__above")  # BELOW and ABOVE as columns, made once per part by compare_cohorts


def _logs(frame: pl.DataFrame, floor: float) -> np.ndarray:
    """Log values with censored ones at -inf / inf (and those below ``floor``, the common LOD, at -inf), from
    the censoring flags ``__below`` / ``__above`` (the adjusted shift's pooled rows)."""
    below, above = (frame[f].to_numpy() for f in FLAGS)
    return _censored(frame["log_value"].to_numpy().astype(float), below, above, floor)


def _censored(v: np.ndarray, below: np.ndarray, above: np.ndarray, floor: float) -> np.ndarray:
    """``v`` with values below the LOD (flagged, or under ``floor``) at -inf and above the ULOQ at inf."""
    return np.where(above, np.inf, np.where(below | (v < floor), -np.inf, v))


def _split(
    frame: pl.DataFrame, keys: list[str], index: pl.DataFrame, covariates: list[str], *, patients: bool
) -> tuple[dict[str, np.ndarray], pl.DataFrame | None, np.ndarray]:
    """The rows of ``frame`` whose keys are a row of ``index`` (keys and ``__g``, its row number), ordered by
    ``__g`` and within it as they came (a stable sort): the columns the comparisons read as arrays (a null
    becomes NaN; ``limit_ok`` keeps which limits are present, as a limit may be NaN itself), the rows with
    the ``covariates`` and censoring flags as a frame when there are covariates, and each group's bounds:
    group g is rows bounds[g]:bounds[g + 1]. ``patients``: with the columns of the severity trend and the
    cohorts by duration.
    One join and one sort for every group (a null key matches nothing, as in a filter on equality); a group
    is then slices of arrays."""
    index = index.cast({k: frame.schema[k] for k in keys}, strict=False)
    read = ["log_value", "censoring", "limit_value", *covariates]
    read += ["illness_duration_years", "severity", "age", "sex"] if patients else []
    joined = (
        frame.select(*keys, *dict.fromkeys(c for c in read if c not in keys))
        .drop_nulls(keys)
        .join(index, on=keys, how="inner", maintain_order="left")
    )
    g = joined["__g"].to_numpy()
    order = np.argsort(g, kind="stable")
    in_order = not np.any(order[1:] < order[:-1])  # then no gather
    columns = joined.select(
        pl.col("log_value").cast(pl.Float64).alias("log"),
        BELOW.alias("below"),
        ABOVE.alias("above"),
        pl.col("limit_value").cast(pl.Float64).alias("limit"),
        pl.col("limit_value").is_not_null().alias("limit_ok"),
        *(
            [
                pl.col("illness_duration_years").cast(pl.Float64).alias("duration"),
                (pl.col("severity").is_not_null() & pl.col("age").is_not_null()).alias("has_severity"),
                (pl.col("sex") == "M").cast(pl.Float64).alias("male"),
                pl.col("severity"),
                pl.col("age"),
            ]
            if patients
            else []
        ),
    )
    arrays = {c: columns[c].to_numpy() for c in columns.columns}
    rows = None
    if covariates:
        rows = joined.select(*covariates, "log_value", BELOW.alias(FLAGS[0]), ABOVE.alias(FLAGS[1]))
    if not in_order:
        arrays = {c: a[order] for c, a in arrays.items()}
        rows = None if rows is None else rows[order]
    return arrays, rows, np.searchsorted(g if in_order else g[order], np.arange(index.height + 1))


COHORTS = ("patient", "patient_early", "patient_long")


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The row numbers starts[i]:ends[i] of every i, one after another."""
    lengths = ends - starts
    return np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(int(lengths.sum()))


def _count(ids: np.ndarray, size: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Per id 0..size-1 the number (or the sum of ``weights``) of its rows, summed in row order."""
    return np.bincount(ids, weights=weights, minlength=size)


def _varies(v: np.ndarray, unit: np.ndarray, size: int) -> np.ndarray:
    """Per segment (rows sorted by ``unit``, 0..size-1): whether ``v`` holds two or more values (exactly:
    a centred sum of squares can be rounding noise for a constant)."""
    if v.size == 0:
        return np.zeros(size, dtype=bool)
    first = np.r_[0, np.cumsum(_count(unit, size))[:-1]]
    return _count(unit, size, v != v[np.minimum(first, v.size - 1)][unit]) > 0


def _runs(values: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """Where a run of equal values starts in ``values`` sorted within each segment (``!=``: equal
    infinities stay together, each NaN is a run of its own, as in :func:`shift_test`); none in no values (a
    study whose manifests record no severity crashed the severity trends on the run before an empty one)."""
    if values.size == 0:
        return np.empty(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, (values[1:] != values[:-1]) | (segment[1:] != segment[:-1])])


def _rank_trends(
    y: np.ndarray, unit: np.ndarray, size: int, columns: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`rank_trend` of many segments at once: ``y`` sorted within each segment (``unit``, 0..size-1),
    ``columns`` the severity, age and sex of the same rows. Average ranks from the runs of equal values (the
    figures of :func:`average_ranks`), then the severity term of OLS of the rank on the three columns with an
    intercept, through the centred normal equations (Frisch-Waugh: the same slope and variance as the fit
    with the intercept; agrees with LAPACK's least squares to about 1e-12). Returns the t statistic, the
    two-sided p and whether the segment's fit is well posed (every column varies and is a number; the
    others are for :func:`rank_trend`)."""
    n = _count(unit, size)
    first = np.r_[0, np.cumsum(n)[:-1]].astype(np.int64)
    starts = _runs(y, unit)
    flags = np.zeros(y.size, dtype=bool)
    flags[starts] = True
    run = np.cumsum(flags) - 1
    ends = np.r_[starts[1:], y.size]
    ranks = (starts[run] - first[unit] + ends[run] - first[unit] + 1) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        centred = []
        ok = n > 4
        for v in [ranks, *columns]:
            mean = _count(unit, size, v) / n
            c = v - mean[unit]
            centred.append(c)
            if v is not ranks:
                ok &= _varies(v, unit, size) & ~np.isnan(mean)
        r, xs = centred[0], centred[1:]
        a = np.empty((size, 3, 3))
        b = np.empty((size, 3))
        for i in range(3):
            b[:, i] = _count(unit, size, xs[i] * r)
            for j in range(i, 3):
                a[:, i, j] = a[:, j, i] = _count(unit, size, xs[i] * xs[j])
        a[~ok] = np.eye(3)  # a segment that is not well posed: computed by rank_trend instead
        b[~ok] = 0.0
        inverse = np.linalg.pinv(a)
        beta = np.einsum("gij,gj->gi", inverse, b)
        resid = r - np.einsum("ri,ri->r", np.column_stack(xs), beta[unit])
        dof = n - 4
        sigma2 = _count(unit, size, resid * resid) / dof
        t = beta[:, 0] / np.sqrt(sigma2 * inverse[:, 0, 0])
        t[~_varies(ranks, unit, size)] = np.nan  # the ranks do not vary: no trend to test (rank_trend)
        p = 2 * special.stdtr(dof, -np.abs(t))
    return t, p, ok


def _slopes(x: np.ndarray, y: np.ndarray, unit: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The OLS slope of ``y`` on ``x`` per segment (``np.polyfit(x, y, 1)[0]``, from the centred sums; the
    same to about 1e-12), and whether it is defined (``x`` varies)."""
    n = _count(unit, size)
    with np.errstate(divide="ignore", invalid="ignore"):
        dx = x - (_count(unit, size, x) / n)[unit]
        dy = y - (_count(unit, size, y) / n)[unit]
        sxx = _count(unit, size, dx * dx)
        return _count(unit, size, dx * dy) / sxx, _varies(x, unit, size)


def compare_cohorts(
    patients: pl.DataFrame,
    healthy: pl.DataFrame,
    intervals: pl.DataFrame,
    *,
    early_years: float = EARLY_YEARS,
    q_values: bool = True,
    covariates: list[str] | None = None,
) -> pl.DataFrame:
    """One row per patient cohort (all, early, long-standing) x published ``sex = all`` reference group.

    ``patients`` and ``healthy`` are normalised measurements with matrix, sex, age, severity and
    illness_duration_years; ``intervals`` the reference intervals of the release. With ``q_values=False``
    the q-value columns stay empty: comparisons built in parts by analyte get them from
    :func:`finish_comparison` once all parts are together (q-values are across markers). ``covariates``:
    columns of both frames to adjust the shift for (``p_shift_adjusted``); none: the column stays empty.

    Every comparison of the part is computed at once, as array operations over the rows of all groups
    (counts, shares, percentiles, the Mann-Whitney test, the rank trends): the figures are those of
    :func:`wilson`, :func:`shift_test`, :func:`rank_trend` and ``np.polyfit`` per comparison (tested); the
    first three still compute the few comparisons the arrays leave to them (8 or fewer people, NaN values,
    a severity, age or sex that does not vary). A severity that does not vary has no trend and no slope.
    A group's values are sorted once; the Hodges-Lehmann shift is selected per comparison.
    """
    covariates = list(covariates or [])
    keys = ["analyte", "uniprot", "platform", "panel", "matrix", "unit"]
    groups = intervals.filter((pl.col("sex") == "all") & pl.col("age_min").is_null() & pl.col("age_max").is_null())
    index = groups.select(keys).unique(maintain_order=True).with_row_index("__g")
    number = {tuple(r[:-1]): r[-1] for r in index.select(*keys, "__g").iter_rows()}
    # one join and one sort split the rows of every group; a group is then slices of arrays made once
    h_arr, h_rows, h_at = _split(healthy, keys, index, covariates, patients=False)
    p_arr, p_rows, p_at = _split(patients, keys, index, covariates, patients=True)
    # a unit: a row of `groups` with healthy and patient rows (a null key matches no row)
    picked = [
        (r, at)
        for r, key in enumerate(groups.select(keys).iter_rows())
        if (at := number.get(key)) is not None and h_at[at + 1] > h_at[at] and p_at[at + 1] > p_at[at]
    ]
    if not picked:
        return pl.DataFrame(schema=COMPARISON_SCHEMA)
    row_of, group_of = (np.array(v, dtype=np.int64) for v in zip(*picked, strict=True))
    size = row_of.size
    h_n, p_n = h_at[group_of + 1] - h_at[group_of], p_at[group_of + 1] - p_at[group_of]
    h_take, p_take = _ranges(h_at[group_of], h_at[group_of + 1]), _ranges(p_at[group_of], p_at[group_of + 1])
    if h_take.size != h_arr["log"].size or np.any(h_take != np.arange(h_take.size)):
        h_arr = {c: a[h_take] for c, a in h_arr.items()}
    if p_take.size != p_arr["log"].size or np.any(p_take != np.arange(p_take.size)):
        p_arr = {c: a[p_take] for c, a in p_arr.items()}
    h_bound, p_bound = np.r_[0, np.cumsum(h_n)], np.r_[0, np.cumsum(p_n)]
    h_unit, p_unit = np.repeat(np.arange(size), h_n), np.repeat(np.arange(size), p_n)
    picked_rows = groups[row_of]
    is_log = (picked_rows["unit"] == "NPX").to_numpy()
    lower_limit, upper_limit = picked_rows["lower_limit"].to_list(), picked_rows["upper_limit"].to_list()
    lower_censored = picked_rows["lower_limit_censored"].to_list()

    # per unit: the common LOD, the limits on the log scale, the healthy values sorted, the patients' order
    # and where each patient value falls among the healthy values of its group
    lo_log, hi_log, floor = np.full(size, np.nan), np.full(size, np.nan), np.full(size, -np.inf)
    h_values, p_values = np.empty(h_take.size), np.empty(p_take.size)
    h_sorted, p_order = np.empty(h_take.size), np.empty(p_take.size, dtype=np.int64)
    left, right = np.empty(p_take.size, dtype=np.int64), np.empty(p_take.size, dtype=np.int64)
    for u in range(size):
        hs, ps = slice(h_bound[u], h_bound[u + 1]), slice(p_bound[u], p_bound[u + 1])
        limits = np.concatenate([h_arr["limit"][hs][h_arr["limit_ok"][hs]], p_arr["limit"][ps][p_arr["limit_ok"][ps]]])
        if limits.size:
            floor[u] = float(limits.max()) if is_log[u] else float(np.log(limits.max()))
        lower = lower_limit[u] if not lower_censored[u] else None
        if lower is not None:
            lo_log[u] = lower if is_log[u] else np.log(lower)
        if upper_limit[u] is not None:
            hi_log[u] = upper_limit[u] if is_log[u] else np.log(upper_limit[u])
        h_values[hs] = _censored(h_arr["log"][hs], h_arr["below"][hs], h_arr["above"][hs], floor[u])
        p_values[ps] = pv = _censored(p_arr["log"][ps], p_arr["below"][ps], p_arr["above"][ps], floor[u])
        h_sorted[hs] = ordered = np.sort(h_values[hs])
        p_order[ps] = np.argsort(pv) + ps.start
        left[ps], right[ps] = np.searchsorted(ordered, pv, side="left"), np.searchsorted(ordered, pv, side="right")
    h_nan = _count(h_unit, size, np.isnan(h_values)) > 0
    # healthy ties: sum of t^3 - t over the runs of equal values of each group (exact in integers)
    runs = _runs(h_sorted, h_unit)
    t = np.diff(np.r_[runs, h_sorted.size])
    h_ties = _count(h_unit[runs], size, (t**3 - t).astype(np.float64))
    h_finite_from = h_bound[:-1] + _count(h_unit, size, h_values == -np.inf).astype(np.int64)
    h_finite_n = _count(h_unit, size, np.isfinite(h_values)).astype(np.int64)

    duration = p_arr["duration"]  # a null duration is in no subgroup, as in a filter: NaN compares false
    masks = [np.ones(p_take.size, dtype=bool), duration < early_years, duration >= early_years]
    below, above = p_values < lo_log[p_unit], p_values > hi_log[p_unit]
    has_lower = ~np.isnan(lo_log)
    pct = (left + right) / (2 * h_n[p_unit])
    half_ranks = (left + right) / 2  # per patient value: healthy values below it, ties counting half
    equal_h = right - left
    columns: dict[str, list[np.ndarray]] = {}  # per figure: its values of each cohort's comparisons
    out_unit, out_cohort, slow_shift, slow_trend = [], [], [], []

    def put(name: str, values: np.ndarray, valid: np.ndarray | None = None) -> None:
        columns.setdefault(name, []).append(values if valid is None else np.where(valid, values, np.nan))
        columns.setdefault(f"{name}__valid", []).append(np.ones(values.size, bool) if valid is None else valid)

    # units without a cohort (n = 0) divide by zero below: they are not kept
    with np.errstate(divide="ignore", invalid="ignore"):
        for k, mask in enumerate(masks):
            n = _count(p_unit[mask], size).astype(np.int64)
            keep = n >= 3
            if not keep.any():
                continue
            out_unit.append(np.flatnonzero(keep))
            out_cohort.append(np.full(int(keep.sum()), k))
            put("n", n[keep])
            put("n_reference", h_n[keep])
            rows = p_order[mask[p_order]]  # the cohort's rows, by unit and by value within it
            unit, values = p_unit[rows], p_values[rows]
            first = np.r_[0, np.cumsum(n)[:-1]]
            k_below, k_above = _count(p_unit[mask & below], size), _count(p_unit[mask & above], size)
            share_ci = _wilson(k_below, n)
            put("share_below", (k_below / n)[keep], has_lower[keep])
            put("share_below_ci_low", share_ci[0][keep], has_lower[keep])
            put("share_below_ci_high", share_ci[1][keep], has_lower[keep])
            share_ci = _wilson(k_above, n)
            put("share_above", (k_above / n)[keep])
            put("share_above_ci_low", share_ci[0][keep])
            put("share_above_ci_high", share_ci[1][keep])
            last = rows.size - 1  # (a unit without the cohort points anywhere: it is not kept)
            middle = pct[rows[np.minimum(first + (n - 1) // 2, last)]], pct[rows[np.minimum(first + n // 2, last)]]
            put("median_percentile", ((middle[0] + middle[1]) / 2 * 100)[keep])  # np.median's figures
            # Mann-Whitney: U from the healthy values below each patient value; ties over the pooled runs
            u1 = _count(p_unit[mask], size, half_ranks[mask])
            starts = _runs(values, unit)
            a = np.diff(np.r_[starts, values.size])
            b = equal_h[rows[starts]]
            ties = h_ties + _count(unit[starts], size, (a + b) ** 3 - (a + b) - (b**3 - b))
            delta, p_shift = _mann_whitney(u1, n, h_n, ties)
            put("p_shift", p_shift[keep])
            put("cliffs_delta", delta[keep])
            p_nan = _count(p_unit[mask], size, np.isnan(p_values[mask])) > 0
            slow_shift.append(((n <= 8) | (h_n <= 8) | p_nan | h_nan)[keep])
            # Hodges-Lehmann: the finite values, sorted, are one slice of each (cohort values are sorted too)
            x_from = first + _count(unit, size, values == -np.inf).astype(np.int64)
            x_n = _count(unit, size, np.isfinite(values)).astype(np.int64)
            shift = np.full((size, 3), np.nan)
            for j in np.flatnonzero(keep & (x_n > 0) & (h_finite_n > 0)):
                shift[j] = hodges_lehmann(
                    values[x_from[j] : x_from[j] + x_n[j]],
                    h_sorted[h_finite_from[j] : h_finite_from[j] + h_finite_n[j]],
                    presorted=True,
                )
            put("hl_shift_log", shift[keep, 0])
            put("hl_shift_ci_low", shift[keep, 1])
            put("hl_shift_ci_high", shift[keep, 2])
            # severity trend among the cohort's patients with severity and age
            sev = mask & p_arr["has_severity"]
            n_sev = _count(p_unit[sev], size)
            s_rows = p_order[sev[p_order]]
            s_unit = p_unit[s_rows]
            design = [
                p_arr["severity"][s_rows].astype(float),
                p_arr["age"][s_rows].astype(float),
                p_arr["male"][s_rows],
            ]
            _, p_sev, posed = _rank_trends(p_values[s_rows], s_unit, size, design)
            trend = keep & (n_sev >= 10)
            y_nan = _count(s_unit, size, np.isnan(p_values[s_rows])) > 0
            slow_trend.append((trend & (~posed | y_nan))[keep])
            put("p_severity", p_sev[keep], trend[keep])
            ok = np.isfinite(p_values[s_rows])
            slope, defined = _slopes(design[0][ok], p_values[s_rows][ok], s_unit[ok], size)
            has_slope = trend & (_count(s_unit[ok], size) > 2) & defined  # no slope on a severity that is one value
            put("severity_slope_log_per_100", (slope * 100)[keep], has_slope[keep])
    if not out_unit:
        return pl.DataFrame(schema=COMPARISON_SCHEMA)
    units, cohorts = np.concatenate(out_unit), np.concatenate(out_cohort)
    order = np.lexsort((cohorts, units))  # by unit, then cohort: the order of the groups and of COHORTS
    units, cohorts = units[order], cohorts[order]
    figures = {name: np.concatenate(parts)[order] for name, parts in columns.items()}
    slow = [np.concatenate(flags)[order] for flags in (slow_shift, slow_trend)]
    adjusted, n_adjusted = np.full(units.size, np.nan), np.zeros(units.size, dtype=np.int64)
    # what the arrays leave to the per-comparison functions, with the rows in the order they came
    for i in np.flatnonzero(slow[0] | slow[1] | bool(covariates)):
        u = units[i]
        hs, ps = slice(h_bound[u], h_bound[u + 1]), slice(p_bound[u], p_bound[u + 1])
        mask = masks[cohorts[i]][ps]
        if slow[0][i]:
            figures["cliffs_delta"][i], figures["p_shift"][i] = shift_test(p_values[ps][mask], h_values[hs])
        if slow[1][i]:
            sev = mask & p_arr["has_severity"][ps]
            y, sev_x = p_values[ps][sev], p_arr["severity"][ps][sev]
            figures["p_severity"][i] = rank_trend(y, sev_x, p_arr["age"][ps][sev], p_arr["male"][ps][sev])[1]
        if covariates and p_rows is not None and h_rows is not None:
            g = group_of[u]
            p = p_rows.slice(p_at[g], p_n[u]).filter(pl.Series(mask))
            h = h_rows.slice(h_at[g], h_n[u])
            present = pl.all_horizontal(pl.col(c).is_not_null() for c in covariates)
            both = pl.concat(
                [
                    p.filter(present).select(*covariates, "log_value", *FLAGS, pl.lit(1.0).alias("__p")),
                    h.filter(present).select(*covariates, "log_value", *FLAGS, pl.lit(0.0).alias("__p")),
                ],
                how="vertical_relaxed",
            )
            if both.height > len(covariates) + 3 and both["__p"].n_unique() == 2:
                adjusted[i] = adjusted_shift(
                    _logs(both, floor[u]), both["__p"].to_numpy(), covariate_block(both, covariates)
                )[1]
                n_adjusted[i] = both.height
    figures["p_severity__valid"] &= ~np.isnan(figures["p_severity"])  # not defined: no figure
    out = groups.select(keys)[row_of[units]].with_columns(
        sex=pl.lit("all"),
        age_min=pl.lit(None, pl.Float64),
        age_max=pl.lit(None, pl.Float64),
        cohort=pl.Series([COHORTS[c] for c in cohorts]),
        adjusted_for=pl.lit(", ".join(covariates) or None, pl.String),
        p_shift_adjusted=pl.Series(adjusted).scatter(np.flatnonzero(n_adjusted == 0), None),
        n_adjusted=pl.Series(n_adjusted).scatter(np.flatnonzero(n_adjusted == 0), None),
        q_shift=pl.lit(None, pl.Float64),
        q_severity=pl.lit(None, pl.Float64),
        **{
            name: pl.Series(values).scatter(np.flatnonzero(~figures[f"{name}__valid"]), None)
            for name, values in figures.items()
            if not name.endswith("__valid")
        },
    )
    out = out.select([pl.col(c).cast(t) for c, t in COMPARISON_SCHEMA.items()])
    return finish_comparison(out) if q_values else out


def finish_comparison(frame: pl.DataFrame) -> pl.DataFrame:
    """Benjamini-Hochberg q-values of the shift and severity p-values, across markers (see add_q_values)."""
    if frame.height == 0:
        return frame
    out = add_q_values(frame, "p_shift", "q_shift")
    out = add_q_values(out, "p_severity", "q_severity")
    return out.select([pl.col(c).cast(t) for c, t in COMPARISON_SCHEMA.items()])


def add_q_values(frame: pl.DataFrame, p: str, q: str) -> pl.DataFrame:
    """Benjamini-Hochberg q-values of ``p`` across markers, within each cohort and platform."""
    parts = []
    for _, part in frame.group_by(["cohort", "platform"], maintain_order=True):
        pv = part[p].cast(pl.Float64).to_numpy()
        qv = np.full(pv.size, np.nan)
        ok = ~np.isnan(pv)
        if ok.any():
            qv[ok] = stats.false_discovery_control(pv[ok], method="bh")
        parts.append(part.with_columns(pl.Series(q, qv).fill_nan(None)))
    return pl.concat(parts)


COMPARISON_SCHEMA: dict[str, pl.DataType] = {
    **{k: schema.REFERENCE_INTERVAL[k] for k in schema.GROUP_KEYS},
    "cohort": pl.String(),
    "n": pl.Int64(),
    "n_reference": pl.Int64(),
    "share_below": pl.Float64(),
    "share_below_ci_low": pl.Float64(),
    "share_below_ci_high": pl.Float64(),
    "share_above": pl.Float64(),
    "share_above_ci_low": pl.Float64(),
    "share_above_ci_high": pl.Float64(),
    "median_percentile": pl.Float64(),
    "hl_shift_log": pl.Float64(),
    "hl_shift_ci_low": pl.Float64(),
    "hl_shift_ci_high": pl.Float64(),
    "cliffs_delta": pl.Float64(),
    "p_shift": pl.Float64(),
    "q_shift": pl.Float64(),
    "severity_slope_log_per_100": pl.Float64(),
    "p_severity": pl.Float64(),
    "q_severity": pl.Float64(),
    "p_shift_adjusted": pl.Float64(),  # the shift adjusted for the configured covariates (comparison_covariates)
    "n_adjusted": pl.Int64(),  # patients and healthy people with every covariate present
    "adjusted_for": pl.String(),
}
