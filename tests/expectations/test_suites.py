from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
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
    "in_set(unit_read)": lambda f: f.with_columns(
        pl.when(pl.col("line_number") == 3).then(pl.lit("mg/dL")).otherwise(pl.col("unit_raw")).alias("unit_raw")
    ),
    "between(concentration_value)": lambda f: f.with_columns(
        pl.when(pl.col("line_number") == 3).then(-1.0).otherwise(pl.col("value")).alias("value")
    ),
    "between(mfi_value)": lambda f: f.with_columns(
        pl.lit("MFI").alias("unit_raw"),
        pl.when(pl.col("line_number") == 3).then(-4.0).otherwise(pl.col("value")).alias("value"),
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


def test_a_concentration_of_zero_is_held_by_both_engines_and_an_npx_of_zero_is_not() -> None:
    """0 pg/mL passed the raw suite (min 0 inclusive), its log was -inf, and publishing the release failed on
    the quantile grid it made. A concentration must be above 0; NPX, a log2 scale, may be 0 or below."""
    suite = load_suite("raw_measurements")
    zero = good_rows().with_columns(
        pl.when(pl.col("line_number") == 3).then(0.0).otherwise(pl.col("value")).alias("value")
    )
    held = quarantine_rows(prepare_raw(zero), suite)
    assert held.quarantine["line_number"].to_list() == [3]
    assert "concentration_value '0.0': a concentration must be above 0" in held.quarantine["reason"][0]
    gx = validate_with_gx(prepare_raw(zero), suite)
    assert gx["unexpected_count"].to_list() == held.results["unexpected_count"].to_list()
    npx = zero.with_columns(pl.lit("NPX").alias("unit_raw"))
    assert quarantine_rows(prepare_raw(npx), suite).quarantine.height == 0


def test_units_are_checked_in_their_lab_spelling_whatever_their_case() -> None:
    """Normalisation reads PG/ML, Pg/mL, pM and "pg per mL" (a LIMS's spellings) as lab units, but the raw
    suite compared the unit as written with a list, so those rows were held at ingest with "only known
    concentration units" and never reached it. The suite now checks the lab spelling; a unit it does not know
    (IU/mL, mg/dL, %) is still held, named as written, by both engines."""
    from transforms.normalise import unit_factor

    written = ["PG/ML", "Pg/mL", "pg per mL", " pg/mL ", "pM", "µg/l", "NG/ML", "npx", "mfi", "IU/mL", "mg/dL", "%"]
    rows = good_rows(len(written)).with_columns(pl.Series("unit_raw", written))
    suite = load_suite("raw_measurements")
    held = quarantine_rows(prepare_raw(rows), suite)
    assert sorted(held.quarantine["line_number"].to_list()) == [11, 12, 13]
    assert [r.split(": ")[2] for r in held.quarantine.sort("line_number")["reason"]] == [
        "unit_read 'IU/mL'",
        "unit_read 'mg/dL'",
        "unit_read '%'",
    ]
    assert all(unit_factor(u)[0] is not None for u in written[:9])  # each accepted unit converts
    gx = validate_with_gx(prepare_raw(rows), suite)
    assert gx["unexpected_count"].to_list() == held.results["unexpected_count"].to_list()


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


def test_great_expectations_results_follow_each_frame_and_threshold_with_its_objects_kept() -> None:
    """validate_with_gx keeps GX's context, assets and built suites per thread: a frame validated after
    another gets its own counts, a suite read with other thresholds its own limits, and a new thread (a new
    context) the same figures as the thread that reused them."""
    import threading

    from expectations.suites import DEFAULT_THRESHOLDS

    files = load_suite("files")
    stats = pl.DataFrame(
        {"file": ["a.csv", "b.csv", "c.csv"], "rows_read": [10, 0, 4], "bad_row_share": [0.0, 0.0, 0.5]}
    )
    clean = stats.head(1)
    first = validate_with_gx(stats, files)
    assert first["unexpected_count"].to_list() == [1, 1]
    assert validate_with_gx(clean, files)["unexpected_count"].to_list() == [0, 0]
    assert validate_with_gx(stats, files).equals(first)
    lenient = load_suite("files", thresholds=DEFAULT_THRESHOLDS | {"max_bad_row_share": 0.6})
    assert validate_with_gx(stats, lenient)["unexpected_count"].to_list() == [0, 1]
    assert validate_with_gx(stats, files).equals(first)  # the stricter suite again, not the lenient one
    elsewhere: list[pl.DataFrame] = []
    worker = threading.Thread(target=lambda: elsewhere.append(validate_with_gx(stats, files)))
    worker.start()
    worker.join()
    assert elsewhere[0].equals(first)


def test_great_expectations_keeps_no_frame_after_a_validation(monkeypatch) -> None:
    """GX's engine held the last validated frame (as pandas) until the thread's next validation; with the
    objects kept per thread that was a normalisation part's rows held after the part."""
    import gc
    import weakref

    handed: list[weakref.ref] = []
    to_pandas = pl.DataFrame.to_pandas

    def spy(self: pl.DataFrame, *args: object, **kwargs: object) -> object:
        frame = to_pandas(self, *args, **kwargs)
        handed.append(weakref.ref(frame))
        return frame

    monkeypatch.setattr(pl.DataFrame, "to_pandas", spy)
    suite = load_suite("raw_measurements")
    for n in (6, 9):
        assert validate_with_gx(prepare_raw(good_rows(n)), suite)["success"].all()
    gc.collect()
    assert len(handed) == 2 and all(ref() is None for ref in handed)


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


@settings(max_examples=25, deadline=None)  # each example builds a GX context (about 0.1 s)
@given(
    st.lists(st.tuples(st.sampled_from(["a", "b", None]), st.sampled_from(["1", "2", None])), min_size=1, max_size=10),
    st.sampled_from([None, "all_values_are_missing", "any_value_is_missing", "never"]),
)
def test_great_expectations_marks_the_same_duplicates_without_the_constant_key_columns(
    rows: list[tuple[str | None, str | None]], ignore: str | None
) -> None:
    """validate_with_gx leaves the key columns that hold one non-null value in every row (a file's hash) out
    of a compound-uniqueness check: GX then counts what it counts with them, for every ``ignore_row_if``.
    The oracle is GX itself given the full key with a column that is not constant (a different value in one
    extra row that cannot duplicate any other)."""
    from expectations.runner import _without_constant_keys
    from expectations.suites import Expectation, Suite

    frame = pl.DataFrame(rows, schema={"x": pl.String, "y": pl.String}, orient="row").with_columns(
        pl.lit("sha").alias("file"), pl.lit("plate").alias("p")
    )
    kwargs: dict = {"column_list": ["file", "x", "p", "y"]} | ({"ignore_row_if": ignore} if ignore else {})
    reduced = _without_constant_keys(frame, kwargs)
    assert "p" not in reduced["column_list"] and len(reduced["column_list"]) >= 2
    if min(frame.select(pl.col("x", "y").n_unique()).row(0)) > 1:
        assert "file" not in reduced["column_list"] and reduced["ignore_row_if"] in ("never", "any_value_is_missing")
    why = "a repeated key means the export repeats rows, so neither copy can be trusted"
    suite = Suite("s", "row", "row", [Expectation("expect_compound_columns_to_be_unique", kwargs, why)])
    got = validate_with_gx(frame, suite)
    # the same rows plus one whose file differs: nothing constant to leave out, and the extra row is unique
    extra = pl.concat(
        [frame, pl.DataFrame({"x": ["z"], "y": ["9"], "file": ["other"], "p": ["plate"]})], how="diagonal"
    )
    assert _without_constant_keys(extra, kwargs)["column_list"] == ["file", "x", "y"]  # p still constant
    full = validate_with_gx(extra, suite)
    assert got["unexpected_count"].to_list() == full["unexpected_count"].to_list()
    exact = frame.select(pl.struct("x", "y").is_duplicated().sum()).item()
    if ignore in (None, "all_values_are_missing", "never"):  # "sha" is never missing: no row is ignored
        assert got["unexpected_count"].item() == exact


def test_a_compound_key_keeps_two_columns_and_its_columns_of_nulls() -> None:
    from expectations.runner import _without_constant_keys

    frame = pl.DataFrame(
        {"a": ["x", "x"], "b": [1, 1], "n": [None, None]}, schema={"a": pl.String, "b": pl.Int64, "n": pl.String}
    )
    assert _without_constant_keys(frame, {"column_list": ["a", "b"]}) == {"column_list": ["a", "b"]}
    wide = frame.with_columns(pl.lit(2).alias("c"), pl.Series("v", [1, 2]))
    assert _without_constant_keys(wide, {"column_list": ["a", "b", "c"]}) == {
        "column_list": ["a", "b"],  # GX takes two columns at least
        "ignore_row_if": "never",
    }
    assert _without_constant_keys(wide, {"column_list": ["a", "v", "b"]})["column_list"] == ["a", "v"]
    # a column of nulls only is not left out: it is what makes a row "all values missing"
    assert _without_constant_keys(wide, {"column_list": ["n", "a", "v", "b"]})["column_list"] == ["n", "v"]


def test_both_engines_show_unexpected_floats_to_ten_digits() -> None:
    """The masks and GX write the same sample text, floats to 10 significant digits (1/95 + 40 reads
    40.01052632, not 40.010526315789476)."""
    suite = load_suite("raw_measurements")
    frame = good_rows(4).with_columns(
        pl.lit("NPX").alias("unit_raw"), pl.Series("value", [1.0, 2.0, 40 + 1 / 95, -16.0])
    )
    prepared = prepare_raw(frame)
    label = "expect_column_values_to_be_between(npx_value)"
    ours = quarantine_rows(prepared, suite).results.filter(pl.col("expectation") == label)
    theirs = validate_with_gx(prepared, suite).filter(pl.col("expectation") == label)
    assert ours["unexpected_sample"].to_list() == theirs["unexpected_sample"].to_list() == ["40.01052632, -16"]
