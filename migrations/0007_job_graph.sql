-- The whole study as one graph of jobs: training (Phase E), Pty-Chi reconstruction (Phase F) and
-- comparison (Phase G). Every job carries its phase (jobs of older ledgers are comparisons), and
-- job_needs lists, per job, the jobs whose outputs it reads (a comparison needs its two trainings
-- and its reconstruction), so SQL can follow the graph.
ALTER TABLE jobs ADD COLUMN phase TEXT NOT NULL DEFAULT 'G' CHECK (phase IN ('E', 'F', 'G'));

CREATE TABLE job_needs (
    job_id        INTEGER NOT NULL REFERENCES jobs (job_id),
    needs_job_id  INTEGER NOT NULL REFERENCES jobs (job_id),
    PRIMARY KEY (job_id, needs_job_id)
);

CREATE INDEX job_needs_by_need ON job_needs (needs_job_id);

UPDATE failure_classes
SET meaning = 'exit 0, but its outputs (metrics file, model folder, reconstruction) are missing, stale or incomplete'
WHERE name = 'no_metrics';

-- The grid, now with each job's phase first (the other columns as in 0005).
DROP VIEW condition_grid;
CREATE VIEW condition_grid AS
SELECT j.phase, j.dose, j.view, j.split, j.state,
       (SELECT COUNT(*) FROM attempts c WHERE c.job_id = j.job_id) AS n_attempts,
       a.number AS latest_attempt, a.device, a.started_at, a.duration_s, a.exit_code,
       a.failure_class,
       CASE WHEN j.state = 'blocked' THEN j.blocked_reason ELSE a.failure_detail END AS detail,
       a.stdout_log, a.stderr_log,
       j.selection_strategy, j.acceptance_rate, j.spacing_threshold, j.n_accepted, j.n_rejected,
       j.key, j.job_id, j.plan_order,
       a.backend, a.slurm_job_id, a.slurm_node, a.slurm_state, a.slurm_exit
FROM jobs j
LEFT JOIN attempts a
       ON a.attempt_id = (SELECT m.attempt_id FROM attempts m WHERE m.job_id = j.job_id
                          ORDER BY m.number DESC LIMIT 1)
ORDER BY j.plan_order;

DROP VIEW failed_attempts;
CREATE VIEW failed_attempts AS
SELECT j.phase, j.dose, j.view, j.split, a.number AS attempt, a.state, a.failure_class,
       a.exit_code, a.signal, a.failure_detail, a.device, a.started_at, a.duration_s,
       a.stdout_log, a.stderr_log, a.run_id, j.key
FROM attempts a
JOIN jobs j USING (job_id)
WHERE a.state IN ('failed', 'interrupted')
ORDER BY a.attempt_id;

-- The comparisons' metrics, as before: the numbers of trainings and reconstructions are in
-- phase_results.
DROP VIEW study_metrics;
CREATE VIEW study_metrics AS
SELECT j.dose, j.view, j.split, m.model, m.metric, m.amplitude, m.phase, m.value,
       a.number AS attempt, a.attempt_id, j.key
FROM metrics m
JOIN attempts a USING (attempt_id)
JOIN jobs j USING (job_id)
WHERE a.state = 'succeeded' AND j.phase = 'G'
ORDER BY j.plan_order, m.model, m.metric;

-- What each standing training (E) and reconstruction (F) reported: a training's final and
-- held-out loss, steps and seconds (model.json); a reconstruction's final cost, iterations and
-- seconds (its NPZ); with the attempt's wall time and device. For a training, `view` is the
-- model: 'baseline' or the view its PINN trained on.
CREATE VIEW phase_results AS
SELECT j.phase, j.dose, j.view, j.split, m.model, m.metric, m.value, a.duration_s, a.device,
       a.number AS attempt, a.attempt_id, j.key
FROM metrics m
JOIN attempts a USING (attempt_id)
JOIN jobs j USING (job_id)
WHERE a.state = 'succeeded' AND j.phase IN ('E', 'F')
ORDER BY j.plan_order, m.model, m.metric;
