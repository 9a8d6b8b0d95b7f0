-- Failed password logins are counted per username *and source*, so that one
-- source (an address, or a device credential) cannot lock the others out,
-- and in one username-wide row (source '*') for guessing spread over many
-- sources, with a higher threshold that a trusted device does not obey.
-- Existing rows were username-wide counts: they become the '*' rows.
ALTER TABLE login_throttle ADD COLUMN source text NOT NULL DEFAULT '*';
ALTER TABLE login_throttle DROP CONSTRAINT login_throttle_pkey;
ALTER TABLE login_throttle ADD PRIMARY KEY (username, source);
ALTER TABLE login_throttle ALTER COLUMN source DROP DEFAULT;

-- The lock after the n-th counted failure (n >= threshold):
-- base * 2^(n - threshold), capped at max.
CREATE FUNCTION login_lock_after(failures integer, threshold integer, now timestamptz,
                                 base float8, cap float8)
RETURNS timestamptz LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN failures >= threshold THEN
        now + make_interval(secs => LEAST(cap, base * power(2, LEAST(failures - threshold, 40))))
    END
$$;

-- Counts one attempt before its password is checked, or refuses it while
-- its source, or (for a source that is not a trusted device) the username
-- as a whole, is locked: then nothing is counted. Both rows are locked in
-- one order (the username-wide row first), so concurrent attempts on any
-- instance queue and none slips under a threshold. Failures older than
-- `reset` are forgotten. Returns whether the attempt was admitted, and
-- otherwise until when the lock that refused it holds.
CREATE FUNCTION login_attempt(p_username text, p_source text, p_trusted boolean,
                              p_now timestamptz, p_threshold integer,
                              p_username_threshold integer, p_base float8,
                              p_cap float8, p_reset float8)
RETURNS TABLE (admitted boolean, locked_until timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    wide login_throttle;
    own login_throttle;
    forgotten timestamptz := p_now - make_interval(secs => p_reset);
    counted integer;
BEGIN
    INSERT INTO login_throttle AS t (username, source, failures, updated_at)
    VALUES (p_username, '*', 0, p_now), (p_username, p_source, 0, p_now)
    ON CONFLICT (username, source) DO NOTHING;
    SELECT * INTO wide FROM login_throttle t
    WHERE t.username = p_username AND t.source = '*' FOR UPDATE;
    SELECT * INTO own FROM login_throttle t
    WHERE t.username = p_username AND t.source = p_source FOR UPDATE;

    IF own.locked_until > p_now THEN
        RETURN QUERY SELECT false, own.locked_until;
        RETURN;
    END IF;
    IF NOT p_trusted AND wide.locked_until > p_now THEN
        RETURN QUERY SELECT false, wide.locked_until;
        RETURN;
    END IF;

    counted := CASE WHEN own.updated_at <= forgotten THEN 1 ELSE own.failures + 1 END;
    UPDATE login_throttle t
    SET failures = counted,
        locked_until = login_lock_after(counted, p_threshold, p_now, p_base, p_cap),
        updated_at = p_now
    WHERE t.username = p_username AND t.source = p_source;
    -- A trusted device's attempts are its own: they neither count towards
    -- nor obey the username-wide lock.
    IF NOT p_trusted THEN
        counted := CASE WHEN wide.updated_at <= forgotten THEN 1 ELSE wide.failures + 1 END;
        UPDATE login_throttle t
        SET failures = counted,
            locked_until = login_lock_after(counted, p_username_threshold, p_now, p_base, p_cap),
            updated_at = p_now
        WHERE t.username = p_username AND t.source = '*';
    END IF;
    RETURN QUERY SELECT true, NULL::timestamptz;
END
$$;
