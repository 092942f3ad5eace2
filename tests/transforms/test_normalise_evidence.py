"""Evidence on the demo data, where the generator knows the truth: corrections remove plate and batch effects
and keep the planted biology."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from tests.demo_files import read_demo
from transforms.demo import MSD_ASSAYS, OLINK_ASSAYS, SEVERITY_SLOPE_SD, generate_demo
from transforms.normalise import combine_replicates, correct_batches, dictionary_lookup, prepare_measurements
from warehouse.lookups import read_analyte_dictionary

#: between-person SD on the log scale of each (platform, marker) in the generator
PERSON_SD = {("olink", a[1]): a[5] for a in OLINK_ASSAYS} | {("msd", a[1]): float(np.log(a[3])) for a in MSD_ASSAYS}
METHODS = [{}, {"olink": "bridge"}, {"msd": "combat", "olink": "combat"}]


def prepared(plate_effects: bool) -> pl.DataFrame:
    demo = generate_demo(seed=31, n_healthy=200, n_patients=600, plate_effects=plate_effects)
    raw, samples = read_demo(demo)
    frame, held = prepare_measurements(raw, samples, dictionary_lookup(read_analyte_dictionary()[0]))
    assert held.height == 0
    frame = frame.with_columns(pl.lit("none").alias("batch_method"))
    return frame.join(samples.select("sample_id", "severity"), on="sample_id", how="left")


@pytest.fixture(scope="module")
def demo_frames() -> tuple[pl.DataFrame, pl.DataFrame]:
    return prepared(True), prepared(False)


def between_plate_variance(frame: pl.DataFrame, who: pl.Expr, unit: str = "plate_id") -> float:
    """Variance of the systematic plate (or batch) effect that the chosen samples see, summed over analytes.

    Each sample's mean on a plate minus its own mean over plates, averaged over the samples on that plate,
    is the plate effect they see; measurement noise averages out.
    """
    keys = ["platform", "analyte", "sample_id"]
    means = frame.filter(who & frame["censoring"].is_null()).group_by([*keys, unit]).agg(pl.col("log_value").mean())
    dev = means.with_columns((pl.col("log_value") - pl.col("log_value").mean().over(keys)).alias("dev"))
    effect = dev.group_by(["platform", "analyte", unit]).agg(pl.col("dev").mean())
    var = effect.group_by(["platform", "analyte"]).agg(pl.col("dev").var()).drop_nulls()
    return float(var["dev"].sum())


@pytest.mark.parametrize("methods", METHODS, ids=["plate_control", "bridge", "combat"])
def test_correction_removes_most_between_plate_variance_of_controls_and_bridges(demo_frames, methods) -> None:
    raw, _ = demo_frames
    corrected = correct_batches(raw, methods)
    controls = pl.col("sample_type") == "control"
    before, after = between_plate_variance(raw, controls), between_plate_variance(corrected, controls)
    assert after <= 0.10 * before
    olink = pl.col("platform") == "olink"
    # bridge samples: the same people measured in both Olink runs
    bridges = olink & pl.col("sample_type").is_in(["sample", "bridge"])
    twice = raw.filter(bridges).group_by("sample_id").agg(pl.col("batch").n_unique()).filter(pl.col("batch") > 1)
    who = bridges & pl.col("sample_id").is_in(twice["sample_id"].to_list())
    b_before = between_plate_variance(raw, who, unit="batch")
    b_after = between_plate_variance(corrected, who, unit="batch")
    assert b_after <= 0.10 * b_before, (b_before, b_after)


def severity_slopes(frame: pl.DataFrame) -> dict[tuple[str, str], float]:
    study = combine_replicates(frame.filter(pl.col("sample_type").is_in(["sample", "bridge"])))
    study = study.join(frame.select("sample_id", "severity", "cohort").unique("sample_id"), on="sample_id")
    out = {}
    for (platform, analyte), part in study.filter(pl.col("cohort") == "patient").group_by(["platform", "analyte"]):
        if analyte not in SEVERITY_SLOPE_SD:
            continue
        x, y = part["severity"].to_numpy(), part["log_value"].to_numpy()
        ok = ~np.isnan(y) & part["censoring"].is_null().to_numpy()
        out[(platform, analyte)] = float(np.polyfit(x[ok], y[ok], 1)[0] * 100)
    return out


@pytest.mark.parametrize("methods", METHODS, ids=["plate_control", "bridge", "combat"])
def test_planted_severity_effects_survive_correction(demo_frames, methods) -> None:
    raw, clean = demo_frames
    truth = severity_slopes(clean)  # same people and noise, no plate effects
    got = severity_slopes(correct_batches(raw, methods))
    assert set(truth) == {(p, a) for p in ("msd", "olink") for a in SEVERITY_SLOPE_SD}
    for key, expected in truth.items():
        planted = SEVERITY_SLOPE_SD[key[1]] * PERSON_SD[key]  # log units per 100 severity points
        assert expected > 0 and got[key] > 0, key  # same sign as planted
        assert abs(got[key] - expected) <= 0.20 * planted, (key, got[key], expected, planted)


@pytest.mark.parametrize("methods", METHODS, ids=["plate_control", "bridge", "combat"])
def test_patient_versus_healthy_difference_survives(demo_frames, methods) -> None:
    raw, clean = demo_frames

    def diff(frame: pl.DataFrame) -> float:
        study = combine_replicates(frame.filter(pl.col("sample_type").is_in(["sample", "bridge"])))
        study = study.join(frame.select("sample_id", "cohort").unique("sample_id"), on="sample_id")
        m = (
            study.filter((pl.col("analyte") == "IL6") & (pl.col("platform") == "olink"))
            .group_by("cohort")
            .agg(pl.col("log_value").mean())
        )
        d = dict(m.rows())
        return d["patient"] - d["healthy"]

    expected = diff(clean)
    planted = SEVERITY_SLOPE_SD["IL6"] * PERSON_SD[("olink", "IL6")] * 0.5  # mean severity of patients is ~50
    assert expected > 0
    assert abs(diff(correct_batches(raw, methods)) - expected) <= 0.20 * planted


def test_the_combat_fit_a_release_keeps_brings_one_of_its_own_plates_back_to_what_combat_gave_it(demo_frames) -> None:
    """What a ComBat run keeps (transforms.normalise.combat_anchors) is enough to redo ComBat on a batch
    later (transforms.retest.frozen_combat): on one of the run's own MSD plates the frozen result matches
    the run's (exactly but for samples with some replicate wells censored, which ComBat sees at their
    limit well by well)."""
    from transforms.normalise import ANCHOR_SCHEMA, combat_anchors
    from transforms.retest import frozen_combat

    raw, _ = demo_frames
    msd = raw.filter(pl.col("platform") == "msd")
    fit: list[pl.DataFrame] = []
    whole = combine_replicates(
        correct_batches(msd, {"msd": "combat"}, combat_fit=fit).filter(pl.col("sample_type") == "sample")
    )
    anchors = combat_anchors(fit)
    assert anchors.columns == list(ANCHOR_SCHEMA) and set(anchors["kind"].to_list()) == {"combat"}
    terms = {t.removeprefix("combat:") for t in anchors["control_id"].unique().to_list()}
    assert terms == {"grand_mean", "var_pooled", "cohort=patient", "__sex=M", "__age"}
    plate = msd["plate_id"].unique().sort()[3]
    aligned = correct_batches(msd)  # the run's plate-control step, which ComBat starts from
    before = combine_replicates(aligned.filter((pl.col("plate_id") == plate) & (pl.col("sample_type") == "sample")))
    people = (
        msd.filter(pl.col("plate_id") == plate)
        .select("sample_id", "cohort", pl.col("__sex").alias("sex"), pl.col("__age").alias("age"))
        .unique("sample_id")
    )
    frozen = frozen_combat(before, anchors, people, platforms=["msd"], min_batch=10)
    clean = (
        msd.filter(pl.col("plate_id") == plate)
        .group_by("sample_id", "analyte")
        .agg(pl.col("censoring").is_null().all())
    )
    both = frozen.join(
        whole.select("sample_id", "analyte", pl.col("log_value").alias("run")), on=["sample_id", "analyte"]
    ).join(clean.filter(pl.col("censoring")), on=["sample_id", "analyte"])
    assert both.height > 200 and both["batch_method"].str.contains(r"\+combat \(frozen").all()
    gap = (both["log_value"] - both["run"]).abs().max()
    assert gap < 0.01  # 0.0023 on this plate


def test_combat_on_a_single_batch_says_it_corrected_nothing(demo_frames) -> None:
    """One batch (every study sample on one plate, or in one run): ComBat has nothing to correct, and the
    values are those of the plate-control step; batch_method said plate_control+combat all the same."""
    raw, _ = demo_frames
    msd = raw.filter(pl.col("platform") == "msd")
    one = msd.filter(pl.col("plate_id") == msd["plate_id"].unique().sort()[0]).with_columns(pl.lit("B1").alias("batch"))
    combat = correct_batches(one, {"msd": "combat"})
    studied = combat.filter(pl.col("sample_type") == "sample")
    assert studied.height > 0 and studied["batch_method"].unique().to_list() == ["plate_control; one batch: no ComBat"]
    key = ["sample_id", "analyte", "well"]
    plain = correct_batches(one).filter(pl.col("sample_type") == "sample").sort(key)
    assert studied.sort(key)["log_value"].to_list() == plain["log_value"].to_list()
