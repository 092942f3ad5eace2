-- grain: layer schemas hold views only; each view has the grain of the table or view it selects from
-- raw: as ingested, with provenance (file, sha256, line). staging: typed, canonical analyte names and
-- units, normalised (rebuilt each run). marts: what analysts query (docs/warehouse.md).
create schema if not exists raw;
create schema if not exists staging;
create schema if not exists marts;

create or replace view raw.files as select * from main.files;
create or replace view raw.runs as select * from main.runs;
create or replace view raw.measurements as select * from main.raw_measurements;
create or replace view raw.samples as select * from main.samples;
create or replace view raw.quarantine_rows as select * from main.quarantine_rows;

create or replace view staging.measurements as select * from main.measurements_normalised;
create or replace view staging.held_rows as select * from main.held_rows;
create or replace view staging.qc_results as select * from main.qc_results;

create or replace view marts.measurements as select * from main.measurements;
create or replace view marts.quarantine as select * from main.quarantine;
create or replace view marts.files as select * from main.files;
create or replace view marts.qc_results as select * from main.qc_results;
create or replace view marts.releases as select * from main.releases;
create or replace view marts.reference_intervals as select * from main.reference_intervals;
create or replace view marts.reference_quantiles as select * from main.reference_quantiles;
create or replace view marts.cohort_comparison as select * from main.cohort_comparison;
create or replace view marts.retest_variation as select * from main.retest_variation;
