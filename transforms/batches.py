"""Batch and plate effects on the log scale: bridge samples, ComBat, and the checks that protect biology.

Pure numpy/polars. Frames are long: one row per sample x feature (analyte), with a batch column, a value
column on the log scale and covariate columns.

ComBat follows Johnson, Li and Rabinovic (2007), Biostatistics 8:118, as implemented in R sva::ComBat
3.46 (parametric and non-parametric empirical Bayes, mean-only, reference batch, protected covariates);
tests/transforms/test_batches.py checks it against sva's output to 1e-6 relative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl


class ConfoundedError(ValueError):
    """A correction would erase the difference the study measures; the message says which covariate."""


# ---------------------------------------------------------------------------------------------- design


def _covariate_matrix(samples: pl.DataFrame, covariates: list[str]) -> tuple[np.ndarray, list[str]]:
    """Columns for the protected covariates: numeric as is, text as treatment dummies (first level dropped)."""
    cols: list[np.ndarray] = []
    names: list[str] = []
    for c in covariates:
        s = samples[c]
        if s.dtype.is_numeric():
            cols.append(s.cast(pl.Float64).to_numpy())
            names.append(c)
        else:
            levels = sorted(s.cast(pl.String).unique().drop_nulls().to_list())
            for level in levels[1:]:
                cols.append((s.cast(pl.String) == level).cast(pl.Float64).to_numpy())
                names.append(f"{c}={level}")
    if not cols:
        return np.zeros((samples.height, 0)), []
    return np.column_stack(cols), names


@dataclass(frozen=True)
class Confounding:
    level: str  # none | partial | full
    detail: str


def check_confounding(samples: pl.DataFrame, *, batch: str, covariates: list[str]) -> Confounding:
    """Is batch confounded with a protected covariate?

    ``full``: the covariates are (a linear function of) the batch indicators, so no model can separate them;
    ``partial``: a covariate's mean differs between batches by more than 10 % of its range (text covariates:
    shares of each level), so the covariates must be protected; ``none`` otherwise.
    """
    if not covariates:
        return Confounding("none", "no protected covariates")
    b = samples[batch].cast(pl.String).to_numpy()
    levels = sorted(set(b))
    batch_design = np.column_stack([(b == lv).astype(float) for lv in levels])
    cov, names = _covariate_matrix(samples, covariates)
    for j, name in enumerate(names):
        x = cov[:, j]
        fitted = batch_design @ np.linalg.lstsq(batch_design, x, rcond=None)[0]
        if np.allclose(fitted, x) and np.ptp(x) > 0:
            return Confounding("full", f"{name} is fully determined by {batch}")
    details = []
    for j, name in enumerate(names):
        x = cov[:, j]
        means = [x[b == lv].mean() for lv in levels]
        spread = np.ptp(x) or 1.0
        if (max(means) - min(means)) / spread > 0.10:
            details.append(f"{name} mean ranges {min(means):.2f}-{max(means):.2f} across batches")
    return Confounding("partial", "; ".join(details)) if details else Confounding("none", "balanced")


# ---------------------------------------------------------------------------------------------- ComBat


def _aprior(d: np.ndarray) -> float:
    m, s2 = d.mean(), d.var(ddof=1)
    return float((2 * s2 + m**2) / s2)


def _bprior(d: np.ndarray) -> float:
    m, s2 = d.mean(), d.var(ddof=1)
    return float((m * s2 + m**3) / s2)


def _postmean(g_hat, g_bar, n, d_star, t2):
    return (t2 * n * g_hat + d_star * g_bar) / (t2 * n + d_star)


def _postvar(sum2, n, a, b):
    return (0.5 * sum2 + b) / (n / 2 + a - 1)


def _it_sol(sdat, g_hat, d_hat, g_bar, t2, a, b, conv=0.0001):
    n = np.sum(~np.isnan(sdat), axis=1)
    g_old, d_old = g_hat.copy(), d_hat.copy()
    change = 1.0
    while change > conv:
        g_new = _postmean(g_hat, g_bar, n, d_old, t2)
        sum2 = np.nansum((sdat - g_new[:, None]) ** 2, axis=1)
        d_new = _postvar(sum2, n, a, b)
        change = max(np.max(np.abs(g_new - g_old) / g_old), np.max(np.abs(d_new - d_old) / d_old))
        g_old, d_old = g_new, d_new
    return g_new, d_new


def _int_eprior(sdat, g_hat, d_hat):
    r = sdat.shape[0]
    g_star = np.empty(r)
    d_star = np.empty(r)
    for i in range(r):  # one pass per feature: the prior is every other feature's estimate
        g = np.delete(g_hat, i)
        d = np.delete(d_hat, i)
        x = sdat[i, ~np.isnan(sdat[i])]
        n = x.size
        sum2 = ((x[None, :] - g[:, None]) ** 2).sum(axis=1)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            lh = 1 / (2 * np.pi * d) ** (n / 2) * np.exp(-sum2 / (2 * d))
        lh = np.where(np.isnan(lh), 0.0, lh)
        g_star[i] = np.sum(g * lh) / np.sum(lh)
        d_star[i] = np.sum(d * lh) / np.sum(lh)
    return g_star, d_star


@dataclass(frozen=True)
class CombatFit:
    """What ComBat's standardisation learned from the training batches, per feature: enough to bring a new
    batch onto the same scale later (:func:`combat_new_batch`). ``beta`` is k x G, one row per covariate
    column, in the order of the covariate matrix."""

    grand_mean: np.ndarray
    var_pooled: np.ndarray
    beta: np.ndarray


def _eb_adjust(s_batch: np.ndarray, *, parametric: bool, mean_only: bool) -> tuple[np.ndarray, np.ndarray]:
    """The empirical Bayes location and scale (gamma*, delta*) of one batch from its standardised data
    (features x samples of the batch), with the batch's own priors across features, as sva::ComBat."""
    gamma_hat = s_batch.mean(axis=1)
    delta_hat = np.ones(s_batch.shape[0]) if mean_only else s_batch.var(axis=1, ddof=1)
    gamma_bar, t2 = gamma_hat.mean(), gamma_hat.var(ddof=1)
    if parametric:
        if mean_only:
            return _postmean(gamma_hat, gamma_bar, 1, 1, t2), np.ones_like(delta_hat)
        a, b = _aprior(delta_hat), _bprior(delta_hat)
        return _it_sol(s_batch, gamma_hat, delta_hat, gamma_bar, t2, a, b)
    gamma_star, delta_star = _int_eprior(s_batch, gamma_hat, delta_hat)
    return gamma_star, (np.ones_like(delta_star) if mean_only else delta_star)


def combat_matrix(
    dat: np.ndarray,
    batch: np.ndarray,
    covariates: np.ndarray | None = None,
    *,
    parametric: bool = True,
    mean_only: bool = False,
    reference_batch: object | None = None,
    fit: list[CombatFit] | None = None,
) -> np.ndarray:
    """ComBat on a features x samples matrix (log scale). ``covariates`` is samples x k, without intercept.
    ``fit``: a list that receives the standardisation learned (:class:`CombatFit`)."""
    dat = np.asarray(dat, dtype=float)
    batch = np.asarray(batch)
    levels = sorted(set(batch.tolist()), key=lambda v: (str(type(v)), v))
    n_batch = len(levels)
    idx = [np.flatnonzero(batch == lv) for lv in levels]
    n_batches = np.array([i.size for i in idx])
    n_array = batch.size
    batchmod = np.column_stack([(batch == lv).astype(float) for lv in levels])
    ref = None
    if reference_batch is not None:
        if reference_batch not in levels:
            msg = f"reference batch {reference_batch!r} is not among the batches {levels}"
            raise ValueError(msg)
        ref = levels.index(reference_batch)
        batchmod[:, ref] = 1.0
    cov = np.zeros((n_array, 0)) if covariates is None else np.asarray(covariates, dtype=float).reshape(n_array, -1)
    design = np.column_stack([batchmod, cov])
    if np.linalg.matrix_rank(design) < design.shape[1]:
        msg = "the protected covariates are confounded with batch: ComBat would erase them"
        raise ConfoundedError(msg)
    b_hat = np.linalg.solve(design.T @ design, design.T @ dat.T)  # p x G
    if ref is not None:
        grand_mean = b_hat[ref]
        ref_dat = dat[:, idx[ref]]
        resid = ref_dat - (design[idx[ref]] @ b_hat).T
        var_pooled = (resid**2).mean(axis=1)
    else:
        grand_mean = (n_batches / n_array) @ b_hat[:n_batch]
        var_pooled = ((dat - (design @ b_hat).T) ** 2).mean(axis=1)
    if fit is not None:
        fit.append(CombatFit(grand_mean=grand_mean, var_pooled=var_pooled, beta=b_hat[n_batch:]))
    stand_mean = np.outer(grand_mean, np.ones(n_array))
    if cov.shape[1]:
        tmp = design.copy()
        tmp[:, :n_batch] = 0
        stand_mean = stand_mean + (tmp @ b_hat).T
    sd = np.sqrt(var_pooled)[:, None]
    s_data = (dat - stand_mean) / sd
    bayes = s_data.copy()
    for j in range(n_batch):
        if j == ref:
            continue
        cols = idx[j]
        gamma_star, delta_star = _eb_adjust(s_data[:, cols], parametric=parametric, mean_only=mean_only)
        bayes[:, cols] = (bayes[:, cols] - gamma_star[:, None]) / np.sqrt(delta_star)[:, None]
    bayes = bayes * sd + stand_mean
    if ref is not None:
        bayes[:, idx[ref]] = dat[:, idx[ref]]
    return bayes


def combat_new_batch(
    dat: np.ndarray,
    covariates: np.ndarray | None,
    fit: CombatFit,
    *,
    parametric: bool = True,
    mean_only: bool = False,
) -> np.ndarray:
    """Frozen ComBat: one new batch (features x samples, at least two samples) brought onto the scale a
    training fit learned. The batch is standardised with the training's grand mean, pooled variance and
    covariate coefficients; its own location and scale are then estimated with empirical Bayes priors
    across its features, exactly as ComBat treats each of its batches. Applied to one of the training
    batches, it gives what :func:`combat_matrix` gave that batch."""
    dat = np.asarray(dat, dtype=float)
    n = dat.shape[1]
    if n < 2:
        msg = "frozen ComBat needs at least two samples of the new batch to estimate its scale"
        raise ValueError(msg)
    stand_mean = np.outer(fit.grand_mean, np.ones(n))
    if covariates is not None and fit.beta.shape[0]:
        stand_mean = stand_mean + (np.asarray(covariates, dtype=float).reshape(n, -1) @ fit.beta).T
    sd = np.sqrt(fit.var_pooled)[:, None]
    s_data = (dat - stand_mean) / sd
    gamma_star, delta_star = _eb_adjust(s_data, parametric=parametric, mean_only=mean_only)
    return ((s_data - gamma_star[:, None]) / np.sqrt(delta_star)[:, None]) * sd + stand_mean


def combat(
    frame: pl.DataFrame,
    *,
    batch: str,
    covariates: list[str] | None = None,
    parametric: bool = True,
    reference_batch: object | None = None,
    mean_only: bool = False,
    value: str = "log_value",
    feature: str = "analyte",
    sample: str = "sample_id",
    fit: list[pl.DataFrame] | None = None,
) -> pl.DataFrame:
    """ComBat on a long frame; returns it with a ``corrected`` column (same order of rows). ``fit``: a list
    that receives the standardisation learned, one row per feature and term (``grand_mean``,
    ``var_pooled``, and one coefficient per covariate column: ``age``, ``sex=M`` ...), for
    :func:`combat_new_batch_frame`.

    Features measured in every sample are corrected together; a feature with a missing or censored sample
    is left as it is (``corrected`` = ``value``), because ComBat cannot use partial rows. Raises
    ConfoundedError when a protected covariate is fully confounded with batch.
    """
    covariates = covariates or []
    samples = frame.select([sample, batch, *covariates]).unique(sample, keep="first").sort(sample)
    if samples[batch].n_unique() < 2:  # one batch: nothing to correct
        return frame.with_columns(pl.col(value).alias("corrected"))
    conf = check_confounding(samples, batch=batch, covariates=covariates)
    if conf.level == "full":
        msg = f"ComBat refused: {conf.detail}; correcting would erase the difference the study measures"
        raise ConfoundedError(msg)
    # features x samples matrix by integer codes (a wide polars frame with thousands of columns is slow)
    order = samples[sample].to_list()
    features = frame[feature].unique().sort()
    s_code = pl.DataFrame({sample: order, "__s": np.arange(len(order))})
    f_code = pl.DataFrame({feature: features, "__f": np.arange(features.len())})
    coded = frame.select(feature, sample, value).join(s_code, on=sample).join(f_code, on=feature)
    mat = np.full((features.len(), len(order)), np.nan)
    mat[coded["__f"].to_numpy(), coded["__s"].to_numpy()] = coded[value].cast(pl.Float64).to_numpy()
    complete = ~np.isnan(mat).any(axis=1)
    cov, names = _covariate_matrix(samples, covariates)
    out = mat.copy()
    if complete.sum() >= 2:
        fits: list[CombatFit] = []
        out[complete] = combat_matrix(
            mat[complete],
            samples[batch].to_numpy(),
            cov if covariates else None,
            parametric=parametric,
            mean_only=mean_only,
            reference_batch=reference_batch,
            fit=fits,
        )
        if fit is not None:
            learned = fits[0]
            terms = {"grand_mean": learned.grand_mean, "var_pooled": learned.var_pooled}
            terms |= {name: learned.beta[i] for i, name in enumerate(names)}
            kept = features.filter(pl.Series(complete))
            fit.append(
                pl.concat(
                    [pl.DataFrame({feature: kept, "term": name, "value": v}) for name, v in terms.items()],
                    how="vertical",
                )
            )
    corrected = coded.select(feature, sample).with_columns(
        pl.Series("corrected", out[coded["__f"].to_numpy(), coded["__s"].to_numpy()])
    )
    return frame.join(corrected, on=[feature, sample], how="left", maintain_order="left")


# ---------------------------------------------------------------------------------------------- bridges


def bridge_shifts(
    frame: pl.DataFrame,
    *,
    batch: str,
    reference_batch: object,
    value: str = "log_value",
    feature: str = "analyte",
    sample: str = "sample_id",
) -> pl.DataFrame:
    """Olink-style bridging: per feature and batch, the median over bridge samples (measured in both the batch
    and the reference batch) of (value in batch - value in reference batch). Returns feature, batch, shift,
    n_bridges; batches without shared samples are absent (they cannot be bridged)."""
    per = frame.group_by([feature, batch, sample]).agg(pl.col(value).mean())
    ref = per.filter(pl.col(batch) == reference_batch).select(feature, sample, pl.col(value).alias("__ref"))
    paired = per.filter(pl.col(batch) != reference_batch).join(ref, on=[feature, sample], how="inner")
    return paired.group_by([feature, batch]).agg(
        (pl.col(value) - pl.col("__ref")).median().alias("shift"), pl.col(sample).n_unique().alias("n_bridges")
    )


def bridge_normalise(
    frame: pl.DataFrame,
    *,
    batch: str,
    reference_batch: object,
    value: str = "log_value",
    feature: str = "analyte",
    sample: str = "sample_id",
    min_bridges: int = 3,
) -> pl.DataFrame:
    """Shift every batch onto the reference batch by its bridge-sample median difference (``corrected``).

    A batch with fewer than ``min_bridges`` shared samples for a feature is left as it is; ``bridged`` says
    which rows were shifted.
    """
    shifts = bridge_shifts(
        frame, batch=batch, reference_batch=reference_batch, value=value, feature=feature, sample=sample
    ).filter(pl.col("n_bridges") >= min_bridges)
    out = frame.join(shifts, on=[feature, batch], how="left")
    return out.with_columns(
        (pl.col(value) - pl.col("shift").fill_null(0.0)).alias("corrected"),
        pl.col("shift").is_not_null().alias("bridged"),
    ).drop("shift", "n_bridges")


def combat_new_batch_frame(
    frame: pl.DataFrame,
    fit: pl.DataFrame,
    *,
    covariates: list[str] | None = None,
    parametric: bool = True,
    value: str = "log_value",
    feature: str = "analyte",
    sample: str = "sample_id",
) -> pl.DataFrame:
    """Frozen ComBat on a long frame of one new batch (one row per feature and sample): ``fit`` as
    :func:`combat` gave it. Returns the frame with ``corrected``; a feature the fit does not know, or with
    a missing sample, keeps its value. The covariate columns named in ``fit`` are rebuilt from the samples'
    ``covariates`` (``sex=M`` is 1 for a sample whose sex is M)."""
    samples = frame.select([sample, *(covariates or [])]).unique(sample, keep="first").sort(sample)
    order = samples[sample].to_list()
    known = fit[feature].unique().sort()
    features = frame[feature].unique().filter(frame[feature].unique().is_in(known.implode())).sort()
    out = frame.with_columns(pl.col(value).alias("corrected"))
    if features.len() < 2 or len(order) < 2:
        return out
    s_code = pl.DataFrame({sample: order, "__s": np.arange(len(order))})
    f_code = pl.DataFrame({feature: features, "__f": np.arange(features.len())})
    coded = frame.select(feature, sample, value).join(s_code, on=sample).join(f_code, on=feature)
    mat = np.full((features.len(), len(order)), np.nan)
    mat[coded["__f"].to_numpy(), coded["__s"].to_numpy()] = coded[value].cast(pl.Float64).to_numpy()
    complete = ~np.isnan(mat).any(axis=1)
    if complete.sum() < 2:
        return out
    wide = fit.pivot(on="term", index=feature, values="value").join(f_code, on=feature).sort("__f")
    terms = [t for t in wide.columns if t not in (feature, "__f", "grand_mean", "var_pooled")]
    cols = []
    for term in terms:
        name, _, level = term.partition("=")
        col = samples[name]
        cols.append(
            (col.cast(pl.String) == level).cast(pl.Float64).to_numpy() if level else col.cast(pl.Float64).to_numpy()
        )
    cov = np.column_stack(cols) if cols else None
    learned = CombatFit(
        grand_mean=wide["grand_mean"].to_numpy()[complete],
        var_pooled=wide["var_pooled"].to_numpy()[complete],
        beta=np.vstack([wide[t].to_numpy()[complete] for t in terms]) if terms else np.zeros((0, int(complete.sum()))),
    )
    fixed = mat.copy()
    fixed[complete] = combat_new_batch(mat[complete], cov, learned, parametric=parametric)
    corrected = coded.select(feature, sample).with_columns(
        pl.Series("corrected", fixed[coded["__f"].to_numpy(), coded["__s"].to_numpy()])
    )
    return frame.join(corrected, on=[feature, sample], how="left", maintain_order="left")
