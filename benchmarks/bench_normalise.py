"""Normalisation benchmark: plate-control, bridge and ComBat correction of a large long frame.

Run on demand:  .venv/bin/python benchmarks/bench_normalise.py [--samples 5000] [--analytes 3000] [--batches 20]

Each method runs in its own process (peak RSS = ru_maxrss of that process). The peer figure printed beside
is numpy's own time for one pass of the ComBat core (combat_matrix) on the same matrix, so the frame
handling around it is visible.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_frame(samples: int, analytes: int, batches: int):
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(3)
    per_batch = samples // batches
    sample_batch = np.repeat(np.arange(batches), per_batch)
    ids = np.array([f"S{i:06d}" for i in range(sample_batch.size)])
    effect = rng.normal(0, 0.3, size=(batches, analytes))
    level = rng.normal(5, 1, size=(sample_batch.size, analytes))
    values = level + effect[sample_batch]
    frame = pl.DataFrame(
        {
            "sample_id": np.repeat(ids, analytes),
            "batch": np.repeat([f"B{b:02d}" for b in sample_batch], analytes),
            "analyte": np.tile([f"A{a:04d}" for a in range(analytes)], sample_batch.size),
            "log_value": values.ravel(),
        }
    )
    # two control samples per batch, and five bridge people measured in every batch
    controls = pl.DataFrame(
        {
            "sample_id": np.repeat([f"CTRL{c}" for c in range(2)], batches * analytes),
            "batch": np.tile(np.repeat([f"B{b:02d}" for b in range(batches)], analytes), 2),
            "analyte": np.tile([f"A{a:04d}" for a in range(analytes)], 2 * batches),
            "log_value": (
                5
                + effect[np.tile(np.repeat(np.arange(batches), analytes), 2), np.tile(np.arange(analytes), 2 * batches)]
                + rng.normal(0, 0.05, 2 * batches * analytes)
            ),
        }
    ).with_columns(pl.lit("control").alias("sample_type"))
    frame = frame.with_columns(
        pl.when(pl.col("sample_id").str.slice(1).cast(pl.Int64) % per_batch < 5)
        .then(pl.lit("bridge"))
        .otherwise(pl.lit("sample"))
        .alias("sample_type")
    )
    frame = pl.concat([frame, controls])
    n = frame.height
    return frame.with_columns(
        pl.lit("bench").alias("platform"),
        pl.lit("panel").alias("panel"),
        pl.lit("NPX").alias("unit"),
        pl.col("batch").alias("plate_id"),
        pl.lit(None, pl.Float64).alias("log_limit"),
        pl.lit(None, pl.Float64).alias("log_lod"),
        pl.lit(None, pl.String).alias("censoring"),
        (pl.int_range(n) % 2).cast(pl.String).alias("cohort"),
        (pl.int_range(n) % 3).cast(pl.String).alias("__sex"),
        (20 + pl.int_range(n) % 50).cast(pl.Float64).alias("__age"),
    )


def step(method: str, samples: int, analytes: int, batches: int) -> None:
    from transforms.normalise import correct_batches

    frame = make_frame(samples, analytes, batches)
    t0 = time.perf_counter()
    if method == "numpy_combat_core":
        import numpy as np

        from transforms.batches import combat_matrix

        study = frame.filter(frame["sample_type"] != "control").sort("sample_id", "analyte")
        mat = study["log_value"].to_numpy().reshape(-1, analytes).T
        batch = study.unique("sample_id", maintain_order=True)["batch"].to_numpy()
        t0 = time.perf_counter()
        combat_matrix(mat, batch, np.zeros((batch.size, 0)))
    else:
        correct_batches(frame, {"bench": method})
    seconds = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "method": method,
                "rows": frame.height,
                "seconds": seconds,
                "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--analytes", type=int, default=3000)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--step")
    args = parser.parse_args()
    if args.step:
        step(args.step, args.samples, args.analytes, args.batches)
        return
    print(f"{args.samples:,} samples x {args.analytes:,} analytes x {args.batches} batches")
    print(f"{'method':<28}{'rows':>14}{'seconds':>10}{'peak MB':>10}")
    for method in ("plate_control", "bridge", "combat", "numpy_combat_core"):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--step",
                method,
                "--samples",
                str(args.samples),
                "--analytes",
                str(args.analytes),
                "--batches",
                str(args.batches),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        if out.returncode:
            print(f"{method:<28} failed: {out.stderr.strip().splitlines()[-1]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        label = "numpy ComBat core (peer)" if method == "numpy_combat_core" else method
        print(f"{label:<28}{r['rows']:>14,}{r['seconds']:>10.1f}{r['peak_mb']:>10,.0f}")


if __name__ == "__main__":
    main()
