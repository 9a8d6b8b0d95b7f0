-- Admin calls refused to a valid token are recorded with what became of
-- them: `denied` (403, no `admin` scope), or, for an admin token's calls,
-- `not_found` (404), `conflict` (409), `invalid` (400) and `refused` (any
-- other 4xx), so that probing ids with a stolen admin token leaves a trace.
ALTER TABLE audit_log DROP CONSTRAINT audit_log_outcome_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_outcome_check
    CHECK (outcome IN ('ok', 'denied', 'not_found', 'conflict', 'invalid', 'refused'));

-- Repeats of a refusal are folded into one row per minute by a unique key
-- (insert ... on conflict do nothing), which holds however many identical
-- refusals arrive at once: the former "insert where not exists" let
-- concurrent ones all see no row and all insert. `refusal_key` is what
-- besides caller, call and outcome tells refusals apart ('' for 403s, the
-- target for an admin token's); both columns are null on every other row.
ALTER TABLE audit_log ADD COLUMN refusal_key text;
ALTER TABLE audit_log ADD COLUMN refusal_minute timestamptz;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_refusal_fold
    CHECK ((refusal_key IS NULL) = (refusal_minute IS NULL));
CREATE UNIQUE INDEX audit_log_refusal_once
    ON audit_log (actor, action, outcome, refusal_key, refusal_minute)
    WHERE refusal_minute IS NOT NULL;
DROP INDEX audit_log_denied;
