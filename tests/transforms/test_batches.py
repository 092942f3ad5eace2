from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import SHARED_GOLDEN
from transforms.batches import (
    ConfoundedError,
    bridge_normalise,
    check_confounding,
    combat,
    combat_matrix,
)

GOLDEN = SHARED_GOLDEN / "combat"
VARIANTS = {
    "combat_parametric": ({}, True),
    "combat_mean_only": ({"mean_only": True}, True),
    "combat_ref_batch1": ({"reference_batch": 1}, True),
    "combat_no_covariates": ({}, False),
    "combat_nonparametric": ({"parametric": False}, True),
}


def golden_input():
    m = pl.read_csv(GOLDEN / "input_matrix.csv")
    ph = pl.read_csv(GOLDEN / "input_pheno.csv")
    return m, ph


@pytest.mark.skipif(not GOLDEN.exists(), reason="../shared golden files not present")
@pytest.mark.parametrize("name", VARIANTS)
def test_combat_matches_r_sva(name: str) -> None:
    m, ph = golden_input()
    kwargs, with_cohort = VARIANTS[name]
    cov = (ph["cohort"] == "patient").cast(pl.Float64).to_numpy()[:, None] if with_cohort else None
    got = combat_matrix(m.drop("marker").to_numpy(), ph["batch"].to_numpy(), cov, **kwargs)
    expected = pl.read_csv(GOLDEN / f"{name}.csv").drop("marker").to_numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.skipif(not GOLDEN.exists(), reason="../shared golden files not present")
def test_long_frame_combat_equals_the_matrix_form_and_keeps_the_cohort_effect() -> None:
    m, ph = golden_input()
    long = m.unpivot(index="marker", variable_name="sample", value_name="log_value").join(
        ph.rename({"sample": "sample"}), on="sample"
    )
    out = combat(
        long.sample(fraction=1.0, shuffle=True, seed=1),
        batch="batch",
        covariates=["cohort"],
        feature="marker",
        sample="sample",
    )
    expected = pl.read_csv(GOLDEN / "combat_parametric.csv").unpivot(
        index="marker", variable_name="sample", value_name="sva"
    )
    both = out.join(expected, on=["marker", "sample"])
    np.testing.assert_allclose(both["corrected"].to_numpy(), both["sva"].to_numpy(), rtol=1e-6)
    effect = (
        both.filter(pl.col("marker").is_in(["m01", "m02", "m03", "m04", "m05"]))
        .group_by("cohort")
        .agg(pl.col("corrected").mean())
    )
    diff = dict(effect.rows())
    assert diff["patient"] - diff["healthy"] == pytest.approx(0.8, abs=0.25)  # planted +0.8 survives


def frame(batches: dict[str, list[float]], n_features: int = 3, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for b, offsets in batches.items():
        for k, off in enumerate(offsets):
            for f in range(n_features):
                rows.append(
                    {
                        "sample_id": f"{b}-{k}",
                        "batch": b,
                        "analyte": f"A{f}",
                        "log_value": float(f + off + rng.normal(0, 0.3)),
                        "cohort": "healthy" if k % 2 else "patient",
                    }
                )
    return pl.DataFrame(rows)


def test_single_batch_is_left_unchanged() -> None:
    f = frame({"b1": [0.0] * 8})
    out = combat(f, batch="batch", covariates=["cohort"])
    assert out["corrected"].to_list() == out["log_value"].to_list()


def test_fully_confounded_covariate_is_refused_and_partial_is_reported() -> None:
    f = frame({"b1": [0.0] * 6, "b2": [1.0] * 6}).with_columns(
        pl.when(pl.col("batch") == "b1").then(pl.lit("healthy")).otherwise(pl.lit("patient")).alias("cohort")
    )
    with pytest.raises(ConfoundedError, match="cohort=patient is fully determined by batch"):
        combat(f, batch="batch", covariates=["cohort"])
    samples = pl.DataFrame({"batch": ["b1"] * 4 + ["b2"] * 4, "cohort": ["p", "p", "p", "h", "p", "h", "h", "h"]})
    assert check_confounding(samples, batch="batch", covariates=["cohort"]).level == "partial"
    balanced = pl.DataFrame({"batch": ["b1"] * 4 + ["b2"] * 4, "cohort": ["p", "h"] * 4})
    assert check_confounding(balanced, batch="batch", covariates=["cohort"]).level == "none"


@settings(max_examples=25, deadline=None)
@given(st.permutations(list(range(36))), st.sampled_from([True, False]))
def test_combat_is_invariant_to_row_order_and_batch_labels(order: list[int], parametric: bool) -> None:
    f = frame({"b1": [0.0] * 4, "b2": [1.0] * 4, "b3": [-0.5] * 4})
    a = combat(f, batch="batch", parametric=parametric).sort("sample_id", "analyte")
    relabelled = f[order].with_columns(pl.col("batch").replace({"b1": "z9", "b2": "a0", "b3": "m5"}))
    b = combat(relabelled, batch="batch", parametric=parametric).sort("sample_id", "analyte")
    np.testing.assert_allclose(a["corrected"].to_numpy(), b["corrected"].to_numpy(), rtol=1e-9, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.floats(-5, 5), st.permutations(list(range(24))))
def test_bridging_removes_a_constant_added_to_one_batch_in_any_order(c: float, order: list[int]) -> None:
    base = frame({"b1": [0.0] * 4, "b2": [0.0] * 4}, n_features=3)
    # the same four people measured in both batches (bridge samples)
    base = base.with_columns(pl.col("sample_id").str.replace(r"^b\d-", "S"))
    shifted = base.with_columns(
        pl.when(pl.col("batch") == "b2").then(pl.col("log_value") + c).otherwise(pl.col("log_value")).alias("log_value")
    )
    a = bridge_normalise(base, batch="batch", reference_batch="b1").sort("batch", "sample_id", "analyte")
    b = bridge_normalise(shifted[order], batch="batch", reference_batch="b1").sort("batch", "sample_id", "analyte")
    np.testing.assert_allclose(a["corrected"].to_numpy(), b["corrected"].to_numpy(), atol=1e-9)
    assert b.filter(pl.col("batch") == "b2")["bridged"].all()


def test_bridging_needs_enough_shared_samples() -> None:
    f = pl.DataFrame(
        {
            "sample_id": ["S1", "S1", "S2"],
            "batch": ["b1", "b2", "b2"],
            "analyte": ["A"] * 3,
            "log_value": [1.0, 2.0, 3.0],
        }
    )
    out = bridge_normalise(f, batch="batch", reference_batch="b1", min_bridges=2)
    assert out["corrected"].to_list() == [1.0, 2.0, 3.0] and not out["bridged"].any()


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    sizes=st.lists(st.integers(3, 9), min_size=2, max_size=4),
    parametric=st.booleans(),
    mean_only=st.booleans(),
    with_cov=st.booleans(),
)
def test_frozen_combat_of_a_training_batch_reproduces_what_combat_gave_it(
    seed: int, sizes: list[int], parametric: bool, mean_only: bool, with_cov: bool
) -> None:
    """The frozen application (transforms.batches.combat_new_batch) standardises a batch with the training's
    fit and estimates only the batch's own location and scale: on a batch of the training itself it must
    give exactly what ComBat gave that batch (ComBat is checked against R sva above)."""
    from transforms.batches import combat_new_batch

    rng = np.random.default_rng(seed)
    batch = np.repeat(np.arange(len(sizes)), sizes)
    n_features = 12
    dat = rng.normal(0, 1, (n_features, batch.size)) + rng.normal(0, 1, (n_features, len(sizes)))[:, batch]
    cov = rng.normal(40, 10, (batch.size, 1)) if with_cov else None
    fit: list = []
    whole = combat_matrix(dat, batch, cov, parametric=parametric, mean_only=mean_only, fit=fit)
    for b in range(len(sizes)):
        cols = np.flatnonzero(batch == b)
        frozen = combat_new_batch(
            dat[:, cols], None if cov is None else cov[cols], fit[0], parametric=parametric, mean_only=mean_only
        )
        np.testing.assert_allclose(frozen, whole[:, cols], rtol=1e-10, atol=1e-10)


def test_frozen_combat_removes_the_location_and_scale_of_a_new_batch() -> None:
    from transforms.batches import combat_new_batch

    rng = np.random.default_rng(4)
    batch = np.repeat(np.arange(4), 25)
    truth = rng.normal(0, 1, (40, batch.size))
    dat = truth + rng.normal(0, 0.5, (40, 4))[:, batch]
    fit: list = []
    trained = combat_matrix(dat, batch, None, fit=fit)
    new_truth = rng.normal(0, 1, (40, 20))
    new = 1.8 * new_truth + 1.2  # a new run that reads high and spread out
    frozen = combat_new_batch(new, None, fit[0])
    assert abs(frozen.mean() - trained.mean()) < 0.15 and abs(frozen.std() / trained.std() - 1) < 0.15
    assert abs(new.mean() - trained.mean()) > 1.0


def test_frozen_combat_on_a_long_frame_rebuilds_the_covariates_by_name() -> None:
    from transforms.batches import combat_new_batch_frame

    rng = np.random.default_rng(9)
    rows = []
    for b in range(3):
        for k in range(8):
            sex, age, cohort = ("F", "M")[k % 2], float(rng.integers(20, 70)), ("healthy", "patient")[k % 3 == 0]
            for f in range(6):
                value = f + 0.4 * b + (0.5 if cohort == "patient" else 0) + 0.01 * age + rng.normal(0, 0.3)
                rows.append((f"a{f}", f"S{b}-{k}", f"P{b}", sex, age, cohort, value))
    long = pl.DataFrame(
        rows, schema=["analyte", "sample_id", "plate", "sex", "age", "cohort", "log_value"], orient="row"
    )
    fit: list[pl.DataFrame] = []
    trained = combat(long, batch="plate", covariates=["cohort", "sex", "age"], fit=fit)
    assert set(fit[0]["term"].to_list()) == {"grand_mean", "var_pooled", "cohort=patient", "sex=M", "age"}
    one = long.filter(pl.col("plate") == "P1").sample(fraction=1.0, shuffle=True, seed=2)
    frozen = combat_new_batch_frame(one, fit[0], covariates=["cohort", "sex", "age"])
    both = frozen.join(
        trained.select("analyte", "sample_id", pl.col("corrected").alias("whole")), on=["analyte", "sample_id"]
    )
    np.testing.assert_allclose(both["corrected"].to_numpy(), both["whole"].to_numpy(), rtol=1e-10, atol=1e-10)
