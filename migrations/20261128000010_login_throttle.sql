-- Failed password logins per username (after normalisation), whether or not
-- the user exists, so the limit reveals nothing about which usernames exist.
-- An attempt is counted before its password is hashed (a reservation) and the
-- row is deleted on success; `locked_until` is set when `failures` reaches the
-- threshold. Rows are pruned once unlocked and quiet for `login.lockout_reset`.
CREATE TABLE login_throttle (
    username     text PRIMARY KEY,
    failures     integer NOT NULL,
    locked_until timestamptz,
    -- The last counted attempt.
    updated_at   timestamptz NOT NULL
);
CREATE INDEX login_throttle_updated ON login_throttle (updated_at);
