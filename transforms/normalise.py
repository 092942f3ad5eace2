"""Normalisation: canonical analyte identity, canonical units, sample linkage, plate effects, replicates.

Each step is ``verb_object(frame, ...) -> frame`` (plus, where rows can be held back, a quarantine frame
in ``transforms.schema.QUARANTINE``). Rules:

* analyte names are matched after folding case, spaces, punctuation and Greek letters; an unknown name is
  identified by the UniProt accession its export gives (Olink), else held back with the closest known names,
  never guessed;
* concentrations go to pg/mL through pint; molar units through the molecular weight; NPX stays NPX;
* values are corrected on the log scale (natural log for concentrations, NPX as is) and transformed back;
* censored values keep their flag; their limit moves with the plate shift like measured values.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Sequence
from functools import lru_cache

import polars as pl

from transforms import schema
from transforms.batches import ConfoundedError, bridge_shifts, combat

CANONICAL_UNIT = "pg/mL"
LOG_SCALE_UNITS = {"NPX"}  # already log2 relative: never converted, never pooled with concentrations
#: Signal intensities (Luminex MFI, read when an export has no concentrations): never converted, never pooled with
#: concentrations, on the log scale like them (transforms.readers.luminex, setting luminex_mfi_section)
INTENSITY_UNITS = {"MFI"}
GREEK = {"α": "alpha", "β": "beta", "γ": "gamma", "δ": "delta", "κ": "kappa", "µ": "u", "μ": "u"}
MEASURED_TYPES = ["sample", "bridge"]  # sample types that belong to a person in a manifest


def fold_name(name: str) -> str:
    """The matching key of an analyte name: 'TNF-α' -> 'tnfalpha', 'IL-6 (Human)' -> 'il6'."""
    out = name.strip()
    for greek, latin in GREEK.items():
        out = out.replace(greek, latin)
    out = re.sub(r"\((human|hu|h)\)\s*$", "", out, flags=re.IGNORECASE)
    return re.sub(r"[\s\-_./()]", "", out).lower()


def dictionary_lookup(dictionary: pl.DataFrame) -> pl.DataFrame:
    """Expand the curated dictionary (hgnc, uniprot, label, mw_kda, aliases) to one row per folded alias.

    Raises ValueError when two analytes claim the same alias: the dictionary must be unambiguous.
    """
    rows = dictionary.with_columns(
        pl.concat_str([pl.col("hgnc"), pl.col("label"), pl.col("aliases")], separator="|").str.split("|").alias("alias")
    ).explode("alias")
    rows = rows.with_columns(pl.col("alias").map_elements(fold_name, return_dtype=pl.String).alias("key"))
    rows = rows.unique(["key", "hgnc"]).filter(pl.col("key") != "")
    clash = rows.group_by("key").agg(pl.col("hgnc").unique()).filter(pl.col("hgnc").list.len() > 1)
    if clash.height:
        msg = f"analyte dictionary is ambiguous: {clash.rows()[:5]}; give each alias to one analyte"
        raise ValueError(msg)
    return rows.select(
        "key",
        pl.col("hgnc").alias("analyte"),
        "uniprot",
        pl.col("label").alias("analyte_label"),
        pl.col("mw_kda").cast(pl.Float64),
    )


def held_rows(frame: pl.DataFrame, *, stage: str, check: str, reason: pl.Expr) -> pl.DataFrame:
    """``frame``'s rows held back at ``stage`` by ``check``, in schema.QUARANTINE; the reason starts with the
    file and line of each row."""
    held = frame.with_columns(
        pl.lit(stage).alias("stage"),
        pl.lit(check).alias("check"),
        (
            pl.col("source_file") + pl.lit(": line ") + pl.col("line_number").cast(pl.String) + pl.lit(": ") + reason
        ).alias("reason"),
    )
    return schema.conform(held, schema.QUARANTINE)


#: A UniProt accession (UniProt's own pattern, with an isoform suffix), or several joined by '_' as Olink names an
#: assay of a protein complex (IL-12: P29459_P29460).
_ACCESSION = r"(?:[OPQ][0-9][A-Z0-9]{3}[0-9]|[A-NR-Z][0-9](?:[A-Z][A-Z0-9]{2}[0-9]){1,2})(?:-[0-9]+)?"
UNIPROT_ACCESSIONS = rf"^{_ACCESSION}(?:[_;,]\s*{_ACCESSION})*$"
#: Where an analyte's identity came from (resolve_names).
BY_NAME, BY_UNIPROT, VENDOR = "dictionary", "dictionary by UniProt", "vendor"
NAME_KEYS = ["platform", "panel", "analyte_raw"]


def _accession_cell(cell: pl.Expr) -> pl.Expr:
    """An accession cell as text, stripped; empty and the usual words for none (NA as R writes it) are null."""
    text = cell.cast(pl.String).str.strip_chars()
    return pl.when(text.str.to_uppercase().is_in(["", "NA", "N/A", "NAN", "NONE", "-"])).then(None).otherwise(text)


def resolve_names(names: pl.DataFrame, lookup: pl.DataFrame) -> pl.DataFrame:
    """The analyte of each raw name: ``names`` has platform, panel, analyte_raw and (optionally) uniprot_raw,
    in any number of rows; returns one row per (platform, panel, analyte_raw) with analyte, uniprot,
    analyte_label, mw_kda (null analyte: unknown), analyte_from, the name's accessions (``accessions``) and
    its folded form (``key``, :func:`fold_name`).

    A name the dictionary knows (folded) is its analyte. An unknown name whose export gives one UniProt
    accession for it (Olink's files do) is the dictionary's analyte of that accession when there is one, else
    an analyte of its own under the vendor's name and accession (``vendor``: Olink names its assays by gene
    symbol, and an Explore HT panel holds thousands the curated dictionary does not list). An unknown name
    without an accession, or with two, stays unknown. Normalisation parts and their plan resolve alike
    (the plan from every raw row's name, a part from its rows, which hold all of their names' rows)."""
    if "uniprot_raw" not in names.columns:
        names = names.with_columns(pl.lit(None, pl.String).alias("uniprot_raw"))
    per_name = (
        names.select(*NAME_KEYS, _accession_cell(pl.col("uniprot_raw")).alias("uniprot_raw"))
        .group_by(NAME_KEYS)
        .agg(pl.col("uniprot_raw").drop_nulls().unique().sort().alias("accessions"))
        .with_columns(pl.col("analyte_raw").map_elements(fold_name, return_dtype=pl.String).alias("key"))
    )
    by_name = per_name.join(lookup, on="key", how="left")
    one = pl.col("accessions").list.len() == 1
    accession = pl.when(one).then(pl.col("accessions").list.first())
    valid = accession.str.contains(UNIPROT_ACCESSIONS).fill_null(False)
    dictionary = lookup.unique("analyte").select(
        pl.col("uniprot").alias("__acc"), "analyte", "uniprot", "analyte_label", "mw_kda"
    )
    dictionary = dictionary.filter(pl.col("__acc").is_not_null() & (pl.col("__acc").count().over("__acc") == 1))
    unknown = by_name.filter(pl.col("analyte").is_null()).drop("analyte", "uniprot", "analyte_label", "mw_kda")
    by_accession = unknown.with_columns(accession.alias("__acc")).join(dictionary, on="__acc", how="left")
    vendor = pl.col("analyte").is_null() & valid
    resolved = by_accession.with_columns(
        pl.when(vendor).then(pl.col("analyte_raw").str.strip_chars()).otherwise(pl.col("analyte")).alias("analyte"),
        pl.when(vendor).then(pl.col("__acc")).otherwise(pl.col("uniprot")).alias("uniprot"),
        pl.when(vendor)
        .then(pl.col("analyte_raw").str.strip_chars())
        .otherwise(pl.col("analyte_label"))
        .alias("analyte_label"),
        pl.when(pl.col("analyte").is_not_null())
        .then(pl.lit(BY_UNIPROT))
        .when(vendor)
        .then(pl.lit(VENDOR))
        .alias("analyte_from"),
    ).drop("__acc")
    known = by_name.filter(pl.col("analyte").is_not_null()).with_columns(pl.lit(BY_NAME).alias("analyte_from"))
    columns = [*NAME_KEYS, "analyte", "uniprot", "analyte_label", "mw_kda", "analyte_from", "accessions", "key"]
    return pl.concat([known.select(columns), resolved.select(columns)], how="vertical_relaxed")


def named_by_uniprot(names: pl.DataFrame, lookup: pl.DataFrame) -> list[str]:
    """The raw names :func:`resolve_names` identified by their UniProt accession, as the run summary tells
    them: "ADM (P35318)" for an analyte of its own, "IL-6 new as IL6 (P05231)" for a dictionary marker."""
    found = resolve_names(names, lookup).filter(pl.col("analyte_from").is_in([BY_UNIPROT, VENDOR]))
    text = (
        pl.when(pl.col("analyte_from") == VENDOR)
        .then(pl.col("analyte"))
        .otherwise(pl.col("analyte_raw") + pl.lit(" as ") + pl.col("analyte"))
        + pl.lit(" (")
        + pl.col("uniprot")
        + pl.lit(")")
    )
    return sorted(set(found.select(text.alias("t"))["t"].to_list()))


def resolve_analytes(rows: pl.DataFrame, lookup: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Attach analyte (HGNC), uniprot, analyte_label and mw_kda (:func:`resolve_names`); hold back names the
    dictionary lacks and the export gives no UniProt accession for."""
    wanted = [*NAME_KEYS, *(["uniprot_raw"] if "uniprot_raw" in rows.columns else [])]
    names = resolve_names(rows.select(wanted).unique(), lookup)
    # a name resolves alike on every platform and panel (the common case): joined on the name alone, a third of
    # the time of a join on all three
    on = ["analyte_raw"] if names["analyte_raw"].is_unique().all() else NAME_KEYS
    attach = names.select(*on, "analyte", "uniprot", "analyte_label", "mw_kda")
    named = rows.join(attach, on=on, how="left", nulls_equal=True, maintain_order="left")
    unknown = named.filter(pl.col("analyte").is_null())
    known = named.filter(pl.col("analyte").is_not_null())
    if unknown.height == 0:
        return known, schema.empty(schema.QUARANTINE)
    keys = lookup["key"].to_list()
    key_to_name = dict(zip(lookup["key"], lookup["analyte"], strict=True))
    hints = {}
    for raw in unknown["analyte_raw"].unique().to_list():
        close = difflib.get_close_matches(fold_name(raw), keys, n=3, cutoff=0.5)
        names_close = sorted({key_to_name[k] for k in close})
        hints[raw] = ", ".join(names_close) if names_close else "none"
    accessions = names.filter(pl.col("accessions").list.len() > 0).select(
        *NAME_KEYS, pl.col("accessions").list.join(", ").alias("__acc")
    )
    unknown = unknown.with_columns(
        pl.col("analyte_raw").replace_strict(hints, return_dtype=pl.String).alias("__hint")
    ).join(accessions, on=NAME_KEYS, how="left", nulls_equal=True, maintain_order="left")
    given = (
        pl.when(pl.col("__acc").is_null())
        .then(pl.lit(""))
        .when(pl.col("__acc").str.contains(","))
        .then(pl.lit("; the export gives it several UniProt accessions (") + pl.col("__acc") + pl.lit(")"))
        .otherwise(pl.lit("; its UniProt accession '") + pl.col("__acc") + pl.lit("' is not one"))
    )
    reason = (
        pl.lit("analyte '")
        + pl.col("analyte_raw")
        + pl.lit("' is not in the analyte dictionary (closest: ")
        + pl.col("__hint")
        + pl.lit(")")
        + given
        + pl.lit("; add it to transforms/analytes.csv if it is a new name for a known marker")
    )
    return known, held_rows(unknown, stage="normalise", check="analyte_known", reason=reason)


@lru_cache(maxsize=1)
def _registry():  # pint builds its registry in ~0.4 s: once per process
    import pint

    return pint.UnitRegistry()


#: A concentration as labs write it, read without regard to case once folded (:func:`_fold_unit`): a mass or
#: amount per volume (``pg/mL``, ``PG/ML``, ``pmol/L``) or a molarity (``pM``, ``PM``), with the prefixes that
#: immunoassays use. Case cannot be trusted in exports (a LIMS writes ``PG/ML``, a spreadsheet ``Pg/mL``), and
#: read case-sensitively those were a petagram and a megalitre: ``pg/ML`` became 1e-9 pg/mL, without a word.
LAB_CONCENTRATION = re.compile(r"(?P<prefix>[fpnum]?)(?:(?P<base>g|mol)/(?P<volume>[dmu]?)l|(?P<molar>m))")

#: What a unit read by pint as written (not a lab spelling) may come to, in pg/mL (mass) or pmol/L (molar)
#: per unit: from fg/L to g/mL. Beyond it (``Tg/L``, ``fg/kL``) it is no immunoassay's unit, and it is held.
PLAUSIBLE_FACTOR = (1e-6, 1e12)


def _fold_unit(unit: str) -> str:
    """A unit in the form LAB_CONCENTRATION matches: micro as ``u``, lower case, ``per`` as a slash, no spaces."""
    text = unit.strip().replace("µ", "u").replace("μ", "u").lower()
    return re.sub(r"\s+", "", re.sub(r"\s+per\s+", "/", text))


def lab_spelling(unit: str) -> str | None:
    """The spelling pint reads as a lab means ``unit`` (``PG/ML`` -> ``pg/mL``, ``PM`` -> ``pM``), or None."""
    m = LAB_CONCENTRATION.fullmatch(_fold_unit(unit))
    if m is None:
        return None
    if m["molar"]:
        return f"{m['prefix']}M"
    return f"{m['prefix']}{m['base']}/{m['volume']}L"


def standard_spelling(unit: str) -> str | None:
    """``unit`` as refranges spells it: NPX and MFI in capitals, a lab concentration in its lab spelling
    (:func:`lab_spelling`: ``PG/ML`` as ``pg/mL``); None for any other unit."""
    text = unit.strip().upper()
    return text if text in LOG_SCALE_UNITS | INTENSITY_UNITS else lab_spelling(unit)


def unit_factor(unit: str) -> tuple[float | None, str]:
    """How to reach pg/mL from ``unit``: (factor, kind) with kind 'mass', 'molar' (factor in pg/mL per
    pmol/L ... per kDa), 'log' for NPX or 'intensity' for MFI (both kept as they are); (None, why) when the unit
    is unknown or not a concentration.

    A lab spelling (LAB_CONCENTRATION) is read whatever its case; any other unit as pint reads it, and held
    unless it comes to a plausible concentration (PLAUSIBLE_FACTOR)."""
    text = unit.strip()
    if text.upper() in LOG_SCALE_UNITS:
        return 1.0, "log"
    if text.upper() in INTENSITY_UNITS:
        return 1.0, "intensity"
    import pint

    ureg = _registry()
    lab = lab_spelling(text)
    try:
        q = ureg.Quantity(1.0, lab or text.replace("µ", "u").replace("μ", "u"))
    except (pint.errors.UndefinedUnitError, pint.errors.DefinitionSyntaxError, AttributeError, ValueError):
        return None, f"unit '{unit}' is unknown"
    for kind, target in (("mass", "pg/mL"), ("molar", "pmol/L")):
        if q.dimensionality != ureg.Quantity(1.0, target).dimensionality:
            continue
        factor = float(f"{q.to(target).magnitude:.12g}")  # molar: x pmol/L * mw kDa = x * mw pg/mL
        low, high = PLAUSIBLE_FACTOR
        if lab is None and not low <= factor <= high:
            return None, (
                f"unit '{unit}' reads as {factor:g} {target}, which no immunoassay reports; write it as a lab "
                "unit (pg/mL, ng/mL, pmol/L, pM …)"
            )
        return factor, kind
    return None, f"unit '{unit}' is not a mass or molar concentration"


def convert_units(rows: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Convert value, limit_value and lod to the canonical unit (pg/mL, or NPX for Olink)."""
    units = rows["unit_raw"].unique().drop_nulls().to_list()
    table = []
    for u in units:
        factor, kind = unit_factor(u)
        table.append(
            {
                "unit_raw": u,
                "__factor": factor,
                "__kind": kind if factor is not None else "unknown",
                "__why": None if factor is not None else kind,
            }
        )
    facts = pl.DataFrame(
        table, schema={"unit_raw": pl.String, "__factor": pl.Float64, "__kind": pl.String, "__why": pl.String}
    )
    joined = rows.join(facts, on="unit_raw", how="left")
    to_canonical = (
        pl.when(pl.col("__kind") == "molar").then(pl.col("__factor") * pl.col("mw_kda")).otherwise(pl.col("__factor"))
    )
    joined = joined.with_columns(to_canonical.alias("__f"))
    bad = joined.filter(pl.col("__f").is_null())
    good = joined.filter(pl.col("__f").is_not_null()).with_columns(
        pl.when(pl.col("__kind").is_in(["log", "intensity"]))
        .then(pl.col("unit_raw").str.strip_chars().str.to_uppercase())
        .otherwise(pl.lit(CANONICAL_UNIT))
        .alias("unit"),
        (pl.col("value") * pl.col("__f")).alias("value"),
        (pl.col("limit_value") * pl.col("__f")).alias("limit_value"),
        (pl.col("lod") * pl.col("__f")).alias("lod"),
    )
    reason = (
        pl.when(pl.col("__kind") == "molar")
        .then(
            pl.lit("unit '")
            + pl.col("unit_raw")
            + pl.lit("' is molar and the dictionary has no molecular weight for ")
            + pl.col("analyte")
            + pl.lit("; add mw_kda to transforms/analytes.csv")
        )
        .otherwise(
            pl.col("__why").fill_null(pl.lit("unit missing"))
            + pl.lit(" for ")
            + pl.col("analyte")
            + pl.lit("; correct the unit in the export")
        )
    )
    held = held_rows(bad, stage="normalise", check="unit_known", reason=reason)
    return good.drop("__factor", "__kind", "__why", "__f"), held


def _folded_id(column: pl.Expr) -> pl.Expr:
    """A sample id without its leading zeros and letter case: what a spreadsheet that read it as a number,
    or a hand retyping it, may have left of it."""
    return column.cast(pl.String).str.strip_chars_start("0").str.to_lowercase()


def ids_alike(ids: Sequence[str], among: Sequence[str]) -> dict[str, str]:
    """For each of ``ids`` not in ``among``, the one id of ``among`` that differs from it only by leading
    zeros or letter case (:func:`_folded_id`), where there is exactly one."""
    listed_ids = dict.fromkeys(among)
    frame = pl.DataFrame({"among": list(listed_ids)}, schema={"among": pl.String})
    listed = frame.with_columns(_folded_id(pl.col("among")).alias("folded")).filter(pl.col("folded").is_unique())
    asked = pl.DataFrame({"id": [i for i in dict.fromkeys(ids) if i not in listed_ids]}, schema={"id": pl.String})
    pairs = asked.with_columns(_folded_id(pl.col("id")).alias("folded")).join(listed, on="folded", how="inner")
    return dict(zip(pairs["id"].to_list(), pairs["among"].to_list(), strict=True))


def _listed_alike(unknown: pl.DataFrame, samples: pl.DataFrame) -> pl.DataFrame:
    """``unknown`` rows with ``__alike``: the one manifest id that differs from the row's sample id only by
    leading zeros or letter case (an export saved from a spreadsheet turns 0100042 into 100042), else null.
    Named in the reason only, never linked: two such ids may be two people."""
    ids = unknown.get_column("sample_id").cast(pl.String)
    alike = (
        ids_alike(ids.unique().to_list(), samples.get_column("sample_id").cast(pl.String).to_list()) if len(ids) else {}
    )
    return unknown.with_columns(ids.replace_strict(alike, default=None, return_dtype=pl.String).alias("__alike"))


def link_samples(
    rows: pl.DataFrame, samples: pl.DataFrame, held_samples: pl.DataFrame | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Keep study rows whose sample a manifest knows; controls, calibrators and blanks pass unlinked.

    Rows of unknown samples are held back ('link' stage); they load as soon as a manifest names them,
    because linking is recomputed from the raw rows on every run. ``held_samples`` (sample_id, reason): the
    samples whose manifest row is itself held back, whose rows say so and why (they said "is in no manifest;
    send a manifest that lists it" while the manifest listed it with, say, a date to correct).
    """
    study = rows.filter(pl.col("sample_type").is_in(MEASURED_TYPES))
    other = rows.filter(~pl.col("sample_type").is_in(MEASURED_TYPES))
    known = samples.select("sample_id", "cohort", "matrix", pl.col("sex").alias("__sex"), pl.col("age").alias("__age"))
    joined = study.join(known, on="sample_id", how="left")
    unknown = _listed_alike(joined.filter(pl.col("cohort").is_null()), samples)
    held_as = (
        held_samples.select(pl.col("sample_id").cast(pl.String), pl.col("reason").alias("__held"))
        if held_samples is not None and held_samples.height
        else pl.DataFrame(schema={"sample_id": pl.String, "__held": pl.String})
    ).unique("sample_id", keep="first", maintain_order=True)
    unknown = unknown.join(held_as, on="sample_id", how="left", maintain_order="left")
    listed_alike = (
        pl.lit(" is in no manifest, but a manifest lists ")
        + pl.col("__alike")
        + pl.lit(
            " (leading zeros or letter case lost, as a spreadsheet can do?); correct the id in the export or the"
            " manifest (the rows load on the next run)"
        )
    )
    held_there = (
        pl.lit(" is in a manifest, but its row there is held back (")
        + pl.col("__held")
        + pl.lit("); correct that row (the rows load on the next run)")
    )
    listed_nowhere = pl.lit(" is in no manifest; send a manifest that lists it (the rows load on the next run)")
    reason = (
        pl.lit("sample ")
        + pl.col("sample_id").cast(pl.String)
        + pl.when(pl.col("__held").is_not_null())
        .then(held_there)
        .when(pl.col("__alike").is_not_null())
        .then(listed_alike)
        .otherwise(listed_nowhere)
    )
    held = held_rows(unknown, stage="link", check="sample_in_manifest", reason=reason)
    linked = pl.concat(
        [
            joined.filter(pl.col("cohort").is_not_null()),
            other.with_columns(
                pl.lit(None, pl.String).alias("cohort"),
                pl.lit(None, pl.String).alias("matrix"),
                pl.lit(None, pl.String).alias("__sex"),
                pl.lit(None, pl.Float64).alias("__age"),
            ),
        ],
        how="vertical",
    )
    return linked, held


def to_log(frame: pl.DataFrame) -> pl.DataFrame:
    """Add log_value and log_limit: natural log for concentrations, NPX unchanged."""
    is_log = pl.col("unit").is_in(list(LOG_SCALE_UNITS))

    def _log(c: str) -> pl.Expr:
        return pl.when(is_log).then(pl.col(c)).when(pl.col(c) > 0).then(pl.col(c).log()).otherwise(None)

    return frame.with_columns(
        _log("value").alias("log_value"), _log("limit_value").alias("log_limit"), _log("lod").alias("log_lod")
    )


def from_log(frame: pl.DataFrame) -> pl.DataFrame:
    """Inverse of :func:`to_log` for value, limit_value and lod."""
    is_log = pl.col("unit").is_in(list(LOG_SCALE_UNITS))

    def _exp(c: str) -> pl.Expr:
        return pl.when(is_log).then(pl.col(c)).otherwise(pl.col(c).exp())

    return frame.with_columns(
        _exp("log_value").alias("value"), _exp("log_limit").alias("limit_value"), _exp("log_lod").alias("lod")
    )


PLATE_KEYS = ["platform", "panel", "analyte"]


#: ``control_id`` of an anchor made from controls that are named per plate (Olink Explore writes each plate's
#: controls under their own ids): the plate's level is the median of all its controls' means.
POOLED = "(controls named per plate, pooled)"


def _control_means(frame: pl.DataFrame) -> pl.DataFrame:
    """Per platform, panel, analyte, plate and control sample: the mean log value of its measured wells."""
    ctrl = frame.filter(
        (pl.col("sample_type") == "control") & pl.col("censoring").is_null() & pl.col("log_value").is_not_null()
    )
    return ctrl.group_by([*PLATE_KEYS, "plate_id", "sample_id"]).agg(
        pl.col("log_value").mean().alias("m"), pl.col("unit").first()
    )


def _named_per_plate(means: pl.DataFrame) -> pl.DataFrame:
    """The platform x panel x analyte keys whose controls are named per plate: two plates or more, and no
    control id on more than one of them. A control of the same name on every plate anchors by its name."""
    ids = means.group_by([*PLATE_KEYS, "sample_id"]).agg(pl.col("plate_id").n_unique().alias("n"))
    plates = means.group_by(PLATE_KEYS).agg(pl.col("plate_id").n_unique().alias("plates"))
    once = ids.group_by(PLATE_KEYS).agg((pl.col("n").max() == 1).alias("once"))
    return once.join(plates, on=PLATE_KEYS, nulls_equal=True).filter(pl.col("once") & (pl.col("plates") >= 2))


def _pool(means: pl.DataFrame, keys: pl.DataFrame) -> pl.DataFrame:
    """``means`` with the controls of the ``keys`` (platform, panel, analyte) pooled per plate under
    :data:`POOLED`: the median of the plate's control means."""
    if keys.height == 0:
        return means
    marked = means.join(
        keys.select(PLATE_KEYS).with_columns(pl.lit(True).alias("__pool")), on=PLATE_KEYS, how="left", nulls_equal=True
    )
    pooled = (
        marked.filter(pl.col("__pool").fill_null(False))
        .group_by([*PLATE_KEYS, "plate_id"])
        .agg(pl.col("m").median(), pl.col("unit").first())
        .with_columns(pl.lit(POOLED).cast(means.schema["sample_id"]).alias("sample_id"))
    )
    kept = marked.filter(pl.col("__pool").is_null()).drop("__pool")
    return pl.concat([kept, pooled.select(kept.columns)], how="vertical")


def plate_control_anchors(frame: pl.DataFrame) -> pl.DataFrame:
    """The long-run level of each plate control: per platform, panel, analyte and control sample
    (``control_id``), the median over plates of its per-plate mean log value (``level``; NPX as is, else the
    natural log of ``unit``, the canonical unit), and the number of plates (``n_plates``). Controls named
    per plate (no id on two plates) are pooled per plate first, under ``control_id`` :data:`POOLED`.
    :func:`plate_control_shifts` aligns every plate to these levels; kept with a release, they bring a plate
    measured later onto the release's scale (frozen normalisation)."""
    means = _control_means(frame)
    return (
        _pool(means, _named_per_plate(means))
        .group_by([*PLATE_KEYS, "sample_id"])
        .agg(pl.col("unit").first(), pl.col("m").median().alias("level"), pl.len().cast(pl.Int64).alias("n_plates"))
        .rename({"sample_id": "control_id"})
        .sort([*PLATE_KEYS, "control_id"], nulls_last=True)
    )


def plate_control_shifts(frame: pl.DataFrame, anchors: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per platform, panel, analyte and plate: the log-scale shift that brings the plate's controls onto
    their long-run level (the median of the differences over the control samples on that plate). The levels
    are those of ``frame`` itself (:func:`plate_control_anchors`) unless ``anchors`` gives frozen ones; a
    plate whose controls have no anchor gets no shift. Where the anchors pool controls named per plate
    (:data:`POOLED`), the plate's controls are pooled the same way. Needs log_value.

    Returns platform, panel, analyte, plate_id, shift, n_controls.
    """
    means = _control_means(frame)
    levels = plate_control_anchors(frame) if anchors is None else anchors
    per_plate = _pool(means, levels.filter(pl.col("control_id") == POOLED).select(PLATE_KEYS).unique())
    levels = levels.select(*PLATE_KEYS, pl.col("control_id").alias("sample_id"), pl.col("level").alias("ref"))
    deltas = per_plate.join(levels, on=[*PLATE_KEYS, "sample_id"]).with_columns(
        (pl.col("m") - pl.col("ref")).alias("d")
    )
    return deltas.group_by([*PLATE_KEYS, "plate_id"]).agg(
        pl.col("d").median().alias("shift"), pl.col("sample_id").n_unique().alias("n_controls")
    )


def correct_plates_frozen(
    frame: pl.DataFrame, anchors: pl.DataFrame, *, label: str = "frozen"
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Plate-control normalisation of new plates onto frozen levels (``anchors`` from
    :func:`plate_control_anchors` of a release's data). Returns the corrected rows, with ``batch_method``
    ``plate_control (<label>)``, ``plate_shift`` and ``plate_controls`` (the shift applied and the number of
    anchored controls it came from) on every row, and the refused rows: every row of an analyte on a plate
    without a control the anchors know, in schema.QUARANTINE, with a reason that names the plate, the
    analyte and the controls needed. Never an uncorrected value on a frozen scale."""
    shifts = plate_control_shifts(frame, anchors)
    keyed = frame.join(shifts, on=[*PLATE_KEYS, "plate_id"], how="left")
    has = pl.col("shift").is_not_null()
    needed = anchors.group_by(PLATE_KEYS).agg(pl.col("control_id").sort().str.join(", ").alias("needed"))
    missing = keyed.filter(~has).join(needed, on=PLATE_KEYS, how="left", nulls_equal=True)
    reason = pl.format(
        "plate {} has no plate control that the release anchors for {} {} (it needs one of: {}); "
        "measure the plate controls on this plate, or score it against a release that has its own",
        pl.col("plate_id").fill_null("?"),
        pl.col("platform"),
        pl.col("analyte"),
        pl.col("needed").fill_null("none: the release has no anchors for this analyte"),
    )
    refused = held_rows(missing, stage="score", check="frozen_plate_controls", reason=reason)
    corrected = (
        _shift_all(keyed.filter(has), pl.col("shift"))
        .with_columns(
            pl.lit(f"plate_control ({label})").alias("batch_method"),
            pl.col("shift").alias("plate_shift"),
            pl.col("n_controls").cast(pl.Int64).alias("plate_controls"),
        )
        .drop("shift", "n_controls")
    )
    return corrected, refused


def _shift_all(frame: pl.DataFrame, shift: pl.Expr) -> pl.DataFrame:
    """Subtract a log-scale shift from values, limits and LODs alike (censored values move with their plate)."""
    return frame.with_columns(
        (pl.col("log_value") - shift).alias("log_value"),
        (pl.col("log_limit") - shift).alias("log_limit"),
        (pl.col("log_lod") - shift).alias("log_lod"),
    )


def correct_plates(frame: pl.DataFrame) -> pl.DataFrame:
    """Plate-control normalisation on the log scale; plates without usable controls stay as they are and
    say so in batch_method."""
    shifts = plate_control_shifts(frame)
    out = frame.join(shifts, on=["platform", "panel", "analyte", "plate_id"], how="left")
    has = pl.col("shift").is_not_null()
    return (
        _shift_all(out, pl.col("shift").fill_null(0.0))
        .with_columns(
            pl.when(has)
            .then(pl.lit("plate_control"))
            .otherwise(pl.lit("none: no plate controls"))
            .alias("batch_method"),
        )
        .drop("shift", "n_controls")
    )


def combine_replicates(frame: pl.DataFrame, *, one_row_shortcut: bool = True) -> pl.DataFrame:
    """One row per sample x analyte x platform x panel x unit (the `measurements` grain).

    Rule (docs/normalisation.md): measured replicates are averaged on the log scale; the replicate CV is
    the CV of the measured replicates on the linear scale (NPX: of 2**NPX). When at least half the
    replicates are censored below a limit, the result is censored below the largest such limit; when at
    least half are above the upper limit, it is censored above the smallest such limit. Replicates of the
    same sample on several plates (bridge samples) are combined the same way after plate correction.
    """
    keys = ["sample_id", "analyte", "uniprot", "analyte_label", "platform", "panel", "unit"]
    below = pl.col("censoring").is_in(["below_lod", "below_lloq"])
    above = pl.col("censoring") == "above_uloq"
    measured = pl.col("censoring").is_null() | (pl.col("censoring") == "extrapolated")
    linear = (
        pl.when(pl.col("unit").is_in(list(LOG_SCALE_UNITS)))
        .then(2 ** pl.col("log_value"))
        .otherwise(pl.col("log_value").exp())
    )
    listed = ["plate_id", "batch", "batch_method", "source_file"]  # each group lists its distinct values
    aggregations = [
        pl.len().alias("n_replicates"),
        below.sum().alias("__n_below"),
        above.sum().alias("__n_above"),
        pl.col("log_value").filter(measured).mean().alias("__m"),
        (pl.col("__lin").filter(measured).std() / pl.col("__lin").filter(measured).mean()).alias("replicate_cv"),
        pl.col("log_limit").filter(below).max().alias("__below_limit"),
        pl.col("log_limit").filter(above).min().alias("__above_limit"),
        pl.col("log_lod").max().alias("log_lod"),
        pl.col("censoring").filter(below).first().alias("__below_kind"),
        *[pl.col(c).unique().sort().str.join(",").alias(c) for c in listed],
        (pl.col("censoring") == "extrapolated").any().alias("__extrap"),
    ]
    # most exports have one well per sample and analyte: those rows skip the group-by, with the values the
    # aggregations give a group of one row (tested against the full group-by)
    counted = frame.with_columns(
        pl.len().over(keys).alias("__count") if one_row_shortcut else pl.lit(2).alias("__count")
    )
    single = counted.filter(pl.col("__count") == 1).select(
        *keys,
        pl.lit(1, pl.UInt32).alias("n_replicates"),
        below.fill_null(False).cast(pl.UInt32).alias("__n_below"),
        above.fill_null(False).cast(pl.UInt32).alias("__n_above"),
        pl.when(measured).then(pl.col("log_value")).alias("__m"),
        pl.lit(None, pl.Float64).alias("replicate_cv"),
        pl.when(below).then(pl.col("log_limit")).alias("__below_limit"),
        pl.when(above).then(pl.col("log_limit")).alias("__above_limit"),
        "log_lod",
        pl.when(below).then(pl.col("censoring")).alias("__below_kind"),
        *[pl.col(c).fill_null("") for c in listed],
        (pl.col("censoring") == "extrapolated").fill_null(False).alias("__extrap"),
    )
    several = counted.filter(pl.col("__count") > 1).with_columns(linear.alias("__lin")).group_by(keys).agg(aggregations)
    grouped = pl.concat([several, single], how="vertical_relaxed")
    half = pl.col("n_replicates") / 2
    out = (
        grouped.with_columns(
            pl.when(pl.col("__n_below") >= half)
            .then(pl.col("__below_kind"))
            .when(pl.col("__n_above") >= half)
            .then(pl.lit("above_uloq"))
            .when(pl.col("__extrap"))
            .then(pl.lit("extrapolated"))
            .otherwise(pl.lit(None, pl.String))
            .alias("censoring"),
        )
        .with_columns(
            pl.when(pl.col("censoring").is_in(["below_lod", "below_lloq"]))
            .then(pl.col("__below_limit"))
            .when(pl.col("censoring") == "above_uloq")
            .then(pl.col("__above_limit"))
            .otherwise(None)
            .alias("log_limit"),
        )
        .with_columns(
            pl.when(pl.col("censoring").is_in(["below_lod", "below_lloq", "above_uloq"]))
            .then(pl.col("log_limit"))
            .otherwise(pl.col("__m"))
            .alias("log_value"),
        )
    )
    return schema.conform(from_log(out), schema.NORMALISED)


def assign_batch(frame: pl.DataFrame) -> pl.DataFrame:
    """The batch of a row: the run for Olink (one NPX export = one normalisation run), the plate otherwise."""
    return frame.with_columns(
        pl.when(pl.col("platform") == "olink").then(pl.col("source_file")).otherwise(pl.col("plate_id")).alias("batch")
    )


def prepare_measurements(
    rows: pl.DataFrame, samples: pl.DataFrame, lookup: pl.DataFrame, held_samples: pl.DataFrame | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Identity, units and linkage; returns the log-scale frame (controls included) and what was held back
    (``held_samples``: see :func:`link_samples`)."""
    named, q1 = resolve_analytes(rows, lookup)
    converted, q2 = convert_units(named)
    linked, q3 = link_samples(converted, samples, held_samples)
    return to_log(assign_batch(linked)), pl.concat([q1, q2, q3], how="vertical")


def hold_plates(frame: pl.DataFrame, failing: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Hold back every row of the failing platform x panel x analyte x plate groups.

    ``failing`` has platform, panel, analyte, plate_id, check and why (one row per failing group).
    """
    keys = ["platform", "panel", "analyte", "plate_id"]
    if failing.height == 0:
        return frame, schema.empty(schema.QUARANTINE)
    marks = failing.select([*keys, "check", "why"]).unique(keys, keep="first")
    joined = frame.join(marks, on=keys, how="left", nulls_equal=True)
    bad = joined.filter(pl.col("check").is_not_null())
    reason = pl.lit("plate ") + pl.col("plate_id") + pl.lit(", ") + pl.col("analyte") + pl.lit(": ") + pl.col("why")
    held = bad.with_columns(
        pl.lit("qc").alias("stage"),
        (
            pl.col("source_file") + pl.lit(": line ") + pl.col("line_number").cast(pl.String) + pl.lit(": ") + reason
        ).alias("reason"),
    )
    return joined.filter(pl.col("check").is_null()).drop("check", "why"), schema.conform(held, schema.QUARANTINE)


BATCH_METHODS = ("plate_control", "bridge", "combat", "none")

#: The covariates ComBat protects, as columns of the normalisation frame (see link_samples).
COMBAT_COVARIATES = ["cohort", "__sex", "__age"]


def groups_of(frame: pl.DataFrame, keys: list[str]) -> Iterator[tuple[tuple[object, ...], pl.DataFrame]]:
    """``frame.group_by(keys, maintain_order=True)`` as (key, rows) pairs, without copying the rows when the
    frame is one group, the usual case in a part (a group-by gathers every row: 0.3 s of 2 M rows)."""
    if frame.height and frame.select(pl.col(k).n_unique() for k in keys).row(0) == (1,) * len(keys):
        yield frame.select(keys).row(0), frame
        return
    yield from frame.group_by(keys, maintain_order=True)


def correct_bridges(frame: pl.DataFrame, *, min_bridges: int = 3) -> pl.DataFrame:
    """Olink-style bridging between runs: every batch is shifted onto the batch with most study samples by the
    median difference of the bridge samples (study samples measured in both). Plate controls first align the
    plates within a run."""
    within = correct_plates(frame)
    study = within.filter(pl.col("sample_type").is_in(MEASURED_TYPES) & pl.col("censoring").is_null())
    if study.is_empty() or study["batch"].n_unique() < 2:
        return within
    out = []
    for key, part in groups_of(within, ["platform", "panel"]):
        measured = study.filter((pl.col("platform") == key[0]) & (pl.col("panel") == key[1]))
        if measured["batch"].n_unique() < 2:
            out.append(part)
            continue
        sizes = (
            measured.group_by("batch")
            .agg(pl.col("sample_id").n_unique().alias("n"))
            .sort(["n", "batch"], descending=[True, False])
        )
        reference = sizes["batch"][0]
        shifts = bridge_shifts(measured, batch="batch", reference_batch=reference).filter(
            pl.col("n_bridges") >= min_bridges
        )
        joined = part.join(shifts.select("analyte", "batch", "shift"), on=["analyte", "batch"], how="left")
        has = pl.col("shift").is_not_null()
        joined = _shift_all(joined, pl.col("shift").fill_null(0.0)).with_columns(
            pl.when(has | (pl.col("batch") == reference))
            .then(pl.lit("plate_control+bridge"))
            .otherwise(pl.lit("plate_control; not bridged: too few bridge samples"))
            .alias("batch_method")
        )
        out.append(joined.drop("shift"))
    return pl.concat(out, how="vertical_relaxed")


def correct_combat(
    frame: pl.DataFrame, *, min_batch: int = 10, parametric: bool = True, fit: list[pl.DataFrame] | None = None
) -> pl.DataFrame:
    """ComBat across plates, protecting cohort, sex and age (study samples only; controls unchanged).

    Censored values enter the estimation at their limit and keep their flag; their limit receives the same
    correction as a measured value there would. Plates with fewer than ``min_batch`` study samples are not
    corrected by ComBat (plate-control correction only). Refuses (ConfoundedError) when batch is fully
    confounded with a protected covariate. ``fit``: a list that receives, per platform, panel and unit, the
    standardisation ComBat learned (rows of platform, panel, unit, analyte, term, value, n_batches; see
    :func:`combat_anchors`), which a release keeps for frozen ComBat of a later batch.
    """
    base = correct_plates(frame)
    study = base.filter(pl.col("sample_type").is_in(MEASURED_TYPES))
    sizes = study.group_by("batch").agg(pl.col("sample_id").n_unique().alias("n"))
    big = sizes.filter(pl.col("n") >= min_batch)["batch"].to_list()
    target = study.filter(pl.col("batch").is_in(big)).with_columns(
        pl.coalesce(
            pl.when(pl.col("censoring").is_null()).then(pl.col("log_value")), pl.col("log_limit"), pl.col("log_value")
        ).alias("__est")
    )
    pieces = []
    for _, part in groups_of(target, ["platform", "panel", "unit"]):
        per_sample = part.group_by(["sample_id", "analyte"]).agg(
            pl.col("__est").mean(),
            pl.col("batch").first(),
            pl.col("cohort").first(),
            pl.col("__sex").first(),
            pl.col("__age").first(),
        )
        learned: list[pl.DataFrame] = []
        fixed = combat(
            per_sample,
            batch="batch",
            covariates=COMBAT_COVARIATES,
            value="__est",
            parametric=parametric,
            fit=learned,
        )
        if fit is not None and learned:
            first = part.row(0, named=True)
            fit.append(
                learned[0].with_columns(
                    pl.lit(first["platform"]).alias("platform"),
                    pl.lit(first["panel"], pl.String).alias("panel"),
                    pl.lit(first["unit"]).alias("unit"),
                    pl.lit(per_sample["batch"].n_unique(), pl.Int64).alias("n_batches"),
                )
            )
        delta = fixed.select("sample_id", "analyte", (pl.col("corrected") - pl.col("__est")).alias("__delta"))
        method = (  # one batch: ComBat has nothing to correct (it was labelled as if it had corrected)
            "plate_control+combat" if per_sample["batch"].n_unique() > 1 else "plate_control; one batch: no ComBat"
        )
        pieces.append(part.join(delta, on=["sample_id", "analyte"], how="left").with_columns(__method=pl.lit(method)))
    if not pieces:
        return base
    corrected = (
        _shift_all(pl.concat(pieces), -pl.col("__delta").fill_null(0.0))
        .with_columns(pl.col("__method").alias("batch_method"))
        .drop("__est", "__delta", "__method")
    )
    rest = base.join(
        corrected.select("sample_id", "analyte", "batch", "plate_id").unique(),
        on=["sample_id", "analyte", "batch", "plate_id"],
        how="anti",
    )
    rest = rest.with_columns(
        pl.when(pl.col("sample_type").is_in(MEASURED_TYPES))
        .then(pl.lit(f"plate_control; batch below {min_batch} samples: no ComBat"))
        .otherwise(pl.col("batch_method"))
        .alias("batch_method")
    )
    return pl.concat([corrected, rest], how="vertical_relaxed")


#: ``control_id`` prefix of the anchors that hold ComBat's standardisation (kind ``combat``).
COMBAT_PREFIX = "combat:"


def combat_anchors(fit: list[pl.DataFrame]) -> pl.DataFrame:
    """What ComBat learned (:func:`correct_combat`'s ``fit``) as rows of the release's anchors, kind
    ``combat``: ``control_id`` is ``combat:<term>`` (grand_mean, var_pooled, or a covariate coefficient such
    as ``combat:__sex=M``), ``level`` its value on the log scale, ``n_plates`` the batches ComBat used."""
    if not fit:
        return pl.DataFrame(schema=ANCHOR_SCHEMA)
    return schema.conform(
        pl.concat(fit, how="vertical").select(
            "platform",
            "panel",
            "analyte",
            (pl.lit(COMBAT_PREFIX) + pl.col("term")).alias("control_id"),
            "unit",
            pl.col("value").alias("level"),
            pl.col("n_batches").alias("n_plates"),
            pl.lit("combat").alias("kind"),
        ),
        ANCHOR_SCHEMA,
    ).sort("platform", "panel", "analyte", "control_id", nulls_last=True)


#: The release's normalisation anchors: plate-control levels (kind plate_control) and ComBat's fit (combat).
ANCHOR_SCHEMA: dict[str, pl.DataType] = {
    "platform": pl.String(),
    "panel": pl.String(),
    "analyte": pl.String(),
    "control_id": pl.String(),
    "unit": pl.String(),
    "level": pl.Float64(),
    "n_plates": pl.Int64(),
    "kind": pl.String(),
}


def correct_batches(
    frame: pl.DataFrame,
    methods: dict[str, str] | None = None,
    *,
    combat_fit: list[pl.DataFrame] | None = None,
    **options: int,
) -> pl.DataFrame:
    """Apply the configured method per platform (default plate_control); ``batch_method`` records it.
    ``combat_fit`` receives what ComBat learned (:func:`correct_combat`)."""
    methods = methods or {}
    out = []
    for (platform,), part in groups_of(frame, ["platform"]):
        method = methods.get(str(platform), "plate_control")
        if method not in BATCH_METHODS:
            msg = f"batch method {method!r} for {platform} is not one of {BATCH_METHODS}"
            raise ValueError(msg)
        if method == "plate_control":
            out.append(correct_plates(part))
        elif method == "bridge":
            out.append(correct_bridges(part, min_bridges=options.get("min_bridges", 3)))
        elif method == "combat":
            try:
                out.append(correct_combat(part, min_batch=options.get("combat_min_batch", 10), fit=combat_fit))
            except ConfoundedError as exc:  # refuse the correction, never the data: fall back and say why
                fallback = correct_plates(part)
                out.append(fallback.with_columns(pl.col("batch_method") + pl.lit(f"; ComBat refused: {exc}")))
        else:
            out.append(part.with_columns(pl.lit("none").alias("batch_method")))
    if not out:  # nothing to correct
        return frame.with_columns(pl.lit(None, pl.String).alias("batch_method"))
    return pl.concat(out, how="vertical_relaxed")


def finish_measurements(
    frame: pl.DataFrame,
    methods: dict[str, str] | None = None,
    *,
    combat_fit: list[pl.DataFrame] | None = None,
    **options: int,
) -> pl.DataFrame:
    """Batch correction by the configured method, then one row per sample x analyte (study samples only)."""
    corrected = correct_batches(frame, methods, combat_fit=combat_fit, **options)
    return combine_replicates(corrected.filter(pl.col("sample_type").is_in(MEASURED_TYPES)))


def normalise(rows: pl.DataFrame, samples: pl.DataFrame, lookup: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Raw measurement rows + manifest samples -> one row per sample x analyte, and what was held back
    (without plate-level quality gates; the flow adds those between the two stages)."""
    prepared, held = prepare_measurements(rows, samples, lookup)
    return finish_measurements(prepared), held
