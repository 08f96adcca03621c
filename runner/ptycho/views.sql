-- The study's views over the engine's tables: each job's labels (phase, dose, view, split, a
-- training's model, the Phase D metadata) as columns. `runner run` installs them in the ledger;
-- the study's own readers use them as TEMP views, so they always read with these definitions.
-- Each is one statement under its `-- name:` header, the view's name.

-- name: condition_grid
-- Every job with its latest attempt (the engine's job_grid): what `status` shows, for SQL, with
-- its labels as columns. `view` is a training's model; `seed` and `train_size` the replicate of a
-- training or comparison (NULL train_size: the whole training split).
CREATE VIEW condition_grid AS
SELECT json_extract(g.labels, '$.phase') AS phase, json_extract(g.labels, '$.dose') AS dose,
       COALESCE(json_extract(g.labels, '$.view'), json_extract(g.labels, '$.model')) AS view,
       json_extract(g.labels, '$.split') AS split, json_extract(g.labels, '$.seed') AS seed,
       json_extract(g.labels, '$.train_size') AS train_size, g.state,
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
-- The metrics of every comparison's standing success, one row per model and metric, with the
-- replicate it belongs to: the training seed and the training-set size (NULL: the whole split) of
-- the networks it compared.
CREATE VIEW study_metrics AS
SELECT json_extract(j.labels, '$.dose') AS dose, json_extract(j.labels, '$.view') AS view,
       json_extract(j.labels, '$.split') AS split, json_extract(j.labels, '$.seed') AS seed,
       json_extract(j.labels, '$.train_size') AS train_size, m.model, m.metric, m.amplitude, m.phase, m.value,
       a.number AS attempt, a.attempt_id, j.key
FROM metrics m
JOIN attempts a USING (attempt_id)
JOIN jobs j USING (job_id)
WHERE a.state = 'succeeded' AND json_extract(j.labels, '$.phase') = 'G'
ORDER BY j.plan_order, m.model, m.metric;

-- name: replicate_values
-- One value per replicate of every quantity the summaries describe: each arm's score, and the
-- paired difference PtychoPINN minus each other arm within one comparison (one seed). An arm
-- without a training seed (PtyChi, the floor) is the same measurement in every replicate's
-- comparison: it counts once (seed NULL).
CREATE VIEW replicate_values AS
SELECT DISTINCT dose, view, split, train_size, model AS quantity, metric,
       CASE WHEN model IN ('PtychoPINN', 'Baseline') THEN seed END AS seed, amplitude, phase
FROM study_metrics
WHERE amplitude IS NOT NULL OR phase IS NOT NULL
UNION ALL
SELECT p.dose, p.view, p.split, p.train_size, 'PtychoPINN - ' || o.model, p.metric, p.seed,
       p.amplitude - o.amplitude, p.phase - o.phase
FROM study_metrics p
JOIN study_metrics o ON o.attempt_id = p.attempt_id AND o.metric = p.metric
WHERE p.model = 'PtychoPINN' AND o.model IN ('Baseline', 'PtyChi')
  AND (p.amplitude - o.amplitude IS NOT NULL OR p.phase - o.phase IS NOT NULL);

-- name: replicate_stats
-- Per dose, view, split, training-set size, quantity and metric: n (replicates with a value), and
-- for amplitude and phase the mean over them and its 95 % Student-t interval, mean +- t * sd / sqrt(n)
-- (t for n - 1 degrees of freedom: tabulated to 30, then at 40, 60 and 120, the nearest below,
-- which errs wide); NULL bounds when fewer than two replicates have a value.
CREATE VIEW replicate_stats AS
WITH t95(df, t) AS (VALUES (1, 12.7062), (2, 4.3027), (3, 3.1824), (4, 2.7764), (5, 2.5706), (6, 2.4469),
       (7, 2.3646), (8, 2.3060), (9, 2.2622), (10, 2.2281), (11, 2.2010), (12, 2.1788), (13, 2.1604),
       (14, 2.1448), (15, 2.1314), (16, 2.1199), (17, 2.1098), (18, 2.1009), (19, 2.0930), (20, 2.0860),
       (21, 2.0796), (22, 2.0739), (23, 2.0687), (24, 2.0639), (25, 2.0595), (26, 2.0555), (27, 2.0518),
       (28, 2.0484), (29, 2.0452), (30, 2.0423), (40, 2.0211), (60, 2.0003), (120, 1.9799)),
means AS (
    SELECT dose, view, split, train_size, quantity, metric, COUNT(*) AS n,
           COUNT(amplitude) AS n_amplitude, AVG(amplitude) AS amplitude_mean,
           COUNT(phase) AS n_phase, AVG(phase) AS phase_mean
    FROM replicate_values
    GROUP BY dose, view, split, train_size, quantity, metric),
spread AS (
    SELECT m.*,
           (SELECT t FROM t95 WHERE df <= m.n_amplitude - 1 ORDER BY df DESC LIMIT 1)
             * sqrt(SUM((v.amplitude - m.amplitude_mean) * (v.amplitude - m.amplitude_mean))
                    / (m.n_amplitude - 1) / m.n_amplitude) AS amplitude_half,
           (SELECT t FROM t95 WHERE df <= m.n_phase - 1 ORDER BY df DESC LIMIT 1)
             * sqrt(SUM((v.phase - m.phase_mean) * (v.phase - m.phase_mean))
                    / (m.n_phase - 1) / m.n_phase) AS phase_half
    FROM means m
    JOIN replicate_values v ON v.dose IS m.dose AND v.view IS m.view AND v.split IS m.split
         AND v.train_size IS m.train_size AND v.quantity = m.quantity AND v.metric = m.metric
    GROUP BY m.dose, m.view, m.split, m.train_size, m.quantity, m.metric)
SELECT dose, view, split, train_size, quantity, metric, n,
       amplitude_mean, amplitude_mean - amplitude_half AS amplitude_ci_low,
       amplitude_mean + amplitude_half AS amplitude_ci_high,
       phase_mean, phase_mean - phase_half AS phase_ci_low, phase_mean + phase_half AS phase_ci_high
FROM spread;

-- name: study_summary
-- Each arm's score over the replicate seeds, per dose, view, split, training-set size and metric:
-- n, the mean and its 95 % interval for amplitude and phase (replicate_stats).
CREATE VIEW study_summary AS
SELECT dose, view, split, train_size, quantity AS model, metric, n, amplitude_mean, amplitude_ci_low,
       amplitude_ci_high, phase_mean, phase_ci_low, phase_ci_high
FROM replicate_stats
WHERE quantity NOT LIKE 'PtychoPINN - %'
ORDER BY dose, view, split, train_size, model, metric;

-- name: study_deltas
-- PtychoPINN minus each other arm (`versus`), paired within each replicate's comparison, over the
-- seeds: n, the mean difference and its 95 % interval. An interval that holds 0 is no difference.
CREATE VIEW study_deltas AS
SELECT dose, view, split, train_size, substr(quantity, length('PtychoPINN - ') + 1) AS versus, metric, n,
       amplitude_mean, amplitude_ci_low, amplitude_ci_high, phase_mean, phase_ci_low, phase_ci_high
FROM replicate_stats
WHERE quantity LIKE 'PtychoPINN - %'
ORDER BY dose, view, split, train_size, versus, metric;

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
