"""Settings: defaults, then refranges.toml, then REFRANGES_* environment variables (highest).

Every key is documented in README.md; tests/test_docs.py fails when one is not.
"""

from __future__ import annotations

import difflib
import errno
import math
import os
import re
import secrets
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, NoReturn

from expectations.suites import DEFAULT_THRESHOLDS

CONFIG_FILE = "refranges.toml"
ENV_PREFIX = "REFRANGES_"


class ConfigError(ValueError):
    """Configuration cannot be used; the message names the key or file."""


@dataclass(frozen=True)
class Settings:
    home: Path = Path("data")
    landing: Path | str | None = None  # default: <home>/landing; or an fsspec URL such as s3://bucket/landing
    archive: Path | str | None = None  # default: <home>/archive; or an fsspec URL
    quarantine: Path | None = None  # default: <home>/quarantine
    releases: Path | str | None = None  # default: <home>/releases; or an fsspec URL such as s3://bucket/releases
    warehouse: Path | None = None  # default: <home>/warehouse.duckdb
    landing_mode: str = "keep"  # keep | move
    # a landing file changed less than this many seconds before a run looked is left for a later run: a copy
    # still being written (a lab's sync tool, a network share) is never read half-way (0: read every file)
    landing_min_age_seconds: float = 0.0
    min_n: int = 120  # non-parametric method (CLSI EP28-A3c)
    min_n_small: int = 40  # parametric / robust methods
    age_bands: list[float] = field(default_factory=lambda: [45.0])  # cut points in years for age partitions
    outlier_rule: str = "tukey"  # tukey | dixon
    early_years: float = 3.0  # illness duration that splits early from long-standing patients
    coverage: float = 0.95
    ci_level: float = 0.90
    rcv_min_subjects: int = 20  # healthy people with repeat visits needed to publish a reference change value
    rcv_probability: float = 0.95  # two-sided probability of the reference change value
    quantile_k: int = 5
    msd_unit: str = "pg/mL"
    # a Luminex export without concentrations is read from this MFI section ("Median" or "Net MFI"); "": refused
    luminex_mfi_section: str = ""
    # cohort comparisons also give the shift adjusted for these sample-handling fields (sample_handling table)
    comparison_covariates: list[str] = field(default_factory=list)
    hold_vendor_warnings: bool = False  # hold back rows Olink flagged WARN (SampleQC, AssayQC) instead of loading them
    analyte_dictionary_extra: Path | None = None  # a lab's own analyte dictionary rows (same CSV layout)
    # quality thresholds: the defaults live beside the suites that read them
    max_bad_row_share: float = DEFAULT_THRESHOLDS["max_bad_row_share"]
    control_cv_max: float = DEFAULT_THRESHOLDS["control_cv_max"]
    replicate_cv_max: float = DEFAULT_THRESHOLDS["replicate_cv_max"]
    max_control_shift: float = DEFAULT_THRESHOLDS["max_control_shift"]
    below_lod_share_max: float = DEFAULT_THRESHOLDS["below_lod_share_max"]
    calibrator_recovery_max_dev: float = DEFAULT_THRESHOLDS["calibrator_recovery_max_dev"]
    # per-platform overrides of the quality thresholds, from [platform_thresholds.<platform>] tables
    platform_thresholds: dict[str, dict[str, float]] = field(default_factory=dict)
    # batch correction per platform: plate_control (default) | bridge | combat | none, from [batch_methods]
    batch_methods: dict[str, str] = field(default_factory=dict)
    combat_min_batch: int = 10
    min_bridges: int = 3
    reports: Path | None = None  # default: <home>/reports
    subject_key: str | None = None  # default: a random key kept in <home>/.subject_key
    prefect_home: Path | None = None  # default: <home>/.prefect (unless PREFECT_HOME is set)
    # this machine's reusable files, shared by its homes (a new home's Prefect database is copied from here)
    cache: Path | None = None  # default: $XDG_CACHE_HOME/refranges, else ~/.cache/refranges
    writer_wait_seconds: float = 300.0  # a run waits this long for another run writing the warehouse
    runner: str = "local"  # local (threads in this process) | dask (a dask.distributed cluster)
    dask_address: str | None = None  # scheduler address, e.g. tcp://10.0.0.5:8786; none: a LocalCluster
    workers: int = 2  # threads (local) or worker processes of a LocalCluster (dask without an address)
    # normalisation and reference building run in parts by analyte of about this many rows (one task each):
    # peak memory follows a part, not the history
    partition_rows: int = 2_000_000
    duckdb_memory_limit: str = "4GB"  # DuckDB's buffers during a run; beyond it DuckDB spills to disk
    report_max_plots: int = 1000  # plots in a release report (SVG, 3 kB each; the groups of everyone first)

    def resolved(self) -> Settings:
        h = self.home
        return replace(
            self,
            landing=self.landing or h / "landing",
            archive=self.archive or h / "archive",
            quarantine=self.quarantine or h / "quarantine",
            releases=self.releases or h / "releases",
            warehouse=self.warehouse or h / "warehouse.duckdb",
            prefect_home=self.prefect_home or h / ".prefect",
            reports=self.reports or h / "reports",
            cache=self.cache or default_cache(),
        )

    def thresholds(self, platform: str | None = None) -> dict[str, Any]:
        """Values that quality suites read through ``{"config": key}`` (expectations/suites/*.json), with the
        overrides of ``platform`` applied."""
        base = {k: getattr(self, k) for k in THRESHOLD_KEYS}
        if not platform:
            return base
        family = self.platform_thresholds.get(platform_family(platform), {})  # [olink] covers every Olink product
        return base | family | self.platform_thresholds.get(platform, {})

    @property
    def methods(self) -> dict[str, str]:
        """``batch_methods`` with each vendor's setting carried to its products (``olink = "bridge"`` applies
        to olink_explore_ht too, unless that has its own line)."""
        from transforms.readers.olink_explore import PRODUCTS

        inherited = {
            p: self.batch_methods[platform_family(p)]
            for p in PRODUCTS.values()
            if platform_family(p) in self.batch_methods
        }
        return inherited | self.batch_methods

    def parameters(self) -> dict[str, Any]:
        """The settings that change published numbers (recorded in every release manifest)."""
        return {
            "min_n": self.min_n,
            "coverage": self.coverage,
            "ci_level": self.ci_level,
            "quantile_k": self.quantile_k,
            "msd_unit": self.msd_unit,
            "luminex_mfi_section": self.luminex_mfi_section,
            "hold_vendor_warnings": self.hold_vendor_warnings,
            "comparison_covariates": self.comparison_covariates,
            "method": "auto: nonparametric for n >= min_n, parametric (Box-Cox) or robust (Horn-Pesce) below",
            "min_n_small": self.min_n_small,
            "age_bands": self.age_bands,
            "outlier_rule": self.outlier_rule,
            "early_years": self.early_years,
            "reference_samples": "first visit per subject; later visits estimate within-person variation",
            "rcv_min_subjects": self.rcv_min_subjects,
            "rcv_probability": self.rcv_probability,
            "quantile_rule": "type6: rank p(n+1), linear between order statistics",
            "batch_methods": {"default": "plate_control", **self.batch_methods},
            "combat_min_batch": self.combat_min_batch,
            "min_bridges": self.min_bridges,
            "quality_thresholds": self.thresholds(),
            "platform_thresholds": self.platform_thresholds,
        }


KEYS = {f.name: f for f in fields(Settings)}


def default_cache() -> Path | None:
    """$XDG_CACHE_HOME/refranges, else ~/.cache/refranges; None without a home directory (no cache then)."""
    base = os.environ.get("XDG_CACHE_HOME")
    try:
        return (Path(base) if base else Path.home() / ".cache") / "refranges"
    except RuntimeError:
        return None


def platform_family(platform: str) -> str:
    """The vendor of a platform: olink_explore_ht -> olink (settings for a vendor apply to its products)."""
    return platform.split("_", 1)[0]


def task_runner(settings: Settings) -> Any:
    """The Prefect task runner of a run: threads in this process, or a dask.distributed cluster (an existing
    scheduler at ``dask_address``, else a LocalCluster of ``workers`` processes started for the run)."""
    if settings.runner == "dask":
        from prefect_dask import DaskTaskRunner

        if settings.dask_address:
            return DaskTaskRunner(address=settings.dask_address)
        return DaskTaskRunner(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs={
                "n_workers": settings.workers,
                "processes": True,
                "threads_per_worker": 1,
                "dashboard_address": None,
                "host": "127.0.0.1",
            },
        )
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=settings.workers)


URL_KEYS = ("landing", "archive", "releases")  # locations that may be object stores (fsspec URLs)
THRESHOLD_KEYS = (*DEFAULT_THRESHOLDS, "min_n", "min_n_small", "quantile_k")


def _check_msd_unit(unit: str) -> None:
    """Refuse an ``msd_unit`` the raw suite would hold in every MSD and Bio-Plex row (``banana``, ``IU/mL``,
    ``NPX``): every such file was quarantined whole, run after run, for a unit no export had written."""
    from expectations.suites import raw_units
    from transforms.normalise import INTENSITY_UNITS, LOG_SCALE_UNITS, standard_spelling

    concentrations = [u for u in raw_units() if u not in LOG_SCALE_UNITS | INTENSITY_UNITS]
    if standard_spelling(unit) not in concentrations:
        msg = (
            f"msd_unit must be a concentration unit ({', '.join(concentrations)}, in any case), the unit of the MSD "
            f"and Bio-Plex exports that carry none, not {unit!r}"
        )
        raise ConfigError(msg)


def known_platforms() -> tuple[str, ...]:
    """The platforms refranges' readers write (a vendor, or an Olink product); a generic tidy file may name
    platforms of its own."""
    from transforms.readers.olink_explore import PRODUCTS

    return ("olink", "msd", "luminex", "bioplex", "tidy", *PRODUCTS.values())


def _known_platform(platform: str, where: str) -> None:
    """Refuse a platform name that is a near miss of one refranges knows (``olnk``): its setting would never
    apply, without a word. Other names pass (a tidy file's own platforms)."""
    known = known_platforms()
    if platform in known:
        return
    close = difflib.get_close_matches(platform, known, n=1, cutoff=0.75)
    if close:
        msg = f"{where}: no platform {platform!r}; did you mean {close[0]!r}? (platforms: {', '.join(known)})"
        raise ConfigError(msg)


def _coerce(key: str, value: Any, source: str) -> Any:
    kind = KEYS[key].type
    if key == "age_bands":
        items = value if isinstance(value, list) else [v for v in str(value).split(",") if v.strip()]
        try:
            return sorted(float(v) for v in items)
        except ValueError as exc:
            msg = f'{source}: age_bands must be a list of ages in years, e.g. [45] or "40,60"'
            raise ConfigError(msg) from exc
    if key == "comparison_covariates":
        from transforms.readers.olink_explore import HANDLING_FIELDS

        items = value if isinstance(value, list) else [v.strip() for v in str(value).split(",") if v.strip()]
        unknown = [str(v) for v in items if v not in HANDLING_FIELDS]
        if unknown:
            known = ", ".join(HANDLING_FIELDS)
            msg = f"{source}: comparison_covariates {unknown} are not sample-handling fields ({known})"
            raise ConfigError(msg)
        return [str(v) for v in items]
    if key == "batch_methods":
        from transforms.normalise import BATCH_METHODS

        methods = ", ".join(BATCH_METHODS)
        if not isinstance(value, dict):
            msg = f'{source}: [batch_methods] maps platform = method, method one of {methods} (olink = "bridge")'
            raise ConfigError(msg)
        for platform, method in value.items():
            _known_platform(str(platform), f"{source}: [batch_methods] {platform}")
            if method not in BATCH_METHODS:
                close = difflib.get_close_matches(str(method), BATCH_METHODS, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                msg = f"{source}: [batch_methods] {platform} = {method!r} is not a method ({methods}){hint}"
                raise ConfigError(msg)
        return {str(k): str(v) for k, v in value.items()}
    if key == "platform_thresholds":
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            msg = f"{source}: '{key}' must be tables such as [platform_thresholds.msd] with threshold keys"
            raise ConfigError(msg)
        out: dict[str, dict[str, float]] = {}
        for platform, table in value.items():
            _known_platform(str(platform), f"{source}: [platform_thresholds.{platform}]")
            unknown = sorted(set(table) - set(DEFAULT_THRESHOLDS))
            if unknown:
                msg = f"{source}: [platform_thresholds.{platform}] has unknown keys {unknown}"
                raise ConfigError(msg)
            out[str(platform)] = {k: float(v) for k, v in table.items()}
        return out
    if "Path" in str(kind) and "://" in str(value):
        if key in URL_KEYS:
            return str(value)  # an object store (fsspec URL): see warehouse/storage.py
        msg = f"{source}: '{key}' = {value!r}: object-store URLs are supported for {', '.join(URL_KEYS)} only"
        raise ConfigError(msg)
    try:
        if "Path" in str(kind):
            return Path(str(value)).expanduser()
        if kind == "bool" or str(kind) == "bool":
            if isinstance(value, bool):
                return value
            if str(value).strip().lower() in ("true", "1", "yes", "on"):
                return True
            if str(value).strip().lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError(value)
        if kind == "int" or str(kind) == "int":
            return int(value)
        if kind == "float" or str(kind) == "float":
            return float(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        msg = f"{source}: key '{key}' = {value!r} is not a valid {kind}"
        raise ConfigError(msg) from exc


NESTED_KEYS = ("platform_thresholds", "batch_methods")  # tables: in refranges.toml only


def check_environment(environ: Mapping[str, str]) -> None:
    """Refuse a ``REFRANGES_*`` variable that cannot take effect and looks meant to: a table (file only) or a
    near miss of a setting's name (``REFRANGES_MIN_NN``). Either was ignored without a word, so the run used
    the default the user meant to change. Other ``REFRANGES_*`` names are left alone (a test's switch)."""
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or not value:
            continue
        key = name.removeprefix(ENV_PREFIX).lower()
        if key in NESTED_KEYS:
            msg = f"{name}: {key} is set in refranges.toml only, as [{key}] tables (docs: README, Configuration)"
            raise ConfigError(msg)
        if key not in KEYS:
            close = difflib.get_close_matches(key, list(KEYS), n=1, cutoff=0.8)
            if close:
                msg = f"{name}: no setting '{key}'; did you mean {ENV_PREFIX}{close[0].upper()}?"
                raise ConfigError(msg)


def config_path(config: Path | None) -> Path | None:
    """The configuration file in use: ``config`` when given, else ./refranges.toml when it exists."""
    if config is not None:
        return config
    return Path(CONFIG_FILE) if Path(CONFIG_FILE).exists() else None


def load_settings(config: Path | None = None, *, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Defaults <- refranges.toml (``config`` or ./refranges.toml) <- REFRANGES_<KEY> <- ``overrides``."""
    environ = os.environ if env is None else env
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}  # key -> where its value came from (the file, a variable, an option)
    path = config_path(config)
    if config is not None and not config.exists():
        msg = f"{config}: configuration file not found"
        raise ConfigError(msg)
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            msg = f"{path}: not valid TOML ({exc})"
            raise ConfigError(msg) from exc
        table = data.get("refranges", data)
        for key, value in table.items():
            if key not in KEYS:
                msg = f"{path}: unknown key '{key}' (known: {', '.join(sorted(KEYS))})"
                raise ConfigError(msg)
            values[key] = _coerce(key, value, str(path))
            sources[key] = str(path)
    check_environment(environ)
    for key in KEYS:
        if key in NESTED_KEYS:
            continue  # nested tables: configuration file only (check_environment refuses them)
        env_key = f"{ENV_PREFIX}{key.upper()}"
        if environ.get(env_key):
            values[key] = _coerce(key, environ[env_key], env_key)
            sources[key] = env_key
    for key, value in overrides.items():
        if value is not None:
            values[key] = _coerce(key, value, f"--{key}")
            sources[key] = f"--{key}"
    if isinstance(values.get("luminex_mfi_section"), str):  # as xPONENT names its sections, whatever the case
        spelled = {"median": "Median", "net mfi": "Net MFI"}
        written = values["luminex_mfi_section"].strip()
        values["luminex_mfi_section"] = spelled.get(written.lower(), written)
    settings = Settings(**values)
    if settings.landing_mode not in {"keep", "move"}:
        msg = f"landing_mode must be 'keep' or 'move', not {settings.landing_mode!r}"
        raise ConfigError(msg)
    if settings.outlier_rule not in {"tukey", "dixon"}:
        msg = f"outlier_rule must be 'tukey' or 'dixon', not {settings.outlier_rule!r}"
        raise ConfigError(msg)
    if settings.luminex_mfi_section not in {"", "Median", "Net MFI"}:
        msg = f"luminex_mfi_section must be 'Median', 'Net MFI' or empty, not {settings.luminex_mfi_section!r}"
        raise ConfigError(msg)
    _check_msd_unit(settings.msd_unit)
    if settings.runner not in {"local", "dask"}:
        msg = f"runner must be 'local' or 'dask', not {settings.runner!r}"
        raise ConfigError(msg)
    if settings.workers < 1 or settings.partition_rows < 1:
        msg = "workers and partition_rows must be at least 1"
        raise ConfigError(msg)
    if not re.fullmatch(r"\d+(\.\d+)?\s*([KMGT]i?B|%)", settings.duckdb_memory_limit.strip(), flags=re.IGNORECASE):
        msg = (
            f"duckdb_memory_limit must be a size such as '4GB', '512MiB' or '50%', not {settings.duckdb_memory_limit!r}"
        )
        raise ConfigError(msg)
    if not 0 < settings.coverage < 1 or not 0 < settings.ci_level < 1:
        msg = "coverage and ci_level must lie strictly between 0 and 1"
        raise ConfigError(msg)
    check_ranges(settings, sources)
    resolved = settings.resolved()
    check_locations(resolved, sources)
    return resolved


def check_locations(settings: Settings, sources: Mapping[str, str] | None = None) -> None:
    """Refuse a local landing folder that holds a place the pipeline writes (the archive, quarantine, release
    store, reports, the warehouse or its raw and normalised stores, Prefect's home), or lies inside one. A
    landing folder set to the home made every run read the home's own raw files, releases, reports and the
    warehouse's lock as exports, quarantine them, and read the quarantine's reason files the next time; with
    ``landing_mode = "move"`` it would remove what it loaded. A place in a hidden folder of the landing
    folder is never read (flows.landing.ignored), so Prefect's ``.prefect`` there is fine."""
    from flows.landing import ignored  # here: flows.landing imports the storage layer (fsspec)
    from warehouse import NORMALISED_DIR, RAW_DIR
    from warehouse.storage import is_url

    landing = settings.landing
    if landing is None or is_url(landing):
        return
    root = Path(landing).resolve()
    warehouse = Path(settings.warehouse).resolve() if settings.warehouse is not None else None
    written: list[tuple[str, str, Path | str | None]] = [  # what the message calls it, its key, where it is
        ("archive", "archive", settings.archive),
        ("quarantine", "quarantine", settings.quarantine),
        ("releases", "releases", settings.releases),
        ("reports", "reports", settings.reports),
        ("warehouse", "warehouse", warehouse),
        ("the raw store beside the warehouse", "warehouse", warehouse.parent / RAW_DIR if warehouse else None),
        (
            "the normalised store beside the warehouse",
            "warehouse",
            warehouse.parent / NORMALISED_DIR if warehouse else None,
        ),
        ("prefect_home", "prefect_home", settings.prefect_home),
    ]
    sources = sources or {}
    for name, key, place in written:
        if place is None or is_url(place):
            continue
        source = sources.get("landing") or sources.get(key) or sources.get("home")
        where = f"{source}: " if source else ""
        path = Path(place).resolve()
        if root == path or root.is_relative_to(path):
            msg = f"{where}landing {root} lies in {name} ({path}): give the landing folder a place of its own"
            raise ConfigError(msg)
        if path.is_relative_to(root) and not ignored(path.relative_to(root).as_posix()):
            msg = (
                f"{where}landing {root} holds {name} ({path}): every run would read the pipeline's own files as "
                "exports. Give the landing folder a place of its own (by default <home>/landing)"
            )
            raise ConfigError(msg)


#: What each number must satisfy to mean anything, and how to say so. A value outside ran the pipeline to the
#: end and published it: limits from a dozen people, an infinite reference change value, every plate held.
RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "rcv_probability": (
        lambda v: 0 < v < 1,
        "a probability strictly between 0 and 1 (1 gives an infinite change value)",
    ),
    "early_years": (lambda v: v > 0, "a duration in years above 0 (at 0 or below no patient is early)"),
    "quantile_k": (lambda v: v >= 1, "at least 1: with 0 a release may publish one person's extreme value"),
    "max_bad_row_share": (lambda v: 0 <= v <= 1, "a share between 0 and 1"),
    "below_lod_share_max": (lambda v: 0 <= v <= 1, "a share between 0 and 1"),
    "control_cv_max": (lambda v: v > 0, "a CV above 0 (as a fraction: 0.2 is 20 %)"),
    "replicate_cv_max": (lambda v: v > 0, "a CV above 0 (as a fraction: 0.2 is 20 %)"),
    "max_control_shift": (lambda v: v > 0, "a shift above 0 on the log scale"),
    "calibrator_recovery_max_dev": (lambda v: v > 0, "percentage points above 0"),
    "rcv_min_subjects": (lambda v: v >= 2, "at least 2 people"),
    "combat_min_batch": (lambda v: v >= 2, "at least 2 samples (ComBat estimates a variance per batch)"),
    "min_bridges": (lambda v: v >= 1, "at least 1"),
    "report_max_plots": (lambda v: v >= 0, "0 or more"),
    "writer_wait_seconds": (lambda v: v >= 0, "0 or more seconds"),
    "landing_min_age_seconds": (lambda v: v >= 0, "0 or more seconds"),
}
#: CLSI EP28-A3c: the robust method (Horn-Pesce) is for groups of 20 or more
MIN_N_SMALL_FLOOR = 20
#: an age cut point is an age in years a person can have
AGE_RANGE = (0.0, 130.0)


def smallest_nonparametric_n(coverage: float, ci_level: float) -> int:
    """The smallest group whose non-parametric limits have both order-statistic CI bounds at ``ci_level``
    (119 for a 95 % interval with 90 % CIs, CLSI EP28-A3c's table). The lower limit's CI needs a rank below
    it: the smallest value must lie below the limit's percentile p = (1 - coverage) / 2 with probability at
    least (1 + ci_level) / 2, that is (1 - p)^n <= (1 - ci_level) / 2 (the upper limit likewise);
    transforms.reference.ci_ranks agrees (tested)."""
    p, tail = (1 - coverage) / 2, (1 - ci_level) / 2
    n = max(1, math.ceil(math.log(tail) / math.log1p(-p)))
    while (1 - p) ** n > tail:  # rounding of the logarithms, either way
        n += 1
    while n > 1 and (1 - p) ** (n - 1) <= tail:
        n -= 1
    return n


def check_ranges(settings: Settings, sources: Mapping[str, str] | None = None) -> None:
    """Refuse numbers outside what they can mean, naming the key, its value and where it was set."""
    sources = sources or {}

    def refuse(key: str, value: object, requirement: str) -> NoReturn:
        where = f"{sources[key]}: " if key in sources else ""
        msg = f"{where}{key} = {value!r} must be {requirement}"
        raise ConfigError(msg)

    for key, (ok, requirement) in RANGES.items():
        value = getattr(settings, key)
        if not ok(value):  # NaN fails every comparison, so it is refused too
            refuse(key, value, requirement)
    for platform, table in settings.platform_thresholds.items():
        for key, value in table.items():
            if key in RANGES and not RANGES[key][0](value):
                where = f"{sources['platform_thresholds']}: " if "platform_thresholds" in sources else ""
                msg = f"{where}[platform_thresholds.{platform}] {key} = {value!r} must be {RANGES[key][1]}"
                raise ConfigError(msg)
    floor = smallest_nonparametric_n(settings.coverage, settings.ci_level)
    if not settings.min_n >= floor:
        refuse(
            "min_n",
            settings.min_n,
            f"at least {floor}, the smallest group whose non-parametric limits have {settings.ci_level:.0%} CIs "
            f"at coverage {settings.coverage:g}; smaller groups get the robust or parametric method from "
            "min_n_small",
        )
    if not MIN_N_SMALL_FLOOR <= settings.min_n_small <= settings.min_n:
        refuse(
            "min_n_small",
            settings.min_n_small,
            f"between {MIN_N_SMALL_FLOOR} (the robust method's smallest group, CLSI EP28-A3c) and min_n "
            f"({settings.min_n})",
        )
    outside = [a for a in settings.age_bands if not AGE_RANGE[0] < a < AGE_RANGE[1]]
    if outside or len(set(settings.age_bands)) < len(settings.age_bands):
        refuse("age_bands", settings.age_bands, "distinct ages in years between 0 and 130, e.g. [45] or [40, 60]")


def check_landing(settings: Settings) -> None:
    """Refuse a local landing folder that does not exist, unless it is the home's own ``landing`` (created on
    first use). A configured folder that is missing is a mistyped path or a share that is not mounted:
    creating it empty would let the run report nothing new and hide the problem."""
    from warehouse.storage import is_url  # here: the run imports it anyway, other commands need not (fsspec)

    landing = settings.landing
    if landing is None or is_url(landing) or Path(landing).is_dir():
        return
    if Path(landing).resolve() == (settings.home / "landing").resolve():
        return
    why = "the landing folder does not exist: mount it or create it, or correct `landing` in the configuration"
    raise FileNotFoundError(errno.ENOENT, why, str(landing))


def subject_key(settings: Settings) -> bytes:
    """The key for pseudonymising subject ids: configured, or created once per home (never in the repo)."""
    if settings.subject_key:
        return settings.subject_key.encode()
    path = settings.home / ".subject_key"
    if not path.exists():
        settings.home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip().encode()
