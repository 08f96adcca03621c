-- The results of each succeeded attempt, loaded from its comparison_metrics.csv (tidy format),
-- and the failure class of a command that ran out of GPU memory.

CREATE TABLE metrics (
    attempt_id  INTEGER NOT NULL REFERENCES attempts (attempt_id),
    model       TEXT NOT NULL,      -- PtychoPINN, Baseline, PtyChi
    metric      TEXT NOT NULL,      -- mae, mse, psnr, ssim, ms_ssim, frc50, frc1over7, ...
    amplitude   REAL,               -- NULL where the cell was empty or NaN
    phase       REAL,
    value       REAL,               -- scalar rows: registration offsets, computation time
    PRIMARY KEY (attempt_id, model, metric)
);

-- Condition x model x metric for the current success of every condition.
CREATE VIEW study_metrics AS
SELECT j.dose, j.view, j.split, m.model, m.metric, m.amplitude, m.phase, m.value,
       a.number AS attempt, a.attempt_id, j.key
FROM metrics m
JOIN attempts a USING (attempt_id)
JOIN jobs j USING (job_id)
WHERE a.state = 'succeeded'
ORDER BY j.plan_order, m.model, m.metric;

INSERT INTO failure_classes (name, retryable, meaning) VALUES
    ('cuda_oom', 1, 'the command ran out of GPU memory (exit 3); retried with halved chunk sizes');
