"""Write the golden release tables of tests/flows/test_pipeline.py's first run (the demo of seed 5).

The intervals, quantiles and cohort comparisons in this folder were made by the code before the whole-run
speed work (commit 19991a1), so the test shows that the faster code publishes the same numbers to the last
bit. retest_variation.csv was remade once sums of floats there got a fixed order (commit after 19991a1):
before, two runs of 19991a1 on the same inputs differed in the 16th digit of some SDs. To remake them from a checkout
of some commit (only when a change is meant to move published numbers; say so in the CHANGELOG):

    PYTHONPATH=<checkout> .venv/bin/python tests/golden/release/make_release_golden.py tests/golden/release
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import polars as pl

TABLES = ("reference_intervals", "reference_quantiles", "cohort_comparison", "retest_variation")


def release_tables(folder: Path) -> dict[str, pl.DataFrame]:
    """A release's tables in a canonical row order (every column, nulls first)."""
    out = {}
    for name in TABLES:
        frame = pl.read_parquet(folder / f"{name}.parquet")
        out[name] = frame.sort(frame.columns, nulls_last=False)
    return out


def main(target: Path) -> None:
    from prefect.testing.utilities import prefect_test_harness

    from flows.config import load_settings
    from flows.landing import copy_demo
    from flows.pipeline import run_pipeline
    from transforms.demo import generate_demo

    with tempfile.TemporaryDirectory() as tmp, prefect_test_harness(server_startup_timeout=120):
        settings = load_settings(env={}, home=Path(tmp), subject_key="test-key", rcv_min_subjects=15)
        copy_demo(generate_demo(seed=5, n_healthy=200, n_patients=40).files, settings.landing)
        (settings.landing / "empty_export.csv").write_bytes(b"")
        summary = run_pipeline(settings)
        assert settings.releases is not None and summary.release_version is not None
        for name, frame in release_tables(settings.releases / summary.release_version).items():
            frame.write_csv(target / f"{name}.csv")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
