-- grain: release_intervals = one row per release x reference group, now saying whether the upper limit and the
-- median lie below the LOD as the lower limit could (a marker mostly below its LOD: all three are reported as
-- the LOD, a bound, where before only the lower limit said so). Null for releases registered before.
alter table release_intervals add column if not exists upper_limit_censored boolean;
alter table release_intervals add column if not exists median_censored boolean;

create or replace view reference_intervals as select * from release_intervals;
create or replace view marts.reference_intervals as select * from main.reference_intervals;
