"""Operations: the schedules fire on a local Prefect server, and one run at a time writes the warehouse."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest

from flows.config import load_settings
from flows.landing import copy_demo
from flows.serve import free_port
from tests.processes import processes_with_env
from transforms.demo import generate_demo
from warehouse import db

ROOT = Path(__file__).resolve().parents[2]
REFRANGES = [sys.executable, "-m", "flows.cli"]


def api(url: str, path: str, body: dict) -> list[dict]:
    request = urllib.request.Request(
        f"{url}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # loopback only
        return json.loads(response.read())


def child_env(prefect_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API") and k != "PREFECT_LOGGING_LEVEL"}
    env.update(
        PREFECT_HOME=str(prefect_home),
        PREFECT_LOGGING_TO_API_ENABLED="true",
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5",
        PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED="true",
        PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED="true",
        PYTHONPATH=str(ROOT),
    )
    return env


def small_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    copy_demo(generate_demo(seed=4, n_healthy=60, n_patients=10).files, home / "landing")
    config = tmp_path / "refranges.toml"
    config.write_text(f'home = "{home}"\nsubject_key = "k"\nwriter_wait_seconds = 600\n')
    return config


@pytest.mark.slow
def test_serve_fires_a_schedule_on_a_local_server_and_stops_everything(tmp_path: Path) -> None:
    config = small_home(tmp_path)
    config.write_text(config.read_text() + "landing_min_age_seconds = 1\n")  # as a served drop folder should
    spec = (ROOT / "prefect.yaml").read_text()
    spec = spec.replace('- cron: "7 * * * *"', "- interval: 5").replace(
        "entrypoint: flows/", f"entrypoint: {ROOT}/flows/"
    )
    (tmp_path / "prefect.yaml").write_text(spec)
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        serve = subprocess.Popen(
            [
                *REFRANGES,
                "serve",
                "--config",
                str(config),
                "--prefect-yaml",
                str(tmp_path / "prefect.yaml"),
                "--port",
                str(port),
            ],
            cwd=tmp_path,
            env=child_env(tmp_path / "prefect-home"),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        completed: list[dict] = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not completed:
            time.sleep(3)
            assert serve.poll() is None, log.read_text()
            try:
                runs = api(
                    url,
                    "/flow_runs/filter",
                    {"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}, "limit": 50},
                )
            except OSError:
                continue
            completed = [r for r in runs if r["deployment_id"] is not None]  # not the subflow runs
        assert completed, log.read_text()
        run = completed[0]
        assert run["deployment_id"] is not None and run["auto_scheduled"]  # fired by the schedule, not by hand
        # the run's log in the API holds our own logger's lines and the run summary the CLI prints
        # (run logs reach the API in batches, possibly after the run's final state: wait for them a while)
        lines: list[str] = []
        logs_deadline = time.monotonic() + 60
        while time.monotonic() < logs_deadline and not any("files ingested" in m for m in lines):
            lines = [entry["message"] for entry in api(url, "/logs/filter", {"logs": {}, "limit": 200})]
            time.sleep(1)
        assert any("files ingested" in m for m in lines), lines
        con = duckdb.connect(str(load_settings(config).warehouse), read_only=True)
        try:
            assert con.execute("select count(*) from files where status = 'loaded'").fetchall()[0][0] == 6
        finally:
            con.close()
        server_pid = int(re.search(r"\(pid (\d+)\)", log.read_text()).group(1))  # type: ignore[union-attr]
    finally:
        os.kill(serve.pid, signal.SIGTERM)
        try:
            serve.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()
    assert "stopped the local Prefect server" in log.read_text()
    with pytest.raises(ProcessLookupError):
        os.kill(server_pid, 0)
    with socket.socket() as s, pytest.raises(OSError):
        s.connect(("127.0.0.1", port))


def test_a_second_writer_waits_then_stops_with_a_clear_message_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    with db.writer_lock(path):
        started = time.monotonic()
        with pytest.raises(db.WarehouseBusyError) as err, db.writer_lock(path, wait_seconds=1.0, poll_seconds=0.1):
            pass
        assert time.monotonic() - started >= 1.0
    message = str(err.value)
    assert f"pid {os.getpid()}" in message and "changed nothing" in message and "writer_wait_seconds" in message
    assert not path.exists()
    with db.writer_lock(path, wait_seconds=0):  # released when the holder is done
        pass


def test_a_killed_writer_never_leaves_the_warehouse_locked(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    code = (
        "import os, pathlib\nfrom warehouse import db\n"
        f"with db.writer_lock(pathlib.Path({str(path)!r})):\n    os._exit(9)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False).returncode == 9
    with db.writer_lock(path, wait_seconds=0):
        pass


@pytest.mark.slow
def test_two_runs_started_together_take_turns_and_load_nothing_twice(tmp_path: Path) -> None:
    config = small_home(tmp_path)
    runs = [
        subprocess.Popen(
            [*REFRANGES, "run", "--config", str(config)],
            cwd=tmp_path,
            env=child_env(tmp_path / f"prefect-{i}") | {"PREFECT_LOGGING_TO_API_ENABLED": "false"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for i in range(2)
    ]
    outputs = [r.communicate(timeout=400)[0].decode() for r in runs]
    assert [r.returncode for r in runs] == [0, 0], outputs
    assert sum("published release" in o for o in outputs) == 1, outputs
    # each run started its own temporary Prefect server (no PREFECT_API_URL) and stopped it again
    assert all((tmp_path / f"prefect-{i}" / "prefect-server.log").is_file() for i in range(2))
    assert not processes_with_env(f"PREFECT_HOME={tmp_path}/prefect-"), "a run left its Prefect server running"
    settings = load_settings(config)
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        assert con.execute("select count(*), count(distinct sha256) from files").fetchall() == [(6, 6)]
        assert con.execute("select count(*) from runs where status like 'completed%'").fetchall() == [(2,)]
        assert con.execute("select count(*) from releases").fetchall() == [(1,)]
    finally:
        con.close()


def test_a_busy_warehouse_ends_the_cli_run_with_exit_3(tmp_path: Path) -> None:
    config = small_home(tmp_path)
    config.write_text(config.read_text().replace("writer_wait_seconds = 600", "writer_wait_seconds = 0"))
    settings = load_settings(config)
    with db.writer_lock(settings.warehouse):  # type: ignore[arg-type]
        result = subprocess.run(
            [*REFRANGES, "run", "--config", str(config)],
            cwd=tmp_path,
            env=child_env(tmp_path / "prefect"),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert result.returncode == 3, result.stdout + result.stderr
    assert "another refranges run" in " ".join(result.stderr.split())
    assert not settings.warehouse.exists()  # type: ignore[union-attr]
    # one line, found before Prefect's server starts: no failed flow run's traceback, no "Error logging to API"
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    assert "Error logging to API" not in result.stderr + result.stdout
    assert not (tmp_path / "prefect" / "prefect-server.log").exists()  # no server was started


def test_only_io_tasks_retry_and_only_on_os_errors(tmp_path: Path, prefect_backend, monkeypatch) -> None:
    from prefect import Task, flow

    from flows import pipeline

    tasks = {name: obj for name, obj in vars(pipeline).items() if isinstance(obj, Task)}
    retried = {name for name, t in tasks.items() if t.retries}
    assert retried == {"list_landing", "publish_release"}  # I/O only: never a quality step
    assert {"parse_files", "normalise_part", "normalise_all", "reference_part"} <= set(tasks)
    assert "read_input" not in tasks  # reading a file retries in the parse task, by the same policy (below)

    calls = {"n": 0}
    real = Path.read_bytes

    def flaky(self: Path) -> bytes:
        calls["n"] += 1
        if calls["n"] < 3:
            raise OSError("network share not ready")
        return real(self)

    target = tmp_path / "export.csv"
    target.write_bytes(b"a,b\n1,2\n")
    monkeypatch.setattr(Path, "read_bytes", flaky)

    @flow
    def read_once() -> bytes:
        return pipeline.read_input(target, delays=(0, 0, 0))

    assert read_once() == b"a,b\n1,2\n" and calls["n"] == 3  # two OSErrors retried, then read

    def broken(self: Path) -> bytes:
        calls["n"] += 1
        raise ValueError("a bug, not I/O")

    calls["n"] = 0
    monkeypatch.setattr(Path, "read_bytes", broken)
    with pytest.raises(ValueError):
        read_once()
    assert calls["n"] == 1  # not retried

    def full(self: Path) -> bytes:
        calls["n"] += 1
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    calls["n"] = 0
    monkeypatch.setattr(Path, "read_bytes", full)
    with pytest.raises(OSError, match="No space left"):
        read_once()
    assert calls["n"] == 1  # a full disk does not mend by waiting: not retried


def test_progress_records_become_progress_bars_on_the_cli_console() -> None:
    import io

    from rich.console import Console

    from flows.progress import progress_bars, report

    out = io.StringIO()
    console = Console(file=out, width=100, force_terminal=False)
    with progress_bars(console):
        for done in range(4):
            report("files parsed and loaded", done, 3)
    text = out.getvalue()
    assert "files parsed and loaded" in text and "3/3" in text
