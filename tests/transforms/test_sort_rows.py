"""schema.sort_rows: the same rows in the same order as polars' stable sort, on frames shaped like the parts
the pipeline hands between tasks (sorted runs of rows, text keys with few values, nulls, ties)."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.schema import sort_rows

TEXT = st.one_of(st.none(), st.sampled_from(["", "a", "B", "b", "ab", "é", "S0002", "S0010", "S002"]))


@st.composite
def parts(draw: st.DrawFn) -> list[tuple[dict[str, list], bool]]:
    """Rows as a Parquet part is read back: a few runs, each sorted by (file, line) or not, in any order. Drawn
    as plain lists, the frames built in the test (:func:`as_frame`): Hypothesis compares the global random
    state before and after a strategy runs, so any thread of the process that used `random` meanwhile was
    reported as this strategy's use (HypothesisDeprecationWarning in the full suite), and building and
    sorting frames here made that window long."""
    runs = []
    for _ in range(draw(st.integers(0, 6))):
        n = draw(st.integers(0, 12))
        columns = {
            "source_sha256": draw(st.lists(TEXT, min_size=n, max_size=n)),
            "line_number": draw(st.lists(st.one_of(st.none(), st.integers(-3, 40)), min_size=n, max_size=n)),
            "value": draw(st.lists(st.floats(allow_nan=True), min_size=n, max_size=n)),
        }
        runs.append((columns, draw(st.booleans())))
    return runs


def as_frame(runs: list[tuple[dict[str, list], bool]]) -> pl.DataFrame:
    schema = {"source_sha256": pl.String, "line_number": pl.Int64, "value": pl.Float64}
    frames = [pl.DataFrame(columns, schema=schema) for columns, _ in runs]
    frames = [f.sort("source_sha256", "line_number") if run[1] else f for f, run in zip(frames, runs, strict=True)]
    frame = pl.concat(frames) if frames else pl.DataFrame(schema=schema)
    return frame.with_row_index("row")  # tells tied rows apart


@settings(max_examples=300, deadline=None)
@given(parts(), st.sampled_from([["source_sha256", "line_number"], ["line_number"], ["source_sha256"]]), st.booleans())
def test_sort_rows_equals_a_stable_sort(
    runs: list[tuple[dict[str, list], bool]], keys: list[str], few_runs: bool
) -> None:
    frame = as_frame(runs)
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
