-- The last log-out-everywhere of each user, on the user row itself. A login
-- that was checking the password meanwhile waits on this row's lock and then
-- re-checks the row as updated; a revocation row (committed after the login's
-- statement began) would be invisible to that re-check.
ALTER TABLE users ADD COLUMN sessions_revoked_at timestamptz;
