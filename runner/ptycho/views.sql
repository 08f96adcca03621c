-- The study's views over the engine's tables: each job's labels (phase, dose, view, split, a
-- training's model, the Phase D metadata) as columns. `runner run` installs them in the ledger;
-- the study's own readers use them as TEMP views, so they always read with these definitions.
-- Each is one statement under its `-- name:` header, the view's name.

-- name: condition_grid
-- Every job with its latest attempt (the engine's job_grid): what `status` shows, for SQL, with
-- its labels as columns. `view` is a training's model.
CREATE VIEW condition_grid AS
SELECT json_extract(g.labels, '$.phase') AS phase, json_extract(g.labels, '$.dose') AS dose,
       COALESCE(json_extract(g.labels, '$.view'), json_extract(g.labels, '$.model')) AS view,
       json_extract(g.labels, '$.split') AS split, g.state,
       (SELECT COUNT(*) FROM attempts c WHERE c.job_id = g.job_id) AS n_attempts,
       g.latest_attempt, g.device, g.started_at, g.duration_s, g.exit_code, g.failure_class, g.detail,
       g.stdout_log, g.stderr_log,
       json_extract(g.labels, '$.selection_strategy') AS selection_strategy,
       json_extract(g.labels, '$.acceptance_rate') AS acceptance_rate,
       json_extract(g.labels, '$.spacing_threshold') AS spacing_threshold,
       json_extract(g.labels, '$.n_accepted') AS n_accepted,
       json_extract(g.labels, '$.n_rejected') AS n_rejected,
       g.key, g.job_id, g.plan_order,
       g.backend, g.slurm_job_id, g.slurm_node, g.slurm_state, g.slurm_exit
FROM job_grid g
ORDER BY g.plan_order;

-- name: failed_attempts
-- Every attempt that failed or was interrupted, with its job's condition.
CREATE VIEW failed_attempts AS
SELECT json_extract(j.labels, '$.phase') AS phase, json_extract(j.labels, '$.dose') AS dose,
       COALESCE(json_extract(j.labels, '$.view'), json_extract(j.labels, '$.model')) AS view,
       json_extract(j.labels, '$.split') AS split, a.number AS attempt, a.state, a.failure_class,
       a.exit_code, a.signal, a.failure_detail, a.device, a.started_at, a.duration_s,
       a.stdout_log, a.stderr_log, a.run_id, j.key
FROM attempts a
JOIN jobs j USING (job_id)
WHERE a.state IN ('failed', 'interrupted')
ORDER BY a.attempt_id;

-- name: study_metrics
-- The metrics of every comparison's standing success, one row per model and metric.
CREATE VIEW study_metrics AS
SELECT json_extract(j.labels, '$.dose') AS dose, json_extract(j.labels, '$.view') AS view,
       json_extract(j.labels, '$.split') AS split, m.model, m.metric, m.amplitude, m.phase, m.value,
       a.number AS attempt, a.attempt_id, j.key
FROM metrics m
JOIN attempts a USING (attempt_id)
JOIN jobs j USING (job_id)
WHERE a.state = 'succeeded' AND json_extract(j.labels, '$.phase') = 'G'
ORDER BY j.plan_order, m.model, m.metric;

-- name: phase_results
-- The numbers each standing training (E) and reconstruction (F) reported.
CREATE VIEW phase_results AS
SELECT json_extract(j.labels, '$.phase') AS phase, json_extract(j.labels, '$.dose') AS dose,
       COALESCE(json_extract(j.labels, '$.view'), json_extract(j.labels, '$.model')) AS view,
       json_extract(j.labels, '$.split') AS split, m.model, m.metric, m.value, a.duration_s, a.device,
       a.number AS attempt, a.attempt_id, j.key
FROM metrics m
JOIN attempts a USING (attempt_id)
JOIN jobs j USING (job_id)
WHERE a.state = 'succeeded' AND json_extract(j.labels, '$.phase') IN ('E', 'F')
ORDER BY j.plan_order, m.model, m.metric;
