from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from expectations.runner import quarantine_rows, validate_with_gx
from expectations.suites import duplicated_rows, load_suite, prepare_raw, suite_names
from transforms import schema


def test_every_suite_file_loads_and_every_expectation_has_a_why() -> None:
    names = suite_names()
    assert "raw_measurements" in names
    for name in names:
        suite = load_suite(name)
        assert suite.grain and suite.expectations
        assert all(len(e.why) > 20 for e in suite.expectations)


def test_a_suite_without_why_is_refused(tmp_path) -> None:
    (tmp_path / "bad.json").write_text('{"name": "bad", "expectations": [{"type": "x", "kwargs": {}}]}')
    with pytest.raises(ValueError, match="has no 'why'"):
        load_suite("bad", tmp_path)


def good_rows(n: int = 6) -> pl.DataFrame:
    return schema.conform(
        pl.DataFrame(
            {
                "source_file": ["f.csv"] * n,
                "source_sha256": ["abc"] * n,
                "line_number": list(range(2, n + 2)),
                "platform": ["msd"] * n,
                "plate_id": ["P1"] * n,
                "well": [f"A{i:02d}" for i in range(n)],
                "sample_id": [f"S{i}" for i in range(n)],
                "analyte_raw": ["IL-6"] * n,
                "value": [1.0 + i for i in range(n)],
                "unit_raw": ["pg/mL"] * n,
            }
        ),
        schema.MEASUREMENT,
    )


BREAKERS = {
    "not_null(sample_id)": lambda f: f.with_columns(
        pl.when(pl.col("line_number") == 3).then(None).otherwise(pl.col("sample_id")).alias("sample_id")
    ),
    "not_null(analyte_raw)": lambda f: f.with_columns(
        pl.when(pl.col("line_number") == 3).then(None).otherwise(pl.col("analyte_raw")).alias("analyte_raw")
    ),
    "not_null(plate_id)": lambda f: f.with_columns(
        pl.when(pl.col("line_number") == 3).then(None).otherwise(pl.col("plate_id")).alias("plate_id")
    ),
    "in_set(unit_raw)": lambda f: f.with_columns(
        pl.when(pl.col("line_number") == 3).then(pl.lit("mg/dL")).otherwise(pl.col("unit_raw")).alias("unit_raw")
    ),
    "between(concentration_value)": lambda f: f.with_columns(
        pl.when(pl.col("line_number") == 3).then(-1.0).otherwise(pl.col("value")).alias("value")
    ),
    "between(npx_value)": lambda f: f.with_columns(
        pl.lit("NPX").alias("unit_raw"),
        pl.when(pl.col("line_number") == 3).then(99.0).otherwise(pl.col("value")).alias("value"),
    ),
    "between(censoring_conflict)": lambda f: f.with_columns(
        pl.when(pl.col("line_number") == 3).then(pl.lit("below_lod")).otherwise(None).alias("censoring"),
        pl.when(pl.col("line_number") == 3).then(0.5).otherwise(None).alias("limit_value"),
    ),
    "unique(wells)": lambda f: pl.concat(
        [f, f.filter(pl.col("line_number") == 3).with_columns(pl.lit(99).cast(pl.Int64).alias("line_number"))]
    ),
}


@pytest.mark.parametrize("breaker", BREAKERS)
def test_each_expectation_fails_on_a_breaking_frame_and_passes_on_a_good_one(breaker: str) -> None:
    suite = load_suite("raw_measurements")
    clean = quarantine_rows(prepare_raw(good_rows()), suite)
    assert clean.results["success"].all() and clean.quarantine.height == 0
    broken = quarantine_rows(prepare_raw(BREAKERS[breaker](good_rows())), suite)
    failed = broken.results.filter(~pl.col("success"))
    assert failed.height == 1, failed
    held_lines = sorted(broken.quarantine["line_number"].to_list())
    assert held_lines == ([3, 99] if breaker == "unique(wells)" else [3])
    why = next(e.why for e in suite.expectations if e.label == failed["expectation"][0])
    assert all(r.endswith(why) for r in broken.quarantine["reason"])
    assert broken.quarantine["reason"][0].startswith("f.csv: line 3: ")


def test_great_expectations_and_polars_masks_agree() -> None:
    """The quarantine set comes from polars masks; GX must count exactly the same failures."""
    suite = load_suite("raw_measurements")
    frame = good_rows(12)
    for breaker in BREAKERS.values():
        if breaker is BREAKERS["between(npx_value)"]:
            continue
        frame = breaker(frame).with_columns(pl.col("line_number").rank("ordinal").cast(pl.Int64) + 1)
    frame = pl.concat([frame, BREAKERS["between(npx_value)"](good_rows(3))])
    prepared = prepare_raw(frame)
    ours = quarantine_rows(prepared, suite).results
    theirs = validate_with_gx(prepared, suite)
    assert ours["expectation"].to_list() == theirs["expectation"].to_list()
    assert ours["unexpected_count"].to_list() == theirs["unexpected_count"].to_list()
    assert ours["success"].to_list() == theirs["success"].to_list()
    assert not ours["success"].all()


def test_great_expectations_sees_narrow_numbers_as_they_are() -> None:
    """validate_with_gx widens Int8 / UInt32 / Float32 columns so that GX compares them as arrays: the counts
    and the unexpected values it reports stay those of the values (a flag of 1 reads "1", never "1.0")."""
    suite = load_suite("raw_measurements")
    prepared = prepare_raw(BREAKERS["between(censoring_conflict)"](good_rows(6)))
    assert prepared.schema["censoring_conflict"] == pl.Int8
    theirs = validate_with_gx(prepared, suite).filter(pl.col("expectation").str.contains("censoring_conflict"))
    ours = quarantine_rows(prepared, suite).results.filter(pl.col("expectation").str.contains("censoring_conflict"))
    assert theirs["unexpected_count"].to_list() == ours["unexpected_count"].to_list() != [0]
    assert set(theirs["unexpected_sample"][0].split(", ")) == {"1"}


@given(st.lists(st.tuples(st.sampled_from(["a", "b", None]), st.sampled_from(["1", "2", None])), max_size=12))
def test_the_hash_shortcut_for_compound_uniqueness_marks_the_rows_the_exact_mask_marks(
    rows: list[tuple[str | None, str | None]],
) -> None:
    frame = pl.DataFrame(rows, schema={"x": pl.String, "y": pl.String}, orient="row")
    exact = frame.select(pl.struct("x", "y").is_duplicated()).to_series()
    assert frame.with_columns(duplicated_rows(frame, ["x", "y"]).alias("d"))["d"].to_list() == exact.to_list()


@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", None]), st.sampled_from([1.5, 2.0, None]), st.sampled_from(["x", "y"])),
        max_size=8,
    )
)
def test_constant_columns_finds_the_columns_with_one_value_in_every_row(
    rows: list[tuple[str | None, float | None, str]],
) -> None:
    frame = pl.DataFrame(rows, schema={"s": pl.String, "f": pl.Float64, "t": pl.String}, orient="row")
    frame = frame.with_columns(pl.lit("file.csv").alias("lit"))  # a literal column, as readers add them
    expected = {
        c: (frame[c][0] if frame.height else None) for c in frame.columns if frame[c].n_unique() <= 1
    }  # n_unique counts null as a value
    assert schema.constant_columns(frame) == expected
    assert schema.constant_columns(frame, ["t", "s"]) == {c: v for c, v in expected.items() if c in ("t", "s")}
    assert schema.constant_columns(frame, []) == {}
