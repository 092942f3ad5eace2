"""Scale-out: the same run on a Dask LocalCluster of two worker processes publishes the same release."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flows.config import load_settings, task_runner
from flows.landing import copy_demo
from transforms.demo import generate_demo
from warehouse import releases


def test_the_runner_comes_from_configuration() -> None:
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    local = task_runner(load_settings(env={}, workers=3))
    assert isinstance(local, ThreadPoolTaskRunner) and local._max_workers == 3
    remote = task_runner(load_settings(env={}, runner="dask", dask_address="tcp://127.0.0.1:8786"))
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://127.0.0.1:8786"
    cluster = task_runner(load_settings(env={"REFRANGES_RUNNER": "dask", "REFRANGES_WORKERS": "2"}))
    assert cluster.cluster_kwargs["n_workers"] == 2 and cluster.cluster_kwargs["processes"] is True


@pytest.mark.slow
def test_a_dask_run_publishes_a_release_byte_identical_to_an_in_process_run(tmp_path: Path, prefect_backend) -> None:
    from flows.pipeline import on_runner, run_pipeline

    demo = generate_demo(seed=6, n_healthy=150, n_patients=30)
    checksums = {}
    # in process in one part of everything; on the cluster in many small parts by analyte
    for runner, rows in (("local", 2_000_000), ("dask", 800)):
        settings = load_settings(
            env={}, home=tmp_path / runner, subject_key="k", runner=runner, workers=2, partition_rows=rows
        )
        copy_demo(demo.files, settings.landing)
        summary = on_runner(run_pipeline, settings)(settings)
        assert summary.release_version is not None, runner
        manifest = releases.read_manifest(settings.releases, summary.release_version)
        checksums[runner] = {name: meta["sha256"] for name, meta in manifest["files"].items()}
        assert sum(f.status == "loaded" for f in summary.files) == len(demo.files)
        many = runner == "dask"
        assert (summary.parts["normalise"] > 3, summary.parts["reference"] > 3) == (many, many), summary.parts
        parsed_by = {f.parsed_by.rsplit(":", 1)[1] for f in summary.files}  # type: ignore[union-attr]
        here = str(os.getpid())
        # in process, every file is parsed here; on the cluster, by the two worker processes only
        assert parsed_by == {here} if runner == "local" else (here not in parsed_by and 1 <= len(parsed_by) <= 2)
    assert checksums["local"] == checksums["dask"]
    assert {"reference_intervals.parquet", "reference_quantiles.parquet", "report.html"} <= set(checksums["dask"])
