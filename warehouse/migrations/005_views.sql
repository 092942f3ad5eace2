-- grain: measurements = one row per sample x analyte x platform x panel x unit, with the sample's context
-- grain: quarantine = one row per held-back row, or per held-back file (line_number null)
-- grain: reference_intervals / reference_quantiles = every published release, with its version
create or replace view measurements as
with normalised as (
    select * from measurements_normalised
),
linked as (
    select
        n.sample_id,
        s.subject_key,
        s.cohort,
        s.matrix,
        s.sex,
        s.age,
        s.severity,
        s.illness_duration_years,
        s.collection_date,
        n.platform,
        n.panel,
        n.plate_id,
        n.batch,
        n.analyte,
        n.uniprot,
        n.analyte_label,
        n.value,
        n.unit,
        n.log_value,
        n.censoring,
        n.limit_value,
        n.lod,
        n.n_replicates,
        n.replicate_cv,
        n.batch_method,
        n.source_file,
        n.run_id
    from normalised as n
    join samples as s using (sample_id)
)
select * from linked;

create or replace view quarantine as
with row_holds as (
    select source_file, source_sha256, line_number, stage, "check", reason, sample_id, analyte_raw, value_text
    from quarantine_rows
    union all
    select source_file, source_sha256, line_number, stage, "check", reason, sample_id, analyte_raw, value_text
    from held_rows
),
file_holds as (
    select
        file_name as source_file,
        sha256 as source_sha256,
        null::bigint as line_number,
        'file' as stage,
        'file_readable' as "check",
        reason,
        null as sample_id,
        null as analyte_raw,
        null as value_text
    from files
    where status = 'quarantined'
)
select * from row_holds
union all
select * from file_holds;

create or replace view reference_intervals as
select * from release_intervals;

create or replace view reference_quantiles as
select * from release_quantiles;
