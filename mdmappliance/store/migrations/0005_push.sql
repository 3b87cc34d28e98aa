-- 0005: pushes. The outcome of the last push to each enrollment, and inactivity.

-- push_status: sent, unregistered, bad_token, rejected, retrying, failed, blocked.
ALTER TABLE enrollments ADD COLUMN push_status TEXT;
ALTER TABLE enrollments ADD COLUMN push_reason TEXT;
ALTER TABLE enrollments ADD COLUMN push_at TEXT;
ALTER TABLE enrollments ADD COLUMN apns_id TEXT;
-- Set by the inactive-device job when the enrollment has not been heard from for too long;
-- cleared by its next contact.
ALTER TABLE enrollments ADD COLUMN inactive_since TEXT;

-- The inactive-device job looks for enrolled channels by last contact.
CREATE INDEX enrollments_last_seen ON enrollments (last_seen) WHERE state = 'enrolled';
