"""Frozen plate-control anchors: the levels a release keeps so that a plate measured later is corrected onto
the release's scale (transforms.normalise.plate_control_anchors / correct_plates_frozen)."""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from transforms.normalise import POOLED, correct_plates, correct_plates_frozen, plate_control_anchors

CONTROLS = ["CONTROL_SAMPLE_1", "CONTROL_SAMPLE_2"]
ANALYTES = {"IL6": 3.0, "TNF": 5.0}  # true NPX level of a healthy person
CONTROL_LEVEL = {"CONTROL_SAMPLE_1": 1.0, "CONTROL_SAMPLE_2": 2.0}  # offsets of the controls


def plate(plate_id: str, shift: float, rng: np.random.Generator, *, people: dict[str, float], controls=CONTROLS):
    """Rows of one plate: each control in two wells and each person once, every value moved by ``shift``."""
    rows = []
    for analyte, level in ANALYTES.items():
        for control in controls:
            for _ in range(2):
                value = level + CONTROL_LEVEL[control] + shift + rng.normal(0, 0.02)
                rows.append((analyte, plate_id, control, "control", value))
        for person, change in people.items():
            rows.append((analyte, plate_id, person, "sample", level + change + shift + rng.normal(0, 0.02)))
    frame = pl.DataFrame(rows, schema=["analyte", "plate_id", "sample_id", "sample_type", "log_value"], orient="row")
    return frame.with_columns(
        pl.lit("olink").alias("platform"),
        pl.lit("Target 96 Inflammation").alias("panel"),
        pl.lit("NPX").alias("unit"),
        pl.lit(None, dtype=pl.String).alias("censoring"),
        pl.lit(None, dtype=pl.Float64).alias("log_limit"),
        pl.lit(None, dtype=pl.Float64).alias("log_lod"),
        pl.lit(f"{plate_id}.csv").alias("source_file"),
        pl.int_range(1, pl.len() + 1).alias("line_number"),
    )


def reference_cohort(seed: int = 1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    shifts = {"P1": 0.0, "P2": 0.3, "P3": -0.2}
    return pl.concat(
        [plate(p, s, rng, people={f"H{p}{i}": rng.normal(0, 0.3) for i in range(5)}) for p, s in shifts.items()]
    )


@settings(max_examples=25, deadline=None)
@given(shifts=st.lists(st.floats(-1.5, 1.5), min_size=2, max_size=6), seed=st.integers(0, 1000))
def test_frozen_anchors_of_a_cohort_correct_that_cohort_exactly_as_its_own_normalisation_does(shifts, seed) -> None:
    rng = np.random.default_rng(seed)
    cohort = pl.concat([plate(f"P{i}", s, rng, people={f"S{i}": 0.1}) for i, s in enumerate(shifts)])
    own = correct_plates(cohort)
    frozen, refused = correct_plates_frozen(cohort, plate_control_anchors(cohort))
    assert refused.height == 0
    order = ["plate_id", "analyte", "sample_id", "line_number"]
    assert_frame_equal(
        frozen.drop("batch_method", "plate_shift", "plate_controls").sort(order),
        own.drop("batch_method").sort(order),
    )


def test_a_new_plate_with_a_planted_shift_lands_on_the_reference_scale_and_a_real_change_stays() -> None:
    anchors = plate_control_anchors(reference_cohort())
    assert anchors.height == len(ANALYTES) * len(CONTROLS) and set(anchors["n_plates"].to_list()) == {3}
    rng = np.random.default_rng(7)
    # a person measured again on a new plate that reads 0.9 NPX high; their TNF truly rose by 1.5
    planted = 0.9
    new = plate("P9", planted, rng, people={"PERSON": 0.0}).with_columns(
        pl.when((pl.col("sample_id") == "PERSON") & (pl.col("analyte") == "TNF"))
        .then(pl.col("log_value") + 1.5)
        .otherwise(pl.col("log_value"))
        .alias("log_value")
    )
    corrected, refused = correct_plates_frozen(new, anchors, label="release 2026.12.03-1")
    assert refused.height == 0
    person = corrected.filter(pl.col("sample_id") == "PERSON").sort("analyte")
    raw = new.filter(pl.col("sample_id") == "PERSON").sort("analyte")
    # the reference plates' own levels are centred on their median plate (shift 0 here), so the truth is known
    truth = {"IL6": ANALYTES["IL6"], "TNF": ANALYTES["TNF"] + 1.5}
    for row, before in zip(person.iter_rows(named=True), raw["log_value"], strict=True):
        assert abs(row["log_value"] - truth[row["analyte"]]) < 0.1  # the plate shift is gone
        assert abs(before - truth[row["analyte"]]) > 0.8  # without the anchors it is not
        assert abs(row["plate_shift"] - planted) < 0.1 and row["plate_controls"] == len(CONTROLS)
        assert row["batch_method"] == "plate_control (release 2026.12.03-1)"


def test_a_plate_without_the_controls_the_release_anchors_is_refused_with_what_is_missing() -> None:
    anchors = plate_control_anchors(reference_cohort())
    rng = np.random.default_rng(3)
    bare = plate("P10", 0.4, rng, people={"PERSON": 0.0}, controls=[])
    stranger = plate("P11", 0.4, rng, people={"OTHER": 0.0}).filter(pl.col("analyte") == "IL6")
    corrected, refused = correct_plates_frozen(pl.concat([bare, stranger]), anchors.filter(pl.col("analyte") != "IL6"))
    assert corrected.height == 0  # IL6 has no anchor at all, P10 has no controls: nothing is scored uncorrected
    assert refused.height == bare.height + stranger.height
    reasons = refused["reason"].to_list()
    assert any(
        r.startswith("P10.csv: line ")
        and "plate P10 has no plate control" in r
        and "olink TNF" in r
        and "CONTROL_SAMPLE_1, CONTROL_SAMPLE_2" in r
        for r in reasons
    )
    assert any(
        "plate P11" in r and "olink IL6" in r and "the release has no anchors for this analyte" in r for r in reasons
    )
    assert set(refused["stage"].to_list()) == {"score"} and set(refused["check"].to_list()) == {"frozen_plate_controls"}


def named_per_plate(frame: pl.DataFrame) -> pl.DataFrame:
    """The same rows with each control named after its plate, as Olink Explore exports write them."""
    return frame.with_columns(
        pl.when(pl.col("sample_type") == "control")
        .then(pl.col("sample_id") + "_" + pl.col("plate_id"))
        .otherwise(pl.col("sample_id"))
        .alias("sample_id")
    )


def test_controls_named_per_plate_are_pooled_per_plate_and_still_bring_a_new_plate_onto_the_scale() -> None:
    cohort = named_per_plate(reference_cohort())
    anchors = plate_control_anchors(cohort)
    assert anchors["control_id"].unique().to_list() == [POOLED] and set(anchors["n_plates"].to_list()) == {3}
    own = correct_plates(cohort)  # the cohort's plates are aligned too (before, each control anchored itself)
    levels = (
        own.filter(pl.col("sample_type") == "control").group_by("plate_id", "analyte").agg(pl.col("log_value").median())
    )
    assert (
        levels.group_by("analyte")
        .agg((pl.col("log_value").max() - pl.col("log_value").min()).alias("spread"))["spread"]
        .max()
        < 0.1
    )  # planted plate shifts of 0.5 between plates, gone
    rng = np.random.default_rng(11)
    new = named_per_plate(plate("P20", 0.7, rng, people={"PERSON": 0.0}))
    corrected, refused = correct_plates_frozen(new, anchors)
    assert refused.height == 0
    person = corrected.filter(pl.col("sample_id") == "PERSON")
    assert ((person["plate_shift"] - 0.7).abs() < 0.1).all() and (person["plate_controls"] == 1).all()
    # a release whose controls recur by name is not pooled: a new plate with per-plate names is refused
    by_name = plate_control_anchors(reference_cohort())
    assert POOLED not in by_name["control_id"].to_list()
    assert correct_plates_frozen(new, by_name)[0].height == 0
