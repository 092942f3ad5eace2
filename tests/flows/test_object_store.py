"""The pipeline against a real S3 API: moto's S3 server on 127.0.0.1 (started and stopped here by process
id), reached through s3fs as a lab's bucket would be. Landing, archive and releases live in the bucket."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from flows.config import load_settings
from flows.landing import copy_demo
from flows.serve import free_port
from transforms.demo import generate_demo

pytestmark = pytest.mark.slow


@pytest.fixture
def s3_bucket(monkeypatch):
    s3fs = pytest.importorskip("s3fs")
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(endpoint, timeout=1)  # our own loopback server
                break
            except OSError:
                time.sleep(0.1)
        for key, value in {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(key, value)
        s3fs.S3FileSystem.clear_instance_cache()
        s3fs.S3FileSystem().mkdir("lab-bucket")
        yield "s3://lab-bucket"
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=10)


def test_a_run_reads_landing_archives_and_publishes_in_an_s3_bucket(tmp_path, s3_bucket, prefect_backend) -> None:
    from flows.pipeline import run_pipeline
    from warehouse import releases, storage
    from warehouse.client import load_release

    env = {f"REFRANGES_{k.upper()}": f"{s3_bucket}/{k}" for k in ("landing", "archive", "releases")}
    settings = load_settings(env=env, home=tmp_path, subject_key="k", landing_mode="move")
    demo = generate_demo(seed=9, n_healthy=150, n_patients=20)
    copy_demo(demo.files, settings.landing)
    summary = run_pipeline(settings)
    store = f"{s3_bucket}/releases"
    assert summary.release_version is not None and summary.release_path == f"{store}/{summary.release_version}"
    assert releases.verify(store, summary.release_version) == []
    assert load_release(store)["reference_intervals"].num_rows == summary.groups_published
    assert storage.list_files(f"{s3_bucket}/landing") == []
    assert len(storage.list_files(f"{s3_bucket}/archive")) == len(demo.files)
    assert [i["version"] for i in releases.read_index(store)] == [summary.release_version]
