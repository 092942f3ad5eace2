-- grain: unchanged (normalisation_anchors and release_normalisation_anchors: one row per platform x panel x
-- analyte x anchor). The new column kind says what an anchor is: plate_control (a plate control's level)
-- or combat (ComBat's standardisation of a marker: control_id combat:grand_mean, combat:var_pooled or
-- combat:<covariate term>, level its value), for frozen ComBat of a later batch.
alter table normalisation_anchors add column if not exists kind varchar default 'plate_control';
alter table release_normalisation_anchors add column if not exists kind varchar default 'plate_control';
