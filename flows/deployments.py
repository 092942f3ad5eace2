"""Entry points of the scheduled deployments declared in prefect.yaml.

Each flow takes one parameter, the configuration file, so that every setting a scheduled run uses comes
from refranges.toml (or REFRANGES_* variables of the serving process), never from flow code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.states import State

from flows.config import check_landing, load_settings
from flows.pipeline import ingest_paths, list_landing, on_runner, run_pipeline


@flow(name="refranges-scheduled-ingest", log_prints=True)
def scheduled_ingest(config: str | None = None) -> State[Any]:
    """Hourly: ingest everything new in the landing folder into the warehouse (no release)."""
    settings = load_settings(Path(config) if config else None)
    assert settings.landing is not None
    check_landing(settings)
    listed = list_landing(settings.landing)
    return on_runner(ingest_paths, settings)(settings, listed, settle=True, return_state=True)


@flow(name="refranges-scheduled-publish", log_prints=True)
def scheduled_publish(config: str | None = None) -> State[Any]:
    """Nightly: ingest what is new, rebuild the reference groups and publish a release if anything changed."""
    settings = load_settings(Path(config) if config else None)
    return on_runner(run_pipeline, settings)(settings, return_state=True)
