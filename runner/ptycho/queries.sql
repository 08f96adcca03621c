-- The study's queries of the ledger, by name, over its views (views.sql): what its report and
-- its run files read.

-- name: conditions
-- Every comparison (phase G) with its latest attempt and, when it has one, its standing success.
SELECT g.key, g.dose, g.view, g.split, g.seed, g.train_size, g.state, g.latest_attempt, g.n_attempts, g.failure_class,
       g.detail, g.stdout_log, g.stderr_log, g.selection_strategy, g.acceptance_rate,
       g.spacing_threshold, g.n_accepted, g.n_rejected, j.output_dir,
       s.number AS success_attempt, s.device AS success_device, s.ended_at AS success_ended_at,
       s.duration_s AS success_duration_s, s.run_id AS success_run_id, j.last_run_id
FROM condition_grid g
JOIN jobs j USING (job_id)
LEFT JOIN attempts s ON s.job_id = g.job_id AND s.state = 'succeeded'
WHERE g.phase = 'G'
ORDER BY g.plan_order;

-- name: metrics
-- The metrics of every condition's standing success.
SELECT key, model, metric, amplitude, phase, value FROM study_metrics;

-- name: summary
-- Each arm's mean and 95 % interval over the replicate seeds, per condition and training-set size.
SELECT * FROM study_summary;

-- name: paired
-- PtychoPINN minus each other arm, paired within each replicate, with its 95 % interval.
SELECT * FROM study_deltas;

-- name: runs
-- Every run, oldest first, for the report's provenance.
SELECT run_id, started_at, ended_at, outcome, host, user, argv, runner_version, git_commit, slots
FROM runs ORDER BY run_id;

-- name: phase_jobs
-- Every training (E) and reconstruction (F) with its latest attempt and, when it has one, its
-- standing success; the argv of that success (else the planned one) names a training's model folder.
SELECT g.phase, g.key, g.dose, g.view, g.split, g.seed, g.train_size, g.state, g.latest_attempt, g.failure_class, g.detail,
       g.stderr_log, j.cwd, COALESCE(s.argv, j.argv) AS argv,
       s.number AS success_attempt, s.device AS success_device, s.duration_s AS success_duration_s
FROM condition_grid g
JOIN jobs j USING (job_id)
LEFT JOIN attempts s ON s.job_id = g.job_id AND s.state = 'succeeded'
WHERE g.phase IN ('E', 'F')
ORDER BY g.plan_order;

-- name: training_steps
-- The attempts of each training that recorded the steps they started from and saved (a training
-- that continued from its checkpoint after a time limit, a preemption or a stop), in order.
SELECT j.key, a.number, a.state, a.failure_class, a.start_step, a.end_step
FROM attempts a JOIN jobs j USING (job_id)
WHERE j.kind = 'E' AND a.end_step IS NOT NULL
ORDER BY j.key, a.number;

-- name: phase_results
-- The numbers each standing training and reconstruction reported.
SELECT key, metric, value FROM phase_results;

-- name: layout
-- The study's folders, as the latest run that recorded them said.
SELECT study FROM runs WHERE study IS NOT NULL ORDER BY run_id DESC LIMIT 1;
