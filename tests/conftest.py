"""Test set-up: a private, quiet, offline Prefect home and one session-scoped Prefect test server."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest  # imports nothing that reads the environment below

# A private Prefect home, and the machine's cache (a new home's Prefect database) for this session only, each
# removed when the session ends (not left in /tmp). pytest-xdist's workers inherit the environment of the
# process that started them: each makes folders of its own in place of the ones this file made there (not in
# place of a folder the user named), so that two workers never build one cache at once.
_OWNED = "REFRANGES_TESTS_OWN"
_owned = set(os.environ.get(_OWNED, "").split())
for _variable, _prefix in (("PREFECT_HOME", "refranges-prefect-"), ("REFRANGES_CACHE", "refranges-cache-")):
    if _variable not in os.environ or (_variable in _owned and "PYTEST_XDIST_WORKER" in os.environ):
        _folder = tempfile.mkdtemp(prefix=_prefix)
        os.environ[_variable] = _folder
        atexit.register(shutil.rmtree, _folder, ignore_errors=True)
        _owned.add(_variable)
os.environ[_OWNED] = " ".join(sorted(_owned))
os.environ.update(
    DO_NOT_TRACK="1",
    GX_ANALYTICS_ENABLED="false",
    PREFECT_SERVER_ANALYTICS_ENABLED="false",
    PREFECT_LOGGING_LEVEL="WARNING",
    PREFECT_SERVER_LOGGING_LEVEL="WARNING",
    PREFECT_LOGGING_TO_API_ENABLED="false",
    PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED="false",
    PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED="false",
)

SHARED = Path(__file__).resolve().parents[2] / "shared"
SHARED_EXAMPLES = SHARED / "data" / "examples"
SHARED_GOLDEN = SHARED / "data" / "golden"


@pytest.fixture(scope="session")
def prefect_backend():
    """A Prefect test server for the tests that run flows (started once, only when asked for)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    _private_ping_payloads()
    with (
        prefect_test_harness(server_startup_timeout=120),
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        yield


def _private_ping_payloads() -> None:
    """Prefect's events client keeps a websocket to the test server, and its keep-alive pings draw their
    payload from the global ``random`` (websockets, ``Connection.ping``) in Prefect's event-loop thread. A
    ping while a Hypothesis strategy of another test ran changed the global state under it, and Hypothesis
    blamed the strategy ("Do not use the `random` module inside strategies", HypothesisDeprecationWarning,
    named after whichever strategy was running). The pings get a generator of their own."""
    import random

    import websockets.asyncio.connection as connection

    connection.random = random.Random()  # only its getrandbits is used


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/golden/* from current output")


@pytest.fixture
def golden(request: pytest.FixtureRequest):
    """Compare a frame with tests/golden/<name>.csv; --update-golden rewrites the file (review the diff)."""
    import polars as pl
    from polars.testing import assert_frame_equal

    update = request.config.getoption("--update-golden")

    def check(name: str, frame: pl.DataFrame | dict) -> None:
        """A frame is compared as CSV text, a dict (a JSON document) as JSON (``<name>.json``)."""
        as_json = isinstance(frame, dict)
        path = Path(__file__).parent / "golden" / f"{name}.{'json' if as_json else 'csv'}"
        text = json.dumps(frame, indent=1, sort_keys=True, default=str) + "\n" if as_json else frame.write_csv()
        if update or not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            if not update:
                pytest.fail(f"golden file {path.name} was missing and has been written; review and commit it")
        if as_json:
            assert json.loads(text) == json.loads(path.read_text(encoding="utf-8")), f"{path.name} differs"
            return
        expected = pl.read_csv(path, infer_schema=False)
        actual = pl.read_csv(text.encode(), infer_schema=False)
        assert_frame_equal(actual, expected)

    return check
