-- 0012: the MDM payload's ServerCapabilities each device channel enrolled with. Apple: "When
-- updating the payload, the com.apple.mdm.per-user-connections capability must not be added
-- or removed", so a renewal profile carries the set the device enrolled with. Enrollments
-- made before this migration got a payload without ServerCapabilities: '[]'. Authenticate
-- of a new enrollment records the set of the profile it came with.
ALTER TABLE enrollments ADD COLUMN server_capabilities TEXT NOT NULL DEFAULT '[]'
    CHECK (json_valid(server_capabilities));
