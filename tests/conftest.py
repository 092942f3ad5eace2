"""Test set-up: a private, quiet, offline Prefect home and one session-scoped Prefect test server."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="refranges-prefect-"))
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

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
SHARED_EXAMPLES = SHARED / "data" / "examples"
SHARED_GOLDEN = SHARED / "data" / "golden"


@pytest.fixture(scope="session")
def prefect_backend():
    """A Prefect test server for the tests that run flows (started once, only when asked for)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with (
        prefect_test_harness(server_startup_timeout=120),
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        yield
