-- The failure class of an attempt whose logs or outputs could not be written: their filesystem
-- ran out of space, or a log reached the file-size limit (ulimit -f).

INSERT INTO failure_classes (name, retryable, meaning) VALUES
    ('disk_full', 0, 'the log or output folder ran out of space, or a log reached the file-size limit');
