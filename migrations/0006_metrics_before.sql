-- What the metrics file was just before an attempt launched (JSON: [inode, size, mtime_ns,
-- ctime_ns], or null when there was none), written with the attempt row. An attempt succeeds only
-- if the file after its exit is a different one: no clock is compared with a file's timestamp.
-- NULL: the attempt was launched by an older runner, which recorded no identity.
ALTER TABLE attempts ADD COLUMN metrics_before TEXT;
