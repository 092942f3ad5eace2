"""schema.sort_rows: the same rows in the same order as polars' stable sort, on frames shaped like the parts
the pipeline hands between tasks (sorted runs of rows, text keys with few values, nulls, ties)."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.schema import sort_rows

TEXT = st.one_of(st.none(), st.sampled_from(["", "a", "B", "b", "ab", "é", "S0002", "S0010", "S002"]))


@st.composite
def parts(draw: st.DrawFn) -> pl.DataFrame:
    """Rows as a Parquet part is read back: a few runs, each sorted by (file, line), in any order."""
    runs = []
    for _ in range(draw(st.integers(0, 6))):
        n = draw(st.integers(0, 12))
        run = pl.DataFrame(
            {
                "source_sha256": draw(st.lists(TEXT, min_size=n, max_size=n)),
                "line_number": draw(st.lists(st.one_of(st.none(), st.integers(-3, 40)), min_size=n, max_size=n)),
                "value": draw(st.lists(st.floats(allow_nan=True), min_size=n, max_size=n)),
            },
            schema={"source_sha256": pl.String, "line_number": pl.Int64, "value": pl.Float64},
        )
        runs.append(run.sort("source_sha256", "line_number") if draw(st.booleans()) else run)
    frame = pl.concat(runs) if runs else pl.DataFrame(schema={"source_sha256": pl.String, "line_number": pl.Int64})
    return frame.with_row_index("row")  # tells tied rows apart


@settings(max_examples=300, deadline=None)
@given(parts(), st.sampled_from([["source_sha256", "line_number"], ["line_number"], ["source_sha256"]]), st.booleans())
def test_sort_rows_equals_a_stable_sort(frame: pl.DataFrame, keys: list[str], few_runs: bool) -> None:
    expected = frame.sort(keys, maintain_order=True)
    got = sort_rows(frame, keys, max_runs=4096 if few_runs else 1)  # by runs, and by a gather
    assert got.equals(expected)


def test_sort_rows_orders_text_as_polars_does_and_cuts_runs_without_copying_rows() -> None:
    frame = pl.DataFrame(
        {"file": ["b", "b", "a", "a", "B", None], "line": [1, 2, 1, 2, 7, 1], "v": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]}
    )
    got = sort_rows(frame, ["file", "line"])
    assert got["v"].to_list() == [0.6, 0.5, 0.3, 0.4, 0.1, 0.2]  # null first, then byte order (B < a < b)
    assert got.n_chunks() == 4  # four runs sliced out of the input, not gathered
