"""Whose samples a retest holds (transforms.retest.person_samples) and the frozen normalisation of real-shaped
exports (transforms.retest.frozen_normalise)."""

from __future__ import annotations

import hashlib
from datetime import date
from functools import cache

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from tests.retest_release import synthetic_release
from transforms.demo import generate_retest
from transforms.normalise import dictionary_lookup, prepare_measurements
from transforms.readers import read_file
from transforms.retest import Person, PersonError, frozen_normalise, person_samples
from warehouse.lookups import read_analyte_dictionary


def _read(files: dict[str, bytes]) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    rows, manifest = [], None
    for name, data in files.items():
        result = read_file(data, source=name, sha256=hashlib.sha256(data).hexdigest())
        if result.samples is not None:
            manifest = result.samples
        else:
            rows.append(result.rows)
    return pl.concat(rows), manifest


def test_the_manifest_says_whose_samples_they_are_and_when_they_were_taken() -> None:
    rows, manifest = _read(generate_retest().files)
    samples = person_samples(rows, manifest=manifest)
    assert samples["sample_id"].to_list() == ["RT011-1", "RT011-2"]  # the other people on the plates are not scored
    assert samples["collection_date"].to_list() == [date(2026, 3, 2), date(2026, 6, 1)]
    assert samples["source_file"][0] == "olink_npx_retest_visit1.csv, msd_vplex_retest_visit1.csv"
    with pytest.raises(PersonError, match="for subject SOMEONE-ELSE"):
        person_samples(rows, manifest=manifest, person=Person(subject="SOMEONE-ELSE"))


def test_with_a_manifest_of_the_whole_study_the_named_samples_are_scored_not_the_whole_plate() -> None:
    """`refranges score plate.csv manifest.csv --sample 0100000` scored all 38 people of the demo's plate that
    the study's manifest lists: --sample was read only without a manifest."""
    rows, manifest = _read(generate_retest(n_others=3).files)
    assert manifest is not None
    study = rows.filter(pl.col("sample_type") == "sample")["sample_id"].unique().sort().to_list()
    others = [s for s in study if s not in set(manifest["sample_id"])]
    assert len(others) >= 3
    listed = others[1:]  # the first other sample stays unlisted
    everyone = pl.concat(
        [
            manifest,
            pl.concat([manifest.head(1)] * len(listed)).with_columns(
                pl.Series("sample_id", listed), pl.Series("subject_id", [f"OTHER-{k}" for k in range(len(listed))])
            ),
        ]
    )
    assert set(person_samples(rows, manifest=everyone)["sample_id"]) == {"RT011-1", "RT011-2", *listed}
    named = person_samples(rows, manifest=everyone, sample_ids=["RT011-2"])
    assert (
        named["sample_id"].to_list() == ["RT011-2"]
        and named["subject_id"].to_list() == manifest["subject_id"][:1].to_list()
    )
    with pytest.raises(PersonError, match="sample NOPE is in none of the exports"):
        person_samples(rows, manifest=everyone, sample_ids=["RT011-2", "NOPE"])
    with pytest.raises(
        PersonError, match=f"the manifest does not list sample {others[0]}; check --sample or the manifest$"
    ):
        person_samples(rows, manifest=everyone, sample_ids=[others[0]])
    retyped = everyone.head(1).with_columns(
        pl.lit(others[0].lower()).alias("sample_id"), pl.lit("X").alias("subject_id")
    )
    relisted = pl.concat([everyone, retyped])
    with pytest.raises(PersonError, match=f"does not list sample {others[0]}; .* \\(it lists {others[0].lower()}\\)$"):
        person_samples(rows, manifest=relisted, sample_ids=[others[0]])


def test_without_a_manifest_the_person_is_named_by_sample_or_is_the_only_sample_of_each_export() -> None:
    files = generate_retest(n_others=0, platforms=("olink",)).files
    rows, _ = _read({k: v for k, v in files.items() if k != "retest_manifest.csv"})
    alone = person_samples(
        rows, person=Person(subject="me", sex="M", age=50), dates=[date(2026, 1, 5), date(2026, 2, 5)]
    )
    assert alone["subject_id"].unique().to_list() == ["me"] and alone["sex"].unique().to_list() == ["M"]
    assert alone["collection_date"].to_list() == [date(2026, 1, 5), date(2026, 2, 5)]
    with pytest.raises(PersonError, match="1 dates for 2 exports with study samples"):
        person_samples(rows, dates=[date(2026, 1, 5)])
    crowded, _ = _read({k: v for k, v in generate_retest(n_others=3).files.items() if k.startswith("olink")})
    with pytest.raises(PersonError, match=r"olink_npx_retest_visit1.csv holds 4 study samples \(RT011-1, "):
        person_samples(crowded)
    assert person_samples(crowded, sample_ids=["RT011-2"])["sample_id"].to_list() == ["RT011-2"]
    with pytest.raises(PersonError, match="sample NOPE is in none of the exports"):
        person_samples(crowded, sample_ids=["NOPE"])
    # an id retyped in another case, or with its leading zeros gone, is named beside the refusal (never taken)
    with pytest.raises(
        PersonError, match=r"sample rt011-2 is in none of the exports; check --sample \(the exports hold RT011-2\)$"
    ):
        person_samples(crowded, sample_ids=["rt011-2"])
    with pytest.raises(PersonError, match=r"sample NOPE is in none of the exports; check --sample$"):
        person_samples(crowded, sample_ids=["NOPE"])


@cache
def _prepared() -> pl.DataFrame:
    rows, manifest = _read(generate_retest(plate_shifts=(0.3, -0.8)).files)
    samples = person_samples(rows, manifest=manifest)
    lookup = dictionary_lookup(read_analyte_dictionary()[0])
    theirs = (pl.col("sample_type") != "sample") | pl.col("sample_id").is_in(samples["sample_id"].to_list())
    prepared, held = prepare_measurements(rows.filter(theirs), samples, lookup)
    assert held.height == 0
    return prepared


def _anchors() -> pl.DataFrame:
    return pl.DataFrame(pl.from_arrow(synthetic_release()["normalisation_anchors"]))


@settings(max_examples=25, deadline=None)
@given(plate=st.integers(0, 3), shift=st.floats(-3, 3, allow_nan=False))
def test_a_shift_of_a_whole_plate_never_changes_the_frozen_result(plate: int, shift: float) -> None:
    """Everything on a plate (values, controls, limits) moved by the same amount is a plate effect: the
    frozen correction must remove it exactly, whatever its size, and leave the other plates alone."""
    prepared = _prepared()
    plates = sorted(prepared["plate_id"].unique().to_list())
    on = pl.col("plate_id") == plates[plate]
    moved = prepared.with_columns(
        *(
            pl.when(on).then(pl.col(c) + shift).otherwise(pl.col(c)).alias(c)
            for c in ("log_value", "log_limit", "log_lod")
        )
    )
    base, base_refused = frozen_normalise(prepared, _anchors(), release="r")
    out, refused = frozen_normalise(moved, _anchors(), release="r")
    assert base_refused.height == refused.height == 0
    keys = ["sample_id", "platform", "analyte"]
    assert_frame_equal(
        out.sort(keys).drop("plate_shift", "batch_method"),
        base.sort(keys).drop("plate_shift", "batch_method"),
        check_exact=False,
        abs_tol=1e-9,
        rel_tol=1e-9,
    )
    diff = out.sort(keys)["plate_shift"] - base.sort(keys)["plate_shift"]
    on_plate = out.sort(keys)["plate_id"] == plates[plate]
    assert ((diff - shift).abs().filter(on_plate) < 1e-9).all() and (diff.abs().filter(~on_plate) < 1e-9).all()


def test_a_platform_the_release_has_no_anchors_for_is_left_as_it_is_and_says_so() -> None:
    prepared = _prepared()
    anchors = _anchors().filter(pl.col("platform") == "olink")
    out, refused = frozen_normalise(prepared, anchors, release="2026.01.01-1")
    msd = out.filter(pl.col("platform") == "msd")
    assert refused.height == 0 and msd.height == 20
    assert (msd["batch_method"] == "none: release 2026.01.01-1 has no plate-control anchors for msd").all()
    assert msd["plate_shift"].is_null().all()
