-- 0007: a bound on what each enrollment's results may hold. result_bytes is the size of the
-- raw answers kept for the enrollment's commands; once it would pass
-- [retention] result_bytes_per_enrollment, answers are still read and summarised but their
-- raw bodies are dropped. Retention subtracts what it prunes.
ALTER TABLE enrollments ADD COLUMN result_bytes INTEGER NOT NULL DEFAULT 0;

UPDATE enrollments SET result_bytes = (
    SELECT coalesce(sum(length(r.raw)), 0) FROM command_results AS r
    JOIN commands AS c ON c.id = r.command_id WHERE c.enrollment_id = enrollments.id
);
