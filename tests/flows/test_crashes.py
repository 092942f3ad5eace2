"""Faults at every step: a run killed with SIGKILL at each stage boundary and inside each stage, then run again.

One home (move mode, so that the landing folder changes too) goes through the kill points of
``crash_driver.POINTS`` in the order a run reaches them, each killed run followed by the checks a user would
make: the warehouse opens, every listed release verifies, every ledger row balances, no export is lost, the
lock is free. A last run without a kill must then finish what the killed runs started: every file loaded
once, the landing folder emptied, and the release a killed run published registered (not published twice).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import polars as pl
import pytest

from flows.config import load_settings
from flows.landing import copy_demo
from tests.processes import processes_with_env
from transforms.demo import generate_demo
from warehouse import db, releases

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("crash_driver.py")


def _points() -> list[str]:
    spec = importlib.util.spec_from_file_location("crash_driver", DRIVER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.POINTS)


POINTS = _points()  # in the order a run reaches them
#: what the suite runs (two chains of four, about 85 s): inside every stage, every publishing step and the
#: swap; REFRANGES_CRASH_POINTS=all adds the stage boundaries, whose state equals the next stage's inside
SUITE_POINTS = [
    "ingest: one file loaded, the next not yet",
    "normalise: inside a part",
    "reference: inside a part",
    "publish: release files staged and verified",
    "publish: folder in place, index not yet written",
    "publish: listed, not yet recorded in the warehouse",
    "swap: copy checkpointed, not yet swapped",
    "swap: swapped, lock still held",
]
assert set(SUITE_POINTS) <= set(POINTS)


def _env(api_url: str | None, prefect_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PYTHONPATH=str(ROOT), PREFECT_HOME=str(prefect_home))
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def _run(point: str, config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(DRIVER), point, "--config", str(config)],
        cwd=config.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_consistent(settings, exports: dict[str, bytes], when: str) -> dict[str, object]:
    """What a user checks after a crash; returns the state for the caller's own assertions."""
    assert settings.warehouse is not None and settings.releases is not None and settings.landing is not None
    with db.writer_lock(settings.warehouse, wait_seconds=0):  # the killed run's lock went with it
        pass
    listed = [r["version"] for r in releases.read_index(settings.releases)]
    for version in listed:  # no half release is listed
        assert releases.verify(settings.releases, version) == [], (when, version)
    state: dict[str, object] = {"listed": listed}
    if not settings.warehouse.exists():  # killed before the first swap: nothing was ever committed
        files = pl.DataFrame(schema={"sha256": pl.String, "status": pl.String})
        state |= {"files": files, "recorded": [], "running": 0}
    else:
        con = duckdb.connect(str(settings.warehouse), read_only=True)
        try:
            files = con.sql("select * from files").pl()
            unbalanced = files.filter(pl.col("rows_read") != pl.col("rows_loaded") + pl.col("rows_quarantined"))
            assert unbalanced.height == 0, (when, unbalanced)
            loaded = files.filter(pl.col("status") == "loaded")["rows_loaded"].sum() or 0
            samples = con.sql("select count(*) from samples").fetchall()[0][0]
            raw = con.sql("select count(*) from raw_measurements").fetchall()[0][0]  # every raw file readable
            assert raw + samples == loaded, when
            recorded = [r[0] for r in con.sql("select version from releases order by version").fetchall()]
            assert set(recorded) <= set(listed), when
            running = con.sql("select count(*) from runs where status = 'running'").fetchall()[0][0]
        finally:
            con.close()
        state |= {"files": files, "recorded": recorded, "running": running}
    in_landing = {_sha(p.read_bytes()) for p in settings.landing.iterdir()}
    held = set(files["sha256"].to_list())
    lost = [name for name, data in exports.items() if _sha(data) not in in_landing | held]
    assert lost == [], f"{when}: exports neither in the landing folder nor in the warehouse: {lost}"
    return state


def _home(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """A small home in move mode: the manifest and the Olink exports of a demo (3 files)."""
    home = tmp_path / "home"
    files = generate_demo(seed=4, n_healthy=60, n_patients=10).files
    copy_demo({name: data for name, data in files.items() if not name.startswith("msd")}, home / "landing")
    config = tmp_path / "refranges.toml"
    config.write_text(f'home = "{home}"\nsubject_key = "k"\nlanding_mode = "move"\n')
    return config, {p.name: p.read_bytes() for p in (home / "landing").iterdir()}


def _chain(tmp_path: Path, points: list[str], api_url: str) -> tuple[object, dict[str, object], str | None]:
    """Kill one run at each point in turn on one home, checking after each kill; then one run without a kill.
    Returns the settings, the state after the last run and the release a killed run published (if any)."""
    config, exports = _home(tmp_path)
    settings = load_settings(config)
    shared = _env(api_url, tmp_path / "prefect")  # the session's test server: no start-up cost
    published = None
    for number, point in enumerate(points):
        own = tmp_path / "prefect-own"
        own_server = number == 0  # the first run starts its own temporary server, as `refranges run` does
        killed = _run(point, config, _env(None, own) if own_server else shared)
        assert killed.returncode == -9, f"{point}: the run did not reach its kill point\n{killed.stderr[-3000:]}"
        state = check_consistent(settings, exports, point)
        assert state["running"] == 0, point  # a killed run leaves no half-recorded run behind
        if own_server:  # the server saw its run die and ended itself
            deadline = time.monotonic() + 30
            while processes_with_env(f"PREFECT_HOME={own}") and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not processes_with_env(f"PREFECT_HOME={own}"), f"{point}: the server outlived its run"
        if point == "publish: listed, not yet recorded in the warehouse":
            published = state["listed"][-1]  # what the killed run published; nobody records it yet
            assert state["recorded"] == []
    last = _run("none", config, shared)
    assert last.returncode == 0, last.stdout[-3000:] + last.stderr[-3000:]
    state = check_consistent(settings, exports, "after the last run")
    files = state["files"]
    assert isinstance(files, pl.DataFrame)
    assert sorted(files["sha256"].to_list()) == sorted(_sha(d) for d in exports.values())  # each file once
    assert set(files["status"].to_list()) == {"loaded"}
    assert list(settings.landing.iterdir()) == []  # move mode: removed once the warehouse held them
    assert len(state["listed"]) == 1 and state["recorded"] == state["listed"]  # one release, recorded
    return settings, state, published


@pytest.mark.slow
def test_a_run_killed_at_every_step_leaves_a_whole_state_and_the_next_run_finishes_the_work(
    tmp_path: Path, prefect_backend
) -> None:
    """Two homes at once (the machine's second core), each a chain of kill points in the order a run reaches
    them; the chain with the publishing points also checks that a published, unrecorded release is
    registered."""
    from prefect.settings import PREFECT_API_URL

    chains = {"early": SUITE_POINTS[:4], "late": SUITE_POINTS[4:]}
    if os.environ.get("REFRANGES_CRASH_POINTS") == "all":  # every point (docs/operations.md: about 135 s)
        first_publish = POINTS.index("publish: release files staged and verified")
        chains = {"early": POINTS[:first_publish], "late": POINTS[first_publish:]}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            name: pool.submit(_chain, tmp_path / name, points, PREFECT_API_URL.value())
            for name, points in chains.items()
        }
        results = {name: future.result() for name, future in futures.items()}

    settings, state, published = results["late"]
    # the release a killed run published is the one listed and recorded: nothing was published twice
    assert published is not None and state["listed"] == [published]
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        recorded = con.sql("select * exclude (version) from release_intervals").pl()
        runs = con.sql("select status from runs").fetchall()
    finally:
        con.close()
    published_table = releases.read_table(settings.releases, published, "reference_intervals")
    assert recorded.sort(recorded.columns).equals(published_table.sort(published_table.columns))
    assert len(runs) == 2, runs  # the run killed after its swap, and the last one
    # the same inputs give the same release, however often the runs before were killed
    early_settings, early_state, _ = results["early"]
    early_table = releases.read_table(early_settings.releases, early_state["listed"][0], "reference_intervals")
    assert early_table.sort(early_table.columns).equals(published_table.sort(published_table.columns))
