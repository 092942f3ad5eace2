-- grain: release_cohort_comparison = one row per release x patient cohort x reference group (group level only)
-- The shift of a cohort adjusted for configured covariates (comparison_covariates, e.g. Olink Explore HT
-- sample handling); empty when none are configured.
alter table release_cohort_comparison add column if not exists p_shift_adjusted double;
alter table release_cohort_comparison add column if not exists n_adjusted bigint;   -- people with every covariate
alter table release_cohort_comparison add column if not exists adjusted_for varchar; -- the covariates, comma-separated
create or replace view cohort_comparison as select * from release_cohort_comparison;
create or replace view marts.cohort_comparison as select * from main.cohort_comparison;
