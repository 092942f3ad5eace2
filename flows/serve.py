"""`refranges serve`: run the scheduled deployments of prefect.yaml, with a local Prefect server if needed.

Prefect's temporary (ephemeral) server never fires schedules, so when no ``PREFECT_API_URL`` is configured
this starts ``prefect server start`` on 127.0.0.1 as a child process, waits until it answers, serves the
deployments, and stops the server by its process id on Ctrl-C or SIGTERM. Nothing here imports Prefect
before the environment is set.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PREFECT_YAML = ROOT / "prefect.yaml"


class ServeError(RuntimeError):
    """The schedules cannot be served; the message says what to fix."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalServer:
    """A Prefect server started by us on the loopback interface."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    own_group: bool = True  # started in its own process group (serve), or in the caller's (a run)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM to the server (its process group when it has its own), then SIGKILL if it has not ended."""
        if self.process.poll() is not None:
            return

        def send(sig: signal.Signals) -> None:
            if self.own_group:
                os.killpg(self.process.pid, sig)
            else:
                self.process.send_signal(sig)

        try:
            send(signal.SIGTERM)
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            send(signal.SIGKILL)
            self.process.wait(timeout=timeout)
        except ProcessLookupError:
            pass

    def wait_until_healthy(self, timeout: float = 120.0) -> None:
        """Return once /api/health answers; ServeError when the server ends or does not answer in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                msg = f"the local Prefect server stopped at start-up (exit {code}); see {self.log_path}"
                raise ServeError(msg)
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        msg = f"the local Prefect server did not answer within {timeout:.0f} s; see {self.log_path}"
        raise ServeError(msg)


#: What Prefect writes into a database it builds, before any flow runs: the schema's version and the
#: registrations of its block types. A template holding anything else is not kept.
TEMPLATE_TABLES = frozenset({"alembic_version", "block_type", "block_schema", "block_schema_reference"})


def prefect_database(prefect_home: Path) -> Path | None:
    """The SQLite file Prefect's server uses in ``prefect_home`` (its default), or None when a database URL
    is configured (a shared PostgreSQL server, docs/operations.md): then nothing here touches it."""
    if os.environ.get("PREFECT_API_DATABASE_CONNECTION_URL") or os.environ.get(
        "PREFECT_SERVER_DATABASE_CONNECTION_URL"
    ):
        return None
    return prefect_home / "prefect.db"


def prefect_template(cache: Path) -> Path:
    """This machine's empty database for the installed Prefect version (a new version builds its own)."""
    from importlib.metadata import version

    return cache / f"prefect-{version('prefect')}.db"


def seed_prefect_database(prefect_home: Path, cache: Path | None) -> bool:
    """Give a Prefect home that has no database yet a copy of this machine's template (see
    :func:`save_prefect_template`). Prefect builds a new database by running every migration since its first
    release: 11 s of a new home's first run on a 2-core machine, against 0.5 s to copy. Returns True when the
    home's database is still to be built and there is no template yet: save one once the server is up."""
    db = prefect_database(prefect_home)
    if db is None or cache is None or db.exists():
        return False
    template = prefect_template(cache)
    if not template.is_file():
        return True
    staged = db.with_name(f".{db.name}.{os.getpid()}")
    try:
        prefect_home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, staged)
        os.replace(staged, db)
    except OSError:  # Prefect builds the database as it would without a template
        with contextlib.suppress(OSError):
            staged.unlink(missing_ok=True)
    return False


def save_prefect_template(prefect_home: Path, cache: Path | None) -> Path | None:
    """Keep a copy of the database Prefect has just built in ``prefect_home`` as this machine's template, when
    it holds only what Prefect writes before any run (TEMPLATE_TABLES). SQLite's backup API takes a
    consistent copy while the server runs. Best effort: when the cache cannot be written, the next new home
    builds its database again. Returns the template, or None when none was kept."""
    db = prefect_database(prefect_home)
    if db is None or cache is None or not db.is_file():
        return None
    template = prefect_template(cache)
    staged = template.with_name(f".{template.name}.{os.getpid()}")
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(sqlite3.connect(db)) as source, contextlib.closing(sqlite3.connect(staged)) as copy:
            source.backup(copy)
            tables = [r[0] for r in copy.execute("select name from sqlite_master where type = 'table'")]
            filled = {t for t in tables if copy.execute(f'select exists (select 1 from "{t}")').fetchone()[0]}
        filled = {t for t in filled if not t.startswith("sqlite_")}
        if "alembic_version" not in filled or not filled <= TEMPLATE_TABLES:
            return None
        os.replace(staged, template)
        return template
    except (OSError, sqlite3.Error):
        return None
    finally:
        with contextlib.suppress(OSError):
            staged.unlink(missing_ok=True)


def start_run_server(log_dir: Path) -> LocalServer:
    """Start, without waiting, the temporary Prefect server of one run on 127.0.0.1: what Prefect starts by
    itself when no ``PREFECT_API_URL`` is set (uvicorn over Prefect's app, the UI and the scheduling services
    off), but started first, so that it gets ready on the other core while the run imports its modules, and
    without importing Prefect's server code into the run's process. The process stays in the run's process
    group (a kill of the run's group ends it too); :meth:`LocalServer.stop` ends it by its process id. When
    the run dies without stopping it (SIGKILL, out of memory), the server sees its standard input close and
    ends itself (:func:`run_server_main`): a killed run never leaves a server behind."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "prefect-server.log"
    port = free_port()
    env = os.environ | {
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",  # as Prefect's own temporary server: only the services a run needs
        "PREFECT__SERVER_FINAL": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    env.pop("PREFECT_API_URL", None)
    # -P: the folder the run was started from is not put before the installed packages (a folder there named
    # flows/ or prefect/, a user's own Prefect project, was imported instead: "No module named flows.serve")
    command = [sys.executable, "-P", "-m", "flows.serve", "run-server", str(port)]
    with open(log_path, "ab") as log:  # stdin: a pipe only this process holds, the server's lifeline
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=env)
    return LocalServer(process, f"http://127.0.0.1:{port}/api", log_path, own_group=False)


def start_local_server(port: int, log_dir: Path, *, timeout: float = 120.0) -> LocalServer:
    """``prefect server start`` on 127.0.0.1:port (its own process group); returns once /api/health answers."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "prefect-server.log"
    env = os.environ | {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
    }
    env.pop("PREFECT_API_URL", None)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-P", "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    server = LocalServer(process, f"http://127.0.0.1:{port}/api", log_path)
    server.wait_until_healthy(timeout)
    return server


def read_deployments(path: Path) -> list[dict[str, Any]]:
    """The ``deployments`` of a prefect.yaml, checked for what serve needs."""
    if not path.is_file():
        msg = f"{path}: prefect.yaml not found"
        raise ServeError(msg)
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        msg = f"{path}: not valid YAML ({exc})"
        raise ServeError(msg) from exc
    deployments = spec.get("deployments") or []
    if not deployments:
        msg = f"{path}: no deployments declared"
        raise ServeError(msg)
    for i, d in enumerate(deployments):
        for key in ("name", "entrypoint"):
            if not d.get(key):
                msg = f"{path}: deployment {i + 1} has no {key!r}"
                raise ServeError(msg)
        for s in d.get("schedules") or []:
            if not ({"cron", "interval"} & set(s)):
                msg = f"{path}: deployment {d['name']!r} has a schedule without 'cron' or 'interval' (seconds)"
                raise ServeError(msg)
    return list(deployments)


def build_deployments(specs: list[dict[str, Any]], *, config: Path | None, base: Path) -> list[Any]:
    """RunnerDeployments from prefect.yaml entries; ``config`` fills a ``config: null`` parameter."""
    from prefect.flows import load_flow_from_entrypoint
    from prefect.schedules import Cron, Interval

    out = []
    for d in specs:
        file_part, _, func = str(d["entrypoint"]).partition(":")
        entry = f"{(base / file_part).resolve()}:{func}"
        flow: Any = load_flow_from_entrypoint(entry)
        schedules = [
            Cron(s["cron"], timezone=s.get("timezone", "UTC"))
            if "cron" in s
            else Interval(timedelta(seconds=float(s["interval"])))
            for s in d.get("schedules") or []
        ]
        parameters = dict(d.get("parameters") or {})
        if "config" in parameters and parameters["config"] is None and config is not None:
            parameters["config"] = str(config.resolve())
        out.append(
            flow.to_deployment(
                name=d["name"],
                description=d.get("description"),
                schedules=schedules,
                parameters=parameters,
                concurrency_limit=d.get("concurrency_limit"),
                tags=["refranges"],
            )
        )
    return out


def serve_schedules(
    *,
    prefect_yaml: Path,
    config: Path | None,
    port: int | None,
    log_dir: Path,
    announce: Any = print,
    cache: Path | None = None,
) -> None:
    """Serve until Ctrl-C or SIGTERM; start and stop a local server when no PREFECT_API_URL is set (its
    database in ``PREFECT_HOME``, from this machine's template in ``cache`` when it is new)."""
    specs = read_deployments(prefect_yaml)
    server: LocalServer | None = None
    if not os.environ.get("PREFECT_API_URL"):
        prefect_home = Path(os.environ.get("PREFECT_HOME", log_dir))
        build = seed_prefect_database(prefect_home, cache)
        server = start_local_server(port or free_port(), log_dir)
        if build:
            save_prefect_template(prefect_home, cache)
        os.environ["PREFECT_API_URL"] = server.url
        announce(f"started a local Prefect server: {server.url.removesuffix('/api')} (pid {server.process.pid})")
    else:
        announce(f"using the Prefect server at {os.environ['PREFECT_API_URL']}")

    def _stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        from prefect import serve

        deployments = build_deployments(specs, config=config, base=prefect_yaml.parent)
        for d in deployments:
            announce(f"serving {d.name}")
        serve(*deployments, print_starting_message=False)
    except KeyboardInterrupt:
        announce("stopping")
    finally:
        signal.signal(signal.SIGTERM, previous)
        if server is not None:
            server.stop()
            announce(f"stopped the local Prefect server (pid {server.process.pid})")


def _end_with_parent() -> None:
    """Wait for the end of standard input, which comes when the run that started this server has ended,
    however it ended (the kernel closes its end of the pipe); then stop the server as SIGTERM does."""
    while os.read(sys.stdin.fileno(), 65536):  # nothing is ever written; read in pieces all the same
        pass
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(15)  # uvicorn's graceful shutdown did not end the process
    os._exit(1)


def run_server_main(port: int) -> None:
    """The run server's process: uvicorn over Prefect's app on 127.0.0.1:port, ending with its run."""
    import threading

    import uvicorn

    threading.Thread(target=_end_with_parent, name="lifeline", daemon=True).start()
    uvicorn.run(
        "prefect.server.api.server:create_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        log_level="error",
        lifespan="on",
    )


if __name__ == "__main__":
    if sys.argv[1:2] != ["run-server"] or len(sys.argv) != 3:
        sys.exit("usage: python -m flows.serve run-server PORT (started by a run, not by hand)")
    run_server_main(int(sys.argv[2]))
