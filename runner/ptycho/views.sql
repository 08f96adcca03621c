-- The study's views over the engine's tables: each job's labels (phase, dose, view, split, a
-- training's model, the Phase D metadata) as columns. `runner run` installs them in the ledger;
-- the study's own readers use them as TEMP views, so they always read with these definitions.
-- Each is one statement under its `-- name:` header, the view's name.

-- name: condition_grid
-- Every job with its latest attempt: what `status` shows, for SQL. `view` is a training's model.
CREATE VIEW condition_grid AS
SELECT json_extract(j.labels, '$.phase') AS phase, json_extract(j.labels, '$.dose') AS dose,
       COALESCE(json_extract(j.labels, '$.view'), json_extract(j.labels, '$.model')) AS view,
       json_extract(j.labels, '$.split') AS split, j.state,
       (SELECT COUNT(*) FROM attempts c WHERE c.job_id = j.job_id) AS n_attempts,
       a.number AS latest_attempt, a.device, a.started_at, a.duration_s, a.exit_code,
       a.failure_class,
       CASE WHEN j.state = 'blocked' THEN j.blocked_reason ELSE a.failure_detail END AS detail,
       a.stdout_log, a.stderr_log,
       json_extract(j.labels, '$.selection_strategy') AS selection_strategy,
       json_extract(j.labels, '$.acceptance_rate') AS acceptance_rate,
       json_extract(j.labels, '$.spacing_threshold') AS spacing_threshold,
       json_extract(j.labels, '$.n_accepted') AS n_accepted,
       json_extract(j.labels, '$.n_rejected') AS n_rejected,
       j.key, j.job_id, j.plan_order,
       a.backend, a.slurm_job_id, a.slurm_node, a.slurm_state, a.slurm_exit
FROM jobs j
LEFT JOIN attempts a
       ON a.attempt_id = (SELECT m.attempt_id FROM attempts m WHERE m.job_id = j.job_id
                          ORDER BY m.number DESC LIMIT 1)
ORDER BY j.plan_order;

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
