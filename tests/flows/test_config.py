from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.config import ConfigError, load_settings


def test_precedence_defaults_file_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "refranges.toml"
    cfg.write_text('home = "h"\nmin_n = 200\ncontrol_cv_max = 0.3\n')
    s = load_settings(cfg, env={"REFRANGES_MIN_N": "150"})
    assert s.home == Path("h") and s.landing == Path("h/landing") and s.warehouse == Path("h/warehouse.duckdb")
    assert s.min_n == 150 and s.control_cv_max == 0.3 and s.coverage == 0.95


def test_the_luminex_mfi_section_is_read_as_xponent_names_it_whatever_the_case() -> None:
    assert load_settings(None, env={"REFRANGES_LUMINEX_MFI_SECTION": "net mfi"}).luminex_mfi_section == "Net MFI"
    assert load_settings(None, env={"REFRANGES_LUMINEX_MFI_SECTION": "MEDIAN "}).luminex_mfi_section == "Median"
    assert load_settings(None, env={}).luminex_mfi_section == ""


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
        ("luminex_mfi_section = 'Mean'\n", "luminex_mfi_section must be 'Median', 'Net MFI' or empty"),
        # a unit the raw suite would hold in every MSD row: every MSD file quarantined, run after run
        ("msd_unit = 'IU/mL'\n", r"msd_unit must be a concentration unit \(pg/mL, .*\), .* not 'IU/mL'"),
        ("msd_unit = 'NPX'\n", "msd_unit must be a concentration unit"),
        # a near miss of a platform or method: the setting would never apply, without a word
        ("[batch_methods]\nolnk = 'bridge'\n", r"\[batch_methods\] olnk: no platform 'olnk'; did you mean 'olink'\?"),
        ("[batch_methods]\nolink = 'brige'\n", r"olink = 'brige' is not a method .*; did you mean 'bridge'\?"),
        ("[platform_thresholds.luminx]\ncontrol_cv_max = 0.3\n", r"no platform 'luminx'; did you mean 'luminex'\?"),
        ("[platform_thresholds.olink_explore_H]\ncontrol_cv_max = 0.3\n", "did you mean 'olink_explore_ht'"),
    ],
)
def test_bad_configuration_names_the_key(tmp_path: Path, text: str, match: str) -> None:
    cfg = tmp_path / "refranges.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_settings(cfg, env={})


def test_msd_unit_is_read_in_any_case() -> None:
    for unit in ("pg/ml", "NG/ML", "µg/L", "pmol/l"):
        assert load_settings(None, env={"REFRANGES_MSD_UNIT": unit}).msd_unit == unit


def test_a_tidy_files_own_platform_and_every_known_product_take_settings(tmp_path: Path) -> None:
    """Only near misses of known platforms are refused: a generic tidy file may name platforms of its own."""
    cfg = tmp_path / "refranges.toml"
    cfg.write_text(
        "[batch_methods]\nmylab_elisa = 'combat'\nolink_explore_ht = 'bridge'\nmsd = 'none'\n"
        "[platform_thresholds.olink_reveal]\ncontrol_cv_max = 0.3\n"
    )
    s = load_settings(cfg, env={})
    assert s.batch_methods == {"mylab_elisa": "combat", "olink_explore_ht": "bridge", "msd": "none"}
    assert s.thresholds("olink_reveal")["control_cv_max"] == 0.3


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("min_n = 60\n", "min_n = 60 must be at least 119"),
        ("coverage = 0.9\nmin_n = 58\n", "min_n = 58 must be at least 59"),
        ("min_n_small = 10\n", "min_n_small = 10 must be between 20"),
        ("min_n_small = 130\n", r"and min_n \(120\)"),
        ("quantile_k = 0\n", "one person's extreme value"),
        ("rcv_probability = 1.0\n", "infinite change value"),
        ("rcv_probability = nan\n", "rcv_probability = nan"),
        ("early_years = 0\n", "early_years = 0.0 must be"),
        ("age_bands = [-5]\n", "age_bands"),
        ("age_bands = [45, 45]\n", "distinct ages"),
        ("max_bad_row_share = 1.5\n", "a share between 0 and 1"),
        ("control_cv_max = 0\n", "a CV above 0"),
        ("combat_min_batch = 1\n", "at least 2 samples"),
        ("report_max_plots = -1\n", "0 or more"),
        ("landing_min_age_seconds = -1\n", "landing_min_age_seconds = -1.0 must be 0 or more seconds"),
        (
            "[platform_thresholds.olink]\nbelow_lod_share_max = 2\n",
            r"\[platform_thresholds.olink\] below_lod_share_max",
        ),
    ],
)
def test_numbers_outside_their_meaning_are_refused_naming_where_they_were_set(
    tmp_path: Path, text: str, match: str
) -> None:
    """Each of these ran to the end and published: limits from a dozen people without CIs, an infinite
    reference change value, an empty early-illness cohort, every plate held."""
    cfg = tmp_path / "refranges.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=match) as refused:
        load_settings(cfg, env={})
    assert str(refused.value).startswith(str(cfg))
    cfg.write_text(f'home = "{tmp_path}"\n')
    with pytest.raises(ConfigError, match=r"^REFRANGES_QUANTILE_K: quantile_k = 0"):
        load_settings(cfg, env={"REFRANGES_QUANTILE_K": "0"})
    assert load_settings(cfg, env={}, min_n=119, age_bands=[30, 60]).min_n == 119  # the edges are allowed


@pytest.mark.parametrize(
    ("lines", "match"),
    [
        ('landing = "{h}"\n', "holds archive"),  # the home itself: every place the pipeline writes
        ('archive = "{h}/landing/archive"\n', "holds archive"),
        ('warehouse = "{h}/landing/wh.duckdb"\n', "holds warehouse"),
        ('landing = "{h}/in"\nwarehouse = "{h}/in/db/wh.duckdb"\n', "holds warehouse"),
        ('landing = "{h}/releases/in"\n', "lies in releases"),
        ('landing = "{h}/reports"\n', "lies in reports"),
    ],
)
def test_a_landing_folder_that_holds_what_the_pipeline_writes_is_refused(
    tmp_path: Path, lines: str, match: str
) -> None:
    """A landing folder set to the home made each run read the home's raw files, releases, reports and the
    warehouse's lock as exports and quarantine them (and with landing_mode = "move" remove what it loaded)."""
    cfg = tmp_path / "refranges.toml"
    cfg.write_text(f'home = "{tmp_path}"\n' + lines.format(h=tmp_path))
    with pytest.raises(ConfigError, match=match) as refused:
        load_settings(cfg, env={})
    assert str(refused.value).startswith(f"{cfg}: landing ")


def test_a_landing_folder_apart_or_with_only_hidden_places_in_it_is_taken(tmp_path: Path) -> None:
    cfg = tmp_path / "refranges.toml"
    cfg.write_text(f'home = "{tmp_path}"\nlanding = "{tmp_path}/in"\nprefect_home = "{tmp_path}/in/.prefect"\n')
    assert load_settings(cfg, env={}).landing == tmp_path / "in"  # a hidden folder is never read as exports
    cfg.write_text(f'home = "{tmp_path}"\nlanding = "s3://bucket/landing"\narchive = "{tmp_path}/a"\n')
    assert load_settings(cfg, env={}).landing == "s3://bucket/landing"
    assert load_settings(None, env={}, home=tmp_path).landing == tmp_path / "landing"  # the defaults


def test_an_environment_variable_that_cannot_take_effect_is_refused(tmp_path: Path) -> None:
    """A table set through the environment, or a near miss of a setting's name, was ignored without a word:
    the run used the default the user meant to change."""
    cfg = tmp_path / "refranges.toml"
    cfg.write_text(f'home = "{tmp_path}"\n')
    with pytest.raises(ConfigError, match=r"^REFRANGES_MIN_NN: no setting 'min_nn'; did you mean REFRANGES_MIN_N\?"):
        load_settings(cfg, env={"REFRANGES_MIN_NN": "150"})
    with pytest.raises(ConfigError, match=r"REFRANGES_BATCH_METHODS: batch_methods is set in refranges.toml only"):
        load_settings(cfg, env={"REFRANGES_BATCH_METHODS": "olink=bridge"})
    # an unrelated switch (a test's) and an empty variable are left alone
    assert load_settings(cfg, env={"REFRANGES_CRASH_POINTS": "all", "REFRANGES_MIN_NN": ""}).min_n == 120


@given(coverage=st.floats(0.5, 0.995), ci_level=st.floats(0.5, 0.99))
@settings(max_examples=60, deadline=None)
def test_the_smallest_non_parametric_group_is_the_first_with_both_ci_ranks(coverage: float, ci_level: float) -> None:
    """The floor of min_n agrees with the ranks the build uses (transforms.reference.ci_ranks)."""
    from flows.config import smallest_nonparametric_n
    from transforms.reference import ci_ranks

    n = smallest_nonparametric_n(coverage, ci_level)
    p = (1 - coverage) / 2

    def both(m: int) -> bool:
        return None not in ci_ranks(m, p, ci_level) and None not in ci_ranks(m, 1 - p, ci_level)

    assert both(n) and (n == 1 or not both(n - 1))


def test_a_run_caps_duckdb_memory_as_configured(tmp_path: Path) -> None:
    from flows.pipeline import _connect

    settings = load_settings(env={}, home=tmp_path, duckdb_memory_limit="512MiB")
    with _connect(settings) as con:
        assert con.sql("select current_setting('memory_limit')").fetchall()[0][0] == "512.0 MiB"
