-- grain: raw_measurements = one row per value as parsed from an export; adds calibrator recovery
alter table raw_measurements add column if not exists recovery_pct double;  -- percent (measured / expected x 100)
