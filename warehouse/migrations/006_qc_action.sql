-- grain: qc_results = one row per run x suite x expectation x engine; adds what a failure does
alter table qc_results add column if not exists action varchar;  -- quarantine | warn | block
