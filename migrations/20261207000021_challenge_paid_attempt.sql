-- A challenge remembers the source whose right password started it. That
-- password's attempt stays counted (it is no longer taken back) and pays
-- for the flow's first second-factor code, so the common login (right
-- password, right code) runs the lockout's functions twice instead of four
-- times. A right code forgives it; a login abandoned after its password
-- keeps it as one failure of that source.
ALTER TABLE login_challenges ADD COLUMN paid_source text;
ALTER TABLE login_challenges ADD COLUMN paid_trusted boolean NOT NULL DEFAULT false;
-- A right code forgives its source's failures, but not the attempts that
-- paid for other flows of the user not tried yet: those stay counted
-- (`p_keep`), or a thief of the password could open flows, wait for the
-- user's own login from the same address, and guess in them for free.
CREATE INDEX login_challenges_user ON login_challenges (user_id);

DROP FUNCTION login_forgive(text, text, boolean, integer);
CREATE FUNCTION login_forgive(p_username text, p_source text, p_trusted boolean,
                              p_username_threshold integer, p_keep integer DEFAULT 0)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    own_failures integer;
    own_updated timestamptz;
    forgiven integer;
BEGIN
    PERFORM 1 FROM login_throttle t
    WHERE t.username = p_username AND t.source = '*' FOR UPDATE;
    DELETE FROM login_throttle t
    WHERE t.username = p_username AND t.source = p_source
    RETURNING t.failures, t.updated_at INTO own_failures, own_updated;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    forgiven := own_failures - LEAST(own_failures, GREATEST(p_keep, 0));
    IF forgiven < own_failures THEN
        INSERT INTO login_throttle (username, source, failures, updated_at)
        VALUES (p_username, p_source, own_failures - forgiven, own_updated);
    END IF;
    IF NOT p_trusted THEN
        UPDATE login_throttle t
        SET failures = GREATEST(t.failures - forgiven, 0),
            locks = CASE WHEN t.failures - forgiven < p_username_threshold
                          AND t.locked_until IS NOT NULL
                         THEN GREATEST(t.locks - 1, 0) ELSE t.locks END,
            locked_until = CASE WHEN t.failures - forgiven < p_username_threshold
                                THEN NULL ELSE t.locked_until END
        WHERE t.username = p_username AND t.source = '*';
    END IF;
END
$$;
