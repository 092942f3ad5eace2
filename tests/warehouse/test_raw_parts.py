"""A normalisation part reads its rows straight from the raw store (loads.read_raw_part): the same rows, in
the same order, as a plain filter over every loaded raw row, whatever the row groups it skips."""

from __future__ import annotations

import hashlib
from pathlib import Path
from unittest import mock

import polars as pl
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms import schema
from warehouse import db, loads

NAMES = ["CCL2", "CXCL8", "IFNG", "IL10", "IL1B", "IL6", "TNF", "il-6"]
PLATFORMS = ["olink", "msd"]
PANELS = [None, "Inflammation", "Cardiometabolic"]
ASSAY_TYPES = [None, "assay", "ext_ctrl", "inc_ctrl"]


def raw_rows(label: str, rows: list[tuple[int, int, int, int, float]]) -> pl.DataFrame:
    """One file's parsed rows: (name, platform, panel, assay type) as indices into the lists above, and a value;
    lines in the order given (an export's own order, not sorted by name)."""
    sha = hashlib.sha256(label.encode()).hexdigest()
    return schema.conform(
        pl.DataFrame(
            {
                "source_file": [f"{label}.csv"] * len(rows),
                "source_sha256": [sha] * len(rows),
                "line_number": list(range(2, len(rows) + 2)),
                "platform": [PLATFORMS[r[1]] for r in rows],
                "panel": [PANELS[r[2]] for r in rows],
                "sample_id": [f"S{i % 5}" for i in range(len(rows))],
                "analyte_raw": [NAMES[r[0]] for r in rows],
                "value": [r[4] for r in rows],
                "assay_type": [ASSAY_TYPES[r[3]] for r in rows],
                "well": [f"A{i}" for i in range(len(rows))],
            }
        ),
        schema.MEASUREMENT,
    )


def oracle(frames: list[pl.DataFrame], keys: pl.DataFrame) -> pl.DataFrame:
    """What the part must get, computed the plain way: every row of every file, the part's (platform, panel,
    name) triples matched with nulls equal, internal control assays left out, in (file hash, line, name) order,
    without the columns normalisation never reads."""
    every = pl.concat(frames, how="vertical")
    analyte_rows = pl.col("assay_type").is_null() | pl.col("assay_type").is_in(schema.ANALYTE_ASSAY_TYPES)
    picked = every.filter(analyte_rows).join(
        keys.unique(), on=["platform", "panel", "analyte_raw"], how="semi", nulls_equal=True
    )
    picked = picked.sort(["source_sha256", "line_number", "analyte_raw"], maintain_order=True)
    return schema.conform(picked, loads.FOR_NORMALISATION)


row = st.tuples(
    st.integers(0, len(NAMES) - 1),
    st.integers(0, len(PLATFORMS) - 1),
    st.integers(0, len(PANELS) - 1),
    st.integers(0, len(ASSAY_TYPES) - 1),
    st.floats(-5, 20, allow_nan=False),
)
triple = st.tuples(st.sampled_from(PLATFORMS), st.sampled_from(PANELS), st.sampled_from([*NAMES, "not in any file"]))


@settings(max_examples=60, deadline=None)
@given(
    files=st.lists(st.lists(row, min_size=0, max_size=40), min_size=1, max_size=4),
    wanted=st.lists(triple, min_size=0, max_size=8),
    row_group=st.integers(1, 7),
)
def test_a_part_reads_the_rows_a_plain_filter_finds_in_file_hash_and_line_order(
    tmp_path_factory, files: list[list[tuple[int, int, int, int, float]]], wanted: list, row_group: int
) -> None:
    folder = tmp_path_factory.mktemp("raw")
    frames = [raw_rows(f"file{k}", rows) for k, rows in enumerate(files)]
    paths = []
    with mock.patch.object(loads, "RAW_ROW_GROUP", row_group):  # many row groups: the skipping is exercised
        for frame in frames:
            path = folder / f"{frame['source_sha256'][0] if frame.height else 'empty'}{len(paths)}.parquet"
            loads.write_raw_parquet(frame, path)
            paths.append(path)
    # the raw store's order: by content hash (loaded_raw_files)
    order = sorted(range(len(frames)), key=lambda k: hashlib.sha256(f"file{k}".encode()).hexdigest())
    keys = pl.DataFrame(wanted, schema={c: pl.String for c in ("platform", "panel", "analyte_raw")}, orient="row")
    got = loads.read_raw_part([str(paths[k]) for k in order], keys)
    assert got.to_dicts() == oracle(frames, keys).to_dicts()


def test_raw_files_keep_their_rows_by_name_in_row_groups_and_lose_none(tmp_path: Path) -> None:
    rows = [(k % len(NAMES), k % 2, k % 3, 1, float(k)) for k in range(100)]  # interleaved, as an export lists them
    frame = raw_rows("plate", rows)
    with mock.patch.object(loads, "RAW_ROW_GROUP", 16):
        loads.write_raw_parquet(frame, tmp_path / "plate.parquet")
    stored = pl.read_parquet(tmp_path / "plate.parquet")
    assert pq.ParquetFile(tmp_path / "plate.parquet").metadata.num_row_groups == 7  # 100 rows in groups of 16
    assert stored["analyte_raw"].cast(pl.String).is_sorted()  # by name (the statistics then bound each group)
    per_name = stored.group_by("analyte_raw", maintain_order=True).agg(pl.col("line_number").is_sorted())
    assert per_name["line_number"].all()  # and by line within a name
    assert stored.sort("line_number").select("line_number", "value").equals(frame.select("line_number", "value"))


def test_a_part_reads_raw_files_written_before_the_name_order_and_the_newer_columns(tmp_path: Path) -> None:
    """A warehouse's older raw files (rows in the export's order, one row group, without Olink's NGS columns) are
    read by the same filter; only the skipping of row groups is lost."""
    con = db.connect(tmp_path / "w.duckdb")
    rows = [(k % len(NAMES), 0, 1, 0, float(k)) for k in range(30)]
    for label in ("old", "new"):
        frame = raw_rows(label, rows).with_columns(pl.lit("ext_ctrl" if label == "new" else None).alias("assay_type"))
        frame = frame.with_columns(
            pl.when(pl.col("line_number") % 3 == 0).then(pl.lit("assay")).otherwise("assay_type").alias("assay_type")
        )
        loads.load_file(
            con,
            loads.LedgerEntry(
                hashlib.sha256(label.encode()).hexdigest(),
                f"{label}.csv",
                "tidy",
                10,
                30,
                30,
                0,
                "loaded",
                None,
                None,
                "run-1",
            ),
            rows=frame,
        )
    old = tmp_path / "raw" / f"{hashlib.sha256(b'old').hexdigest()}.parquet"
    as_before = raw_rows("old", rows).drop("assay_type", "read_count", "ext_npx", "pc_normalized_npx", "block")
    as_before.write_parquet(old)  # as an older release wrote it: export order, no NGS columns
    files = loads.loaded_raw_files(con)
    assert [Path(f).stem for f in files] == sorted(Path(f).stem for f in files)  # by content hash
    keys = pl.DataFrame({"platform": ["olink"] * 2, "panel": ["Inflammation"] * 2, "analyte_raw": ["IL6", "TNF"]})
    got = loads.read_raw_part(files, keys)
    new = pl.read_parquet(tmp_path / "raw" / f"{hashlib.sha256(b'new').hexdigest()}.parquet").with_columns(
        pl.col(pl.Enum, pl.Categorical).cast(pl.String)
    )
    expected = oracle([schema.conform(as_before, schema.MEASUREMENT), schema.conform(new, schema.MEASUREMENT)], keys)
    assert got.to_dicts() == expected.to_dicts()
    lines = [k + 2 for k in range(30) if NAMES[k % len(NAMES)] in ("IL6", "TNF")]
    of = got.group_by("source_file").agg("line_number")
    assert dict(of.iter_rows()) == {"old.csv": lines, "new.csv": [n for n in lines if n % 3 == 0]}  # assay rows only
    con.close()


def test_dictionary_coded_names_and_missing_names_are_ordered_as_text_with_the_missing_last(tmp_path: Path) -> None:
    """Olink Explore files come with their names dictionary-coded (Categorical): the raw file is in the names'
    text order all the same (row-group statistics compare text), a row without a name last."""
    names = ["TNF", None, "IL6", "CCL2", "IL6", None, "TNF", "CCL2", "IL10"]
    frame = schema.conform(
        pl.DataFrame(
            {
                "source_sha256": ["c" * 64] * len(names),
                "line_number": list(range(2, len(names) + 2)),
                "analyte_raw": pl.Series(names, dtype=pl.Categorical),
                "value": [float(k) for k in range(len(names))],
            }
        ),
        schema.MEASUREMENT,
        categorical_text=True,
    )
    loads.write_raw_parquet(frame, tmp_path / "cat.parquet")
    stored = pl.read_parquet(tmp_path / "cat.parquet").with_columns(pl.col("analyte_raw").cast(pl.String))
    assert stored.select("analyte_raw", "line_number").rows() == [
        ("CCL2", 5),
        ("CCL2", 9),
        ("IL10", 10),
        ("IL6", 4),
        ("IL6", 6),
        ("TNF", 2),
        ("TNF", 8),
        (None, 3),
        (None, 7),
    ]
