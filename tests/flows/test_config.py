from __future__ import annotations

from pathlib import Path

import pytest

from flows.config import ConfigError, load_settings


def test_precedence_defaults_file_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "refranges.toml"
    cfg.write_text('home = "h"\nmin_n = 200\ncontrol_cv_max = 0.3\n')
    s = load_settings(cfg, env={"REFRANGES_MIN_N": "150"})
    assert s.home == Path("h") and s.landing == Path("h/landing") and s.warehouse == Path("h/warehouse.duckdb")
    assert s.min_n == 150 and s.control_cv_max == 0.3 and s.coverage == 0.95


def test_platform_thresholds_override_only_their_platform(tmp_path: Path) -> None:
    cfg = tmp_path / "refranges.toml"
    cfg.write_text(
        "[refranges]\nreplicate_cv_max = 0.2\n[refranges.platform_thresholds.luminex]\nreplicate_cv_max = 0.3\n"
    )
    s = load_settings(cfg, env={})
    assert s.thresholds("luminex")["replicate_cv_max"] == 0.3
    assert s.thresholds("msd")["replicate_cv_max"] == 0.2 == s.thresholds()["replicate_cv_max"]
    assert s.parameters()["platform_thresholds"] == {"luminex": {"replicate_cv_max": 0.3}}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("min_n = 'many'\n", "not a valid"),
        ("landing_mode = 'copy'\n", "landing_mode"),
        ("coverage = 1.5\n", "between 0 and 1"),
        ("[platform_thresholds.msd]\nfoo = 1\n", "unknown keys"),
        ("nope = 1\n", "unknown key 'nope'"),
        ("home = \n", "not valid TOML"),
        ("duckdb_memory_limit = 'lots'\n", "duckdb_memory_limit"),
    ],
)
def test_bad_configuration_names_the_key(tmp_path: Path, text: str, match: str) -> None:
    cfg = tmp_path / "refranges.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_settings(cfg, env={})


def test_a_run_caps_duckdb_memory_as_configured(tmp_path: Path) -> None:
    from flows.pipeline import _connect

    settings = load_settings(env={}, home=tmp_path, duckdb_memory_limit="512MiB")
    with _connect(settings) as con:
        assert con.sql("select current_setting('memory_limit')").fetchall()[0][0] == "512.0 MiB"
