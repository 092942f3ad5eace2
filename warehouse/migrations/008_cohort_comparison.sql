-- grain: release_cohort_comparison = one row per release x patient cohort x reference group (group level only)
-- grain: cohort_comparison (view) = the same, for every published release
create table if not exists release_cohort_comparison (
    version varchar not null,
    analyte varchar not null,
    uniprot varchar,
    platform varchar not null,
    panel varchar,
    matrix varchar not null,
    unit varchar not null,
    sex varchar not null,
    age_min double,                       -- years
    age_max double,                       -- years
    cohort varchar not null,              -- patient | patient_early | patient_long
    n bigint not null,
    n_reference bigint not null,
    share_below double,                   -- fraction below the lower reference limit
    share_below_ci_low double,
    share_below_ci_high double,
    share_above double,                   -- fraction above the upper reference limit
    share_above_ci_low double,
    share_above_ci_high double,
    median_percentile double,             -- percent, within the healthy distribution
    hl_shift_log double,                  -- Hodges-Lehmann shift, log scale (natural log; NPX as is)
    hl_shift_ci_low double,
    hl_shift_ci_high double,
    cliffs_delta double,
    p_shift double,
    q_shift double,
    severity_slope_log_per_100 double,    -- log scale per 100 severity points
    p_severity double,
    q_severity double
);

create or replace view cohort_comparison as
select * from release_cohort_comparison;
