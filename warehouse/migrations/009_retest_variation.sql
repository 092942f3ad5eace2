-- grain: release_retest_variation = one row per release x marker (analyte x platform x panel x matrix x unit)
-- grain: retest_variation (view) = the same, for every published release
create table if not exists release_retest_variation (
    version varchar not null,
    analyte varchar not null,
    uniprot varchar,
    platform varchar not null,
    panel varchar,
    matrix varchar not null,
    unit varchar not null,
    scale varchar not null,               -- 'ln' (concentrations) or 'NPX (log2)'
    n_subjects bigint not null,           -- healthy people with two or more visits
    n_samples bigint not null,            -- their samples
    sd_total_log double,                  -- pooled within-person SD between visits, on `scale`
    sd_analytical_log double,             -- from duplicate wells (intra-assay), on `scale`; null without duplicates
    sd_within_subject_log double,         -- sqrt(total^2 - analytical^2), on `scale`
    cv_analytical_pct double,             -- percent, concentrations only
    cv_within_subject_pct double,         -- percent, concentrations only
    probability double,                   -- two-sided, e.g. 0.95
    rcv_log double,                       -- reference change value on `scale`
    rcv_increase_pct double,              -- percent rise that exceeds the RCV
    rcv_decrease_pct double               -- percent fall that exceeds the RCV (negative)
);

create or replace view retest_variation as
select * from release_retest_variation;
