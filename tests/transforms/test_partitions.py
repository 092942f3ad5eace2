"""Partitions by analyte: packing, the units each step needs together, and normalisation part by part giving
exactly what normalising everything at once gives."""

from __future__ import annotations

import itertools

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.demo_files import read_demo
from transforms.demo import generate_demo
from transforms.normalise import dictionary_lookup, finish_measurements, prepare_measurements
from transforms.partitions import pack, plan_normalise, plan_reference
from warehouse.lookups import read_analyte_dictionary


@pytest.fixture(scope="module")
def lookup() -> pl.DataFrame:
    return dictionary_lookup(read_analyte_dictionary()[0])


@given(st.lists(st.integers(1, 50), max_size=40), st.integers(1, 100))
def test_pack_closes_a_part_only_when_the_next_unit_would_overflow_it(sizes: list[int], max_rows: int) -> None:
    parts = pack(sizes, max_rows)
    assert len(parts) == len(sizes)
    assert parts == sorted(parts) and (not parts or parts[0] == 0)
    assert all(b - a in (0, 1) for a, b in itertools.pairwise(parts))  # contiguous, in order
    totals: dict[int, list[int]] = {}
    for part, n in zip(parts, sizes, strict=True):
        totals.setdefault(part, []).append(n)
    for part, units in totals.items():
        assert sum(units) <= max_rows or len(units) == 1  # only a unit larger than a part stands alone
        if part + 1 in totals:  # greedy: the next part's first unit did not fit here
            assert sum(units) + totals[part + 1][0] > max_rows


def names(rows: list[tuple[str, str | None, str, int]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["platform", "panel", "analyte_raw", "n"], orient="row")


def test_names_of_one_analyte_stay_together_and_pooling_methods_keep_a_platform_whole(lookup: pl.DataFrame) -> None:
    frame = names(
        [
            ("msd", "V-PLEX", "IL-6", 30),
            ("msd", "V-PLEX", "IL6 (Human)", 30),  # the same analyte, written another way
            ("msd", "V-PLEX", "TNF-α", 50),
            ("msd", "V-PLEX", "IL-10", 50),
            ("olink", "Target 96 Inflammation", "IL6", 40),
            ("olink", "Target 96 Inflammation", "TNF", 40),
            ("olink", None, "CXCL10", 40),
            ("msd", "V-PLEX", "not a marker", 5),
        ]
    )
    plan = plan_normalise(frame, lookup, max_rows=60)
    part = dict(zip(zip(plan["platform"], plan["analyte_raw"], strict=True), plan["part"], strict=True))
    assert plan.height == frame.height
    assert part[("msd", "IL-6")] == part[("msd", "IL6 (Human)")]
    assert len({part[("msd", "IL-6")], part[("msd", "TNF-α")], part[("msd", "IL-10")]}) == 3  # 60 + 50 > 60
    assert part[("olink", "IL6")] != part[("msd", "IL-6")]  # another platform is another unit
    assert plan["part"].max() >= 5
    pooled = plan_normalise(frame, lookup, {"olink": "combat"}, max_rows=60)
    assert pooled.filter(pl.col("platform") == "olink")["part"].n_unique() == 1  # ComBat pools the platform
    assert pooled.filter(pl.col("platform") == "msd")["part"].n_unique() >= 3


def test_reference_parts_follow_analyte_order() -> None:
    plan = plan_reference(pl.DataFrame({"analyte": ["TNF", "IL6", "CXCL10", "IL10"], "n": [5, 5, 5, 5]}), max_rows=10)
    assert plan["analyte"].to_list() == ["CXCL10", "IL10", "IL6", "TNF"]
    assert plan["part"].to_list() == [0, 0, 1, 1]


def test_reference_parts_follow_the_files_that_hold_the_analytes() -> None:
    sizes = pl.DataFrame(
        {
            "analyte": ["TNF", "IL6", "CXCL10", "IL10", "IL6"],
            "file": ["a.parquet", "b.parquet", "b.parquet", "a.parquet", "a.parquet"],
            "n": [5, 3, 5, 5, 2],
        }
    )
    plan = plan_reference(sizes, max_rows=10)
    # IL6 is in both files: it counts once with all its rows (5), packed with the first file that holds it
    assert plan["analyte"].to_list() == ["IL10", "IL6", "TNF", "CXCL10"]
    assert plan["part"].to_list() == [0, 0, 1, 1]


@pytest.mark.parametrize("methods", [{}, {"msd": "combat"}, {"olink": "bridge"}])
def test_normalising_part_by_part_gives_what_normalising_at_once_gives(lookup: pl.DataFrame, methods) -> None:
    rows, samples = read_demo(generate_demo(seed=11, n_healthy=120, n_patients=40))
    study = rows.filter(pl.col("sample_type") == "sample").head(2)
    strays = study.with_columns(  # one row of a sample no manifest names, one of a name no dictionary has
        pl.Series("sample_id", ["NOBODY", study["sample_id"][1]]),
        pl.Series("analyte_raw", [study["analyte_raw"][0], "mystery protein"]),
        pl.col("line_number") + 1_000_000,
    )
    rows = pl.concat([rows, strays])

    def normalised(raw: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        prepared, held = prepare_measurements(raw.sort("source_sha256", "line_number"), samples, lookup)
        return finish_measurements(prepared, methods), held

    whole, held = normalised(rows)
    assert held.height  # the demo has rows that are held (unknown samples, names)
    counts = rows.group_by("platform", "panel", "analyte_raw").agg(pl.len().alias("n"))
    plan = plan_normalise(counts, lookup, methods, max_rows=rows.height // 12)
    assert plan["part"].n_unique() >= 4
    tagged = rows.join(plan, on=["platform", "panel", "analyte_raw"], how="left", nulls_equal=True)
    assert tagged["part"].null_count() == 0
    pieces = [normalised(part.drop("part")) for _, part in tagged.group_by("part")]
    in_parts = pl.concat([p[0] for p in pieces])
    held_in_parts = pl.concat([p[1] for p in pieces])
    assert held_in_parts.sort("source_file", "line_number").equals(held.sort("source_file", "line_number"))
    keys = ["sample_id", "analyte", "platform", "panel", "unit"]
    assert in_parts.height == whole.height
    left, right = whole.sort(keys), in_parts.sort(keys)
    assert left.drop("value", "log_value", "limit_value", "lod").equals(
        right.drop("value", "log_value", "limit_value", "lod")
    )
    for column in ("value", "log_value", "limit_value", "lod"):
        diff = (left[column] - right[column]).abs().max()
        assert diff is None or diff < 1e-12, column
