-- 0011: today's check-in. A User Enrollment device has no UDID: it is known by its
-- EnrollmentID, kept in devices.udid as a UDID is, and marked so that an EnrollmentID never
-- passes for a UDID (or the other way round). A macOS device channel's Bootstrap Token
-- (SetBootstrapToken) is escrowed sealed, as UnlockTokens are.
ALTER TABLE devices ADD COLUMN user_enrollment INTEGER NOT NULL DEFAULT 0
    CHECK (user_enrollment IN (0, 1));
ALTER TABLE enrollments ADD COLUMN bootstrap_token_sealed BLOB;
ALTER TABLE enrollments ADD COLUMN bootstrap_token_at TEXT;
