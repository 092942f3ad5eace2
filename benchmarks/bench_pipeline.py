"""End-to-end benchmark: a whole `refranges run` over N samples x M analytes, in process and on a local
Dask cluster, with seconds and rows/s per stage and the peak memory.

Run on demand:  .venv/bin/python benchmarks/bench_pipeline.py --samples 600 --analytes 30 [--runner both]

The data set is Olink-style: one NPX export per plate of 88 samples plus 2 control samples, a manifest
(80 % healthy), and an extra analyte dictionary for the M synthetic assays (setting
`analyte_dictionary_extra`). Each run is a fresh `refranges run` subprocess on a fresh home; its summary
(stage times) is read back from the warehouse. Peak memory is the largest sum of the resident sets of all
processes of the run (the run, Prefect's temporary server and, on Dask, the workers), sampled every 0.25 s.
The peer (issue 17) is one DuckDB SQL statement in its own process doing the irreducible core of the job: read
every export (`read_csv` over the landing glob), join the manifest, keep healthy study samples, and write per
analyte the count, `quantile_cont` at 0.025 / 0.5 / 0.975 and at the 99-point grid, to one Parquet file. Every
figure is printed with its ratio to the peer. After the first run, a second run over the same landing folder
(nothing new) is timed. A new home's Prefect database is copied from this machine's template once a run has
kept one (flows.serve.seed_prefect_database; the benchmark says which): for the figure of a first run on a
machine, give it an empty cache (REFRANGES_CACHE=$(mktemp -d)). `--warm-prefect` also times a first run on a
fresh home whose Prefect database already exists.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLATE = 88

#: The environment the benchmark was started with, for the runs it starts: polars writes its own allocator
#: options into os.environ when it loads (``_RJEM_MALLOC_CONF``), and a run started with them kept them as if
#: they were the user's, instead of refranges' own (flows.memory.POLARS_ALLOCATOR).
STARTED_WITH = dict(os.environ)


def make_home(home: Path, samples: int, analytes: int, seed: int = 3) -> int:
    """Write the landing folder and the extra dictionary; returns the number of export rows."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed)
    landing = home / "landing"
    landing.mkdir(parents=True)
    names = [f"BP{a:04d}" for a in range(analytes)]
    pl.DataFrame(
        {
            "hgnc": names,
            "uniprot": [f"Q{a:05d}" for a in range(analytes)],
            "label": [f"bench protein {a}" for a in range(analytes)],
            "mw_kda": [""] * analytes,
            "aliases": names,
        }
    ).write_csv(home / "bench_analytes.csv")
    ids = [f"S{i:07d}" for i in range(samples)]
    healthy = rng.random(samples) < 0.8
    sex = rng.choice(["F", "M"], samples)
    pl.DataFrame(
        {
            "sample_id": ids,
            "subject_id": [f"P{i:07d}" for i in range(samples)],
            "cohort": np.where(healthy, "healthy", "patient").tolist(),
            "matrix": "serum",
            "sex": sex.tolist(),
            "age": np.round(rng.uniform(18, 80, samples), 1),
            "collection_date": "2026-05-01",
            "severity": [None if h else str(int(v)) for h, v in zip(healthy, rng.uniform(5, 95, samples), strict=True)],
            "illness_duration_years": [
                None if h else f"{v:.1f}" for h, v in zip(healthy, rng.gamma(2, 3, samples), strict=True)
            ],
        }
    ).write_csv(landing / "manifest.csv")
    centre = rng.uniform(2, 10, analytes)
    sd = rng.uniform(0.5, 1.2, analytes)
    rows = 0
    for p in range(0, samples, PLATE):
        members = [*ids[p : p + PLATE], "CONTROL_SAMPLE_1", "CONTROL_SAMPLE_2"]
        k = len(members)
        plate_shift = rng.normal(0, 0.2, analytes)
        npx = centre[None, :] + sd[None, :] * rng.standard_normal((k, analytes)) + plate_shift[None, :]
        npx[-2:, :] = centre + 0.5 + plate_shift  # controls: the same material on every plate
        frame = pl.DataFrame(
            {
                "SampleID": np.repeat(members, analytes),
                "Index": np.repeat(np.arange(1, k + 1), analytes),
                "OlinkID": np.tile([f"OID{a:05d}" for a in range(analytes)], k),
                "UniProt": np.tile([f"Q{a:05d}" for a in range(analytes)], k),
                "Assay": np.tile(names, k),
                "MissingFreq": 0.01,
                "Panel": "Olink Explore (bench)",
                "Panel_Lot_Nr": "B00001",
                "PlateID": f"PLATE{p // PLATE + 1:04d}",
                "QC_Warning": "Pass",
                "LOD": np.tile(np.round(centre - 2.5 * sd, 4), k),
                "NPX": np.round(npx.ravel(), 5),
                "Normalization": "Intensity",
                "Assay_Warning": "Pass",
                "Sample_Type": np.repeat(["SAMPLE"] * (k - 2) + ["SAMPLE_CONTROL"] * 2, analytes),
            }
        )
        frame.write_csv(landing / f"olink_plate_{p // PLATE + 1:04d}.csv")
        rows += frame.height
    return rows


GRID = ", ".join(f"{k / 100:.2f}" for k in range(1, 100))
PEER_SQL = f"""
copy (
    select e.Assay as analyte, count(*) as n,
           quantile_cont(e.NPX, [0.025, 0.5, 0.975]) as limits,
           quantile_cont(e.NPX, [{GRID}]) as grid
    from read_csv('{{landing}}/olink_plate_*.csv') e
    join read_csv('{{landing}}/manifest.csv') m on e.SampleID = m.sample_id
    where m.cohort = 'healthy' and e.Sample_Type = 'SAMPLE'
    group by e.Assay
) to '{{out}}' (format parquet)
"""


def duckdb_peer(folder: str) -> None:
    import duckdb

    t0 = time.perf_counter()
    con = duckdb.connect()
    out = str(Path(folder).parent / "peer.parquet")
    con.execute(PEER_SQL.format(landing=folder, out=out))
    n = con.execute(f"select count(*) from read_parquet('{out}')").fetchall()[0][0]
    print(json.dumps({"seconds": time.perf_counter() - t0, "analytes": n}))


def group_rss_kb(pgid: int) -> tuple[int, int]:
    """Resident memory (kB) of every process in process group ``pgid`` together, and of its leader (the run's
    own process) alone (Linux /proc)."""
    total = leader = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # field 5 of stat: the process group
                kb = int(fields[21]) * (os.sysconf("SC_PAGE_SIZE") // 1024)  # field 24: rss in pages
                total += kb
                leader += kb if int(stat.parent.name) == pgid else 0
        except (OSError, IndexError, ValueError):
            continue
    return total, leader


def run(
    home: Path,
    runner: str,
    workers: int,
    memory_gb: float | None,
    trace_dir: Path | None = None,
    extra: list[str] | None = None,
) -> dict[str, object]:
    config = home / "refranges.toml"
    config.write_text(
        f'home = "{home}"\nsubject_key = "bench"\nrunner = "{runner}"\nworkers = {workers}\n'
        f'analyte_dictionary_extra = "{home / "bench_analytes.csv"}"\n' + "".join(f"{line}\n" for line in extra or [])
    )
    env = STARTED_WITH | {"PYTHONPATH": str(ROOT)}  # as a user starts `refranges run`

    def limit() -> None:
        if memory_gb:
            size = int(memory_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (size, size))

    t0 = time.perf_counter()
    log = home / "run.log"
    with open(log, "w") as log_file:  # a file, not a pipe: a helper process that outlives the run cannot block us
        process = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "run", "--config", str(config)],
            cwd=home,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=limit if memory_gb else None,  # sets a memory limit, nothing else
        )
        peak_kb = 0
        # (unix seconds, kB of all processes, kB of the run's own process): where in the run memory peaks, and
        # in which process (the rest is Prefect's temporary server and, on Dask, the workers)
        trace: list[tuple[float, int, int]] = []
        while process.poll() is None:  # sample the resident memory of all the run's processes together
            rss, own = group_rss_kb(process.pid)
            peak_kb = max(peak_kb, rss)
            trace.append((time.time(), rss, own))
            time.sleep(0.25)
        returncode = process.returncode
    seconds = time.perf_counter() - t0
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # anything the run left behind (e.g. a crashed run's server)
    done = subprocess.CompletedProcess(process.args, returncode, log.read_text(), "")
    out: dict[str, object] = {"runner": runner, "exit": done.returncode, "seconds": seconds, "peak_mb": peak_kb / 1024}
    if trace_dir:  # the memory trace and the run's log, to find the stage where memory peaks
        trace_dir.mkdir(parents=True, exist_ok=True)
        (trace_dir / f"memory-{runner}.csv").write_text(
            "unix_seconds,rss_kb,run_process_rss_kb\n" + "".join(f"{t:.2f},{kb},{own}\n" for t, kb, own in trace)
        )
        (trace_dir / f"run-{runner}.log").write_text(log.read_text())
    if done.returncode != 0:
        out["error"] = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return out
    import duckdb

    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    row = con.execute(
        "select summary_json, epoch(started_at) from runs order by started_at desc limit 1"
    ).fetchone()  # started_at is UTC
    assert row is not None, "the run recorded no summary"
    summary = json.loads(row[0])
    con.close()
    out["stages"] = summary["stage_seconds"]
    # peak memory per stage: the stages run one after the other from the run's start
    begin, peaks = float(row[1]), {}
    for name, secs in summary["stage_seconds"].items():
        peaks[name] = max((kb for t, kb, _ in trace if begin <= t < begin + secs), default=0) / 1024
        begin += secs
    peaks["before and after the stages"] = (
        max((kb for t, kb, _ in trace if t < float(row[1]) or t >= begin), default=0) / 1024
    )
    out["stage_peak_mb"] = peaks
    out["rows_read"] = sum(f["rows_read"] for f in summary["files"])
    out["normalised_rows"] = summary["normalised_rows"]
    out["groups"] = summary["groups_published"]
    out["parts"] = summary.get("parts", {})
    return out


def prefect_database_origin() -> str:
    """How the next new home gets its Prefect database (flows.serve.seed_prefect_database). For the figure of
    a first run on a machine, give the benchmark an empty cache: REFRANGES_CACHE=$(mktemp -d)."""
    sys.path.insert(0, str(ROOT))
    from flows.config import default_cache
    from flows.serve import prefect_template

    cache = Path(os.environ["REFRANGES_CACHE"]) if os.environ.get("REFRANGES_CACHE") else default_cache()
    if cache is not None and prefect_template(cache).is_file():
        return f"copied from this machine's template ({prefect_template(cache)})"
    return "built by Prefect's migrations (no template on this machine yet: this run keeps one)"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=600)
    parser.add_argument("--analytes", type=int, default=30)
    parser.add_argument("--runner", choices=["local", "dask", "both"], default="both")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-gb", type=float, default=None, help="address-space limit per run process")
    parser.add_argument(
        "--set", action="append", default=[], help="a configuration line, e.g. --set 'duckdb_memory_limit = \"1GB\"'"
    )
    parser.add_argument("--trace-dir", type=Path, help="write each run's memory trace (every 0.25 s) and log here")
    parser.add_argument("--warm-prefect", action="store_true", help="also a fresh home on an existing Prefect DB")
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        duckdb_peer(args.peer)
        return
    with tempfile.TemporaryDirectory(prefix="refranges-bench-") as tmp:
        source = Path(tmp) / "source"
        t0 = time.perf_counter()
        rows = make_home(source, args.samples, args.analytes)
        print(
            f"{args.samples:,} samples x {args.analytes:,} analytes: {rows:,} export rows in "
            f"{len(list((source / 'landing').glob('*.csv')))} files (generated in {time.perf_counter() - t0:.0f} s)"
        )
        out = subprocess.run(
            [sys.executable, __file__, "--peer", str(source / "landing")], capture_output=True, text=True, check=True
        )
        peer = float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])
        print(f"peer: one DuckDB statement (read, join, filter, 3 limits + 99-point grid per analyte): {peer:.1f} s")

        def ratio(seconds: float) -> str:
            return f"{seconds:.1f} s ({seconds / peer:.1f}x the peer)"

        runners = ["local", "dask"] if args.runner == "both" else [args.runner]
        for runner in runners:
            home = Path(tmp) / runner
            subprocess.run(["cp", "-r", str(source), str(home)], check=True)
            print(f"  {runner}: the new home's Prefect database is {prefect_database_origin()}")
            result = run(home, runner, args.workers, args.memory_gb, args.trace_dir, args.set)
            if result["exit"] != 0:
                print(f"{runner}: FAILED after {result['seconds']:.0f} s (exit {result['exit']}): {result['error']}")
                continue
            stages = result["stages"]
            assert isinstance(stages, dict)
            rows_of = {"ingest": result["rows_read"]}
            rows_per = {n: int(rows_of.get(n, result["normalised_rows"])) / max(s, 1e-9) for n, s in stages.items()}  # type: ignore[call-overload]
            parts = ", ".join(f"{n} {ratio(s)}, {rows_per[n] / 1e3:,.0f} k rows/s" for n, s in stages.items())
            peak = result["peak_mb"]
            seconds = float(result["seconds"])  # type: ignore[arg-type]
            print(
                f"{runner}: {ratio(seconds)} end to end (target 10x), peak {peak:,.0f} MB (all processes of the run), "
                f"{result['groups']} groups published; {parts}; parts per stage {result['parts']}"
            )
            outside = seconds - sum(stages.values())
            print(f"  outside the stages (start: Prefect server, imports; end: stop): {ratio(outside)}")
            stage_peaks = result["stage_peak_mb"]
            assert isinstance(stage_peaks, dict)
            print("  peak per stage: " + ", ".join(f"{k} {v:,.0f} MB" for k, v in stage_peaks.items()))
            again = run(home, runner, args.workers, args.memory_gb, None, args.set)
            print(f"  a second run, nothing new (target 10 s): {float(again['seconds']):.1f} s")  # type: ignore[arg-type]
            if args.warm_prefect:
                warm = Path(tmp) / f"{runner}-warm"
                subprocess.run(["cp", "-r", str(source), str(warm)], check=True)
                line = f'prefect_home = "{home / ".prefect"}"'
                done = run(warm, runner, args.workers, args.memory_gb, None, [*args.set, line])
                print(f"  a fresh home on an existing Prefect database: {ratio(float(done['seconds']))}")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
