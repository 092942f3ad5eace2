"""Ingest benchmark: parse + check + load of a large Olink-style NPX export, beside a bare polars read.

Run on demand (not by CI):
    .venv/bin/python benchmarks/bench_ingest.py [--rows 10000000]                 # Target-style CSV
    .venv/bin/python benchmarks/bench_ingest.py --explore-ht [--rows 20000000]     # Explore HT NPX Parquet

Each measurement runs in its own process so that peak RSS (ru_maxrss) belongs to that step alone.
Targets: parse + load of the CSV within 3x of a bare ``polars.read_csv`` of the same file; of the Explore HT
Parquet file (5,420 assays plus internal controls, Olink metadata) within 2x of a bare ``polars.read_parquet``.
The Great Expectations report of the same checks, which a run's parse task also makes, is timed after the
load and printed beside (the ingest step's peak includes it).
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


def make_export(path: Path, rows: int) -> None:
    import numpy as np
    import polars as pl

    n_assays = 100
    n_samples = rows // n_assays
    rng = np.random.default_rng(1)
    sample = np.repeat(np.arange(n_samples), n_assays)
    assay = np.tile(np.arange(n_assays), n_samples)
    names = ["IL6", "TNF", "IFN-gamma", "IL10", "IL8"]
    df = pl.DataFrame({"s": sample, "a": assay}).select(
        pl.col("s").cast(pl.String).str.zfill(7).alias("SampleID"),
        (pl.col("s") % 88 + 1).alias("Index"),
        (pl.lit("OID") + pl.col("a").cast(pl.String).str.zfill(5)).alias("OlinkID"),
        pl.lit("P05231").alias("UniProt"),
        pl.col("a")
        .replace_strict(
            dict(enumerate(names)), default=pl.lit("assay") + pl.col("a").cast(pl.String), return_dtype=pl.String
        )
        .alias("Assay"),
        pl.lit(0.02).alias("MissingFreq"),
        pl.lit("Olink Explore").alias("Panel"),
        pl.lit("B04414").alias("Panel_Lot_Nr"),
        (pl.lit("PLATE") + (pl.col("s") // 88).cast(pl.String)).alias("PlateID"),
        pl.lit("Pass").alias("QC_Warning"),
        pl.lit(0.5).alias("LOD"),
        pl.Series("NPX", rng.normal(3, 1, size=sample.size).round(5)),
        pl.lit("Intensity").alias("Normalization"),
        pl.lit("Pass").alias("Assay_Warning"),
    )
    df.write_csv(path)


EXPLORE_HT_ASSAYS = 5420  # Olink Explore HT's panel; each sample also has 24 internal-control rows


def make_explore_ht(path: Path, rows: int) -> None:
    from transforms.demo_explore import BLOCKS, INTERNAL, generate_explore

    per_sample = EXPLORE_HT_ASSAYS + BLOCKS * len(INTERNAL)
    n = max(2, round(rows / per_sample * 88 / 96))  # 8 control wells per plate of 88 samples
    demo = generate_explore(seed=1, n_healthy=n, n_patients=0, n_assays=EXPLORE_HT_ASSAYS)
    path.write_bytes(demo.files["explore_ht_npx.parquet"])


def step(kind: str, path: str) -> None:
    if kind != "bare":  # as a run: the flows package sets polars' allocator before polars loads (flows.memory)
        import flows  # noqa: F401
    import polars as pl

    if kind == "bare":
        t0 = time.perf_counter()
        if path.endswith(".parquet"):
            rows = pl.read_parquet(path).height
        else:
            rows = pl.read_csv(path, infer_schema=False).height
    else:
        from expectations.runner import preload_gx
        from flows.config import load_settings
        from flows.pipeline import gx_checks, gx_results, plan_file
        from warehouse import db, loads

        preload_gx()
        t0 = time.perf_counter()  # imports excluded: they are paid once per process, not per file
        data = Path(path).read_bytes()
        with tempfile.TemporaryDirectory() as tmp:
            settings = load_settings(env={}, home=Path(tmp), subject_key="bench")
            plan = plan_file(data, Path(path).name, settings, set(), b"bench")
            t_parse = time.perf_counter() - t0
            o = plan.outcome
            entry = o.ledger_entry(size_bytes=len(data), archive_path=None, run_id="bench")
            assert settings.warehouse is not None
            with db.connect(settings.warehouse) as con:
                loads.load_file(con, entry, rows=plan.rows, quarantine=plan.quarantine, handling=plan.handling)
            rows = o.rows_read
            seconds = time.perf_counter() - t0
            # what a run's parse task also does with the file: Great Expectations' report of the same checks
            t_gx = time.perf_counter()
            gx_results(settings, gx_checks(plan))
            t_gx = time.perf_counter() - t_gx
    if kind == "bare":
        seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"kind": kind, "rows": rows, "seconds": seconds, "peak_mb": peak_mb}
    if kind == "ingest":
        out["parse_seconds"] = t_parse
        out["gx_seconds"] = t_gx
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--step", choices=["bare", "ingest"])
    parser.add_argument("--file")
    parser.add_argument("--make")
    parser.add_argument("--explore-ht", action="store_true", help="an Olink Explore HT NPX Parquet file")
    args = parser.parse_args()
    if args.make:
        (make_explore_ht if args.make.endswith(".parquet") else make_export)(Path(args.make), args.rows)
        return
    if args.step:
        step(args.step, args.file)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("explore_ht_npx_bench.parquet" if args.explore_ht else "olink_npx_bench.csv")
        t0 = time.perf_counter()
        # in a child process: ru_maxrss survives fork and exec, so a big parent would inflate every step's peak
        subprocess.run([sys.executable, __file__, "--make", str(path), "--rows", str(args.rows)], check=True, cwd=ROOT)
        size_mb = path.stat().st_size / 1e6
        print(f"generated {path.name} ({size_mb:,.0f} MB) in {time.perf_counter() - t0:.1f} s")
        results = {}
        for kind in ("bare", "ingest"):
            out = subprocess.run(
                [sys.executable, __file__, "--step", kind, "--file", str(path)],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            )
            results[kind] = json.loads(out.stdout.strip().splitlines()[-1])
    bare, ingest = results["bare"], results["ingest"]
    peer, target = ("polars.read_parquet", 2) if args.explore_ht else ("polars.read_csv", 3)
    print(f"{bare['rows']:,} rows")
    print(f"{'step':<34}{'seconds':>10}{'rows/s':>14}{'peak MB':>10}")
    print(
        f"{peer + ' (peer, bare)':<34}{bare['seconds']:>10.2f}{bare['rows'] / bare['seconds']:>14,.0f}"
        f"{bare['peak_mb']:>10,.0f}"
    )
    print(
        f"{'refranges parse + checks':<34}{ingest['parse_seconds']:>10.2f}"
        f"{ingest['rows'] / ingest['parse_seconds']:>14,.0f}{'':>10}"
    )
    print(
        f"{'refranges parse + checks + load':<34}{ingest['seconds']:>10.2f}{ingest['rows'] / ingest['seconds']:>14,.0f}"
        f"{ingest['peak_mb']:>10,.0f}"
    )
    print(f"{'Great Expectations report (also)':<34}{ingest['gx_seconds']:>10.2f}")
    print(f"ratio to bare {peer}: {ingest['seconds'] / bare['seconds']:.1f}x (target <= {target}x)")
    whole = ingest["seconds"] + ingest["gx_seconds"]
    print(f"with the GX report, as a run's parse task: {whole:.2f} s, {whole / bare['seconds']:.1f}x")


if __name__ == "__main__":
    main()
