"""Reference-building benchmark: every group for N healthy samples x M analytes, beside a bare DuckDB
`quantile_cont` group-by over the same Parquet file in the same run.

Run on demand:  .venv/bin/python benchmarks/bench_reference.py [--samples 10000] [--analytes 3000]

Each step runs in its own process (peak RSS = ru_maxrss; the clock starts after the imports). Target
(reference issue): within 2x of the bare query. Two more lines give context: DuckDB computing the
quantile grid too, and the floor of any exact build in polars (read, group, sort, nothing else).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


KINDS = {
    "duckdb": "DuckDB quantile_cont group-by, 3 quantiles (peer, bare)",
    "duckdb-grid": "DuckDB quantile_cont group-by, the 99-point grid + limits",
    "sort-only": "polars: read, group by the keys, sort each group (no stats)",
    "refranges": "refranges build_reference (every group: limits, CIs, grid)",
}


def make_parquet(path: Path, samples: int, analytes: int) -> None:
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(5)
    n = samples * analytes
    log_value = rng.normal(1.0, 0.6, n)
    pl.DataFrame(
        {
            "sample_id": np.repeat([f"S{i:06d}" for i in range(samples)], analytes),
            "analyte": np.tile([f"A{a:04d}" for a in range(analytes)], samples),
            "log_value": log_value,
            "sex": np.repeat(np.where(np.arange(samples) % 2 == 0, "F", "M"), analytes),
            "age": np.repeat(rng.uniform(18, 80, samples), analytes),
        }
    ).with_columns(
        pl.col("log_value").exp().alias("value"),
        pl.lit("P00000").alias("uniprot"),
        pl.lit("bench").alias("platform"),
        pl.lit("panel").alias("panel"),
        pl.lit("serum").alias("matrix"),
        pl.lit("pg/mL").alias("unit"),
        pl.lit(None, pl.String).alias("censoring"),
        pl.lit(None, pl.Float64).alias("limit_value"),
        pl.lit(None, pl.Float64).alias("lod"),
    ).write_parquet(path)


def step(kind: str, path: str) -> None:
    """One timed step; the clock starts after the imports (interpreter start-up is not building)."""
    import duckdb
    import polars as pl

    from transforms.reference import KEYS, build_reference

    t0 = time.perf_counter()
    if kind in ("duckdb", "duckdb-grid"):
        con = duckdb.connect()
        probabilities = [0.025, 0.5, 0.975] + ([p / 100 for p in range(1, 100)] if kind == "duckdb-grid" else [])
        rows = con.execute(
            "select analyte, quantile_cont(value::double, ?) from read_parquet(?) group by analyte",
            [probabilities, path],
        ).fetchall()
        groups = len(rows)
    elif kind == "sort-only":  # the floor of an exact build in polars: read, group and sort, no statistics
        frame = pl.read_parquet(path)
        # hashing only the key columns that vary, as build_reference does (here: the analyte)
        same = frame.select(pl.col(k).eq_missing(pl.col(k).first()).all() for k in KEYS).row(0)
        varying = [k for k, constant in zip(KEYS, same, strict=True) if not constant] or KEYS[:1]
        keyed = frame.select(pl.struct(varying).hash(seed=0).alias("_h"), "value")
        sorted_groups = keyed.group_by("_h").agg(pl.col("value").sort())
        groups = sorted_groups.height
    else:
        frame = pl.read_parquet(path)
        build = build_reference(frame, age_bands=[45.0])
        groups = build.intervals.height
    print(
        json.dumps(
            {
                "kind": kind,
                "groups": groups,
                "seconds": time.perf_counter() - t0,
                "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--analytes", type=int, default=3_000)
    parser.add_argument("--step")
    parser.add_argument("--make")
    parser.add_argument("--file")
    args = parser.parse_args()
    if args.make:
        make_parquet(Path(args.make), args.samples, args.analytes)
        return
    if args.step:
        step(args.step, args.file)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "healthy.parquet"
        # in a child process: ru_maxrss survives fork and exec, so a big parent would inflate every step's peak
        size = ["--samples", str(args.samples), "--analytes", str(args.analytes)]
        subprocess.run(
            [sys.executable, __file__, "--make", str(path), *size],
            check=True,
            cwd=ROOT,
        )
        print(
            f"{args.samples:,} healthy samples x {args.analytes:,} analytes = {args.samples * args.analytes:,} values"
        )
        results = {}
        for kind in KINDS:
            out = subprocess.run(
                [sys.executable, __file__, "--step", kind, "--file", str(path)],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            )
            results[kind] = json.loads(out.stdout.strip().splitlines()[-1])
    d, r = results["duckdb"], results["refranges"]
    print(f"{'step':<58}{'groups':>8}{'seconds':>10}{'peak MB':>10}")
    for kind, label in KINDS.items():
        x = results[kind]
        print(f"{label:<58}{x['groups']:>8}{x['seconds']:>10.1f}{x['peak_mb']:>10,.0f}")
    print(f"ratio: {r['seconds'] / d['seconds']:.1f}x the bare query (target <= 2x)")


if __name__ == "__main__":
    main()
