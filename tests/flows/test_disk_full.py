"""A full disk while a release is written leaves the old state (a size-limited tmpfs; skipped where the machine
cannot mount one, e.g. without root)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from flows.config import load_settings
from flows.landing import copy_demo
from transforms.demo import generate_demo
from warehouse import releases


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MB tmpfs mounted at tmp_path/disk, unmounted afterwards."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a size-limited file system needs Linux and root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` until ``leave`` bytes are free; returns the filler file."""
    filler = disk / "filler.bin"
    free = shutil.disk_usage(disk).free - leave
    with filler.open("wb") as fh:
        fh.write(b"\0" * max(free, 0))
    return filler


def _tables(rows: int, seed: int) -> dict[str, pl.DataFrame]:
    values = np.random.default_rng(seed).normal(size=rows)  # random: Parquet cannot squeeze it below 8 B a row
    return {"bulk": pl.DataFrame({"group_id": np.arange(rows), "lower": values})}


def _publish(root: Path, tables: dict[str, pl.DataFrame]) -> releases.Published:
    return releases.publish(
        root,
        tables=tables,
        created_at=datetime(2026, 12, 3, 12, 0, 0),
        parameters={},
        inputs=[],
        input_fingerprint=str(sum(t.height for t in tables.values())),
        code_version="test",
    )


def test_a_full_disk_while_a_release_is_written_lists_nothing_new_and_gives_the_space_back(small_disk: Path) -> None:
    root = small_disk / "releases"
    first = _publish(root, _tables(1_000, seed=1))
    free_before = shutil.disk_usage(small_disk).free
    with pytest.raises(OSError, match="No space left"):
        _publish(root, _tables(1_000_000, seed=2))  # about 8 MB: does not fit in 3 MB
    assert [r["version"] for r in releases.read_index(root)] == [first.version]
    assert releases.verify(root, first.version) == []
    assert sorted(p.name for p in root.iterdir()) == [first.version, "index.json"]  # no staging, no temp file
    assert shutil.disk_usage(small_disk).free == free_before  # the half-written files were removed

    filler = _fill(small_disk, leave=200)  # now the index itself cannot be rewritten
    second_tables = _tables(10, seed=3)
    with pytest.raises(OSError, match="No space left"):
        _publish(root, second_tables)
    assert [r["version"] for r in releases.read_index(root)] == [first.version]  # the old index, whole
    assert not list(root.glob(".*"))

    filler.unlink()  # space again: the next publish works and takes the next free name
    second = _publish(root, second_tables)
    assert next(r["version"] for r in releases.read_index(root)) == first.version
    assert releases.verify(root, second.version) == []


def test_a_run_whose_release_disk_is_full_fails_with_the_reason_and_changes_nothing(
    small_disk: Path, tmp_path: Path, prefect_backend
) -> None:
    from prefect.settings import PREFECT_API_URL
    from typer.testing import CliRunner

    from flows.cli import app
    from flows.pipeline import run_pipeline

    home = tmp_path / "home"
    demo = generate_demo(seed=4, n_healthy=60, n_patients=10)
    first, later = dict(list(demo.files.items())[:-1]), dict(list(demo.files.items())[-1:])
    settings = load_settings(env={}, home=home, subject_key="k", releases=small_disk / "releases")
    copy_demo(first, settings.landing)
    assert run_pipeline(settings).release_version is not None
    before = _state(settings)
    copy_demo(later, settings.landing)  # new data: the next run builds a new release
    filler = _fill(small_disk, leave=20_000)

    config = tmp_path / "refranges.toml"
    config.write_text(f'home = "{home}"\nsubject_key = "k"\nreleases = "{small_disk / "releases"}"\n')
    result = CliRunner().invoke(app, ["run", "--config", str(config)], env={"PREFECT_API_URL": PREFECT_API_URL.value()})
    assert result.exit_code == 1, result.output
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: the run stopped: No space left on device (") and "Nothing was changed" in message
    assert "Traceback" not in result.output
    assert _state(settings) == before  # the warehouse as it was, the old release listed and whole
    assert not [p for p in settings.releases.iterdir() if p.name.startswith(".")]  # no staging, no temp file

    filler.unlink()
    summary = run_pipeline(settings)  # with space again the same run goes through
    assert summary.release_version is not None and _state(settings)["files"] > before["files"]


def _state(settings) -> dict[str, object]:
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        files = con.sql("select count(*) from files").fetchall()[0][0]
        recorded = [r[0] for r in con.sql("select version from releases").fetchall()]
    finally:
        con.close()
    listed = [r["version"] for r in releases.read_index(settings.releases)]
    problems = [releases.verify(settings.releases, v) for v in listed]
    return {"files": files, "recorded": recorded, "listed": listed, "problems": problems}
