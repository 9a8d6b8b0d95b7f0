-- Failed password logins are counted per username *and source*, so that one
-- source (an address, or a device credential) cannot lock the others out,
-- and in one username-wide row (source '*') for guessing spread over many
-- sources, with a higher threshold that a trusted device does not obey.
-- Existing rows were username-wide counts: they become the '*' rows.
ALTER TABLE login_throttle ADD COLUMN source text NOT NULL DEFAULT '*';
ALTER TABLE login_throttle DROP CONSTRAINT login_throttle_pkey;
ALTER TABLE login_throttle ADD PRIMARY KEY (username, source);
ALTER TABLE login_throttle ALTER COLUMN source DROP DEFAULT;
-- For the username-wide row: how many times it has locked since its
-- failures were last forgotten (each lock lasts twice the one before).
ALTER TABLE login_throttle ADD COLUMN locks integer NOT NULL DEFAULT 0;

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
-- as a whole, is locked: then nothing is counted or stored. The username-
-- wide row is locked first, by every function here, so attempts on one
-- username queue (on any instance), none slips under a threshold, and no
-- two of them deadlock. Failures older than `reset` are forgotten. Returns
-- whether the attempt was admitted, and otherwise until when the lock that
-- refused it holds.
--
-- A username-wide lock that has ended starts a new burst: renewing it takes
-- as many failures, from as many sources, as the first lock did (one guess
-- whenever it ends must not keep it locked), and each renewal lasts twice
-- the one before. A source's own lock doubles with each failure after it:
-- only that source pays for that.
CREATE FUNCTION login_attempt(p_username text, p_source text, p_trusted boolean,
                              p_now timestamptz, p_threshold integer,
                              p_username_threshold integer, p_base float8,
                              p_cap float8, p_reset float8)
RETURNS TABLE (admitted boolean, locked_until timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    wide login_throttle;
    own login_throttle;
    own_found boolean;
    forgotten timestamptz := p_now - make_interval(secs => p_reset);
    counted integer;
    new_locks integer;
BEGIN
    -- Created or locked in one step, so that nothing (an operator's unlock)
    -- can delete it between the two.
    INSERT INTO login_throttle AS t (username, source, failures, updated_at)
    VALUES (p_username, '*', 0, p_now)
    ON CONFLICT (username, source) DO UPDATE SET failures = t.failures
    RETURNING * INTO wide;
    SELECT * INTO own FROM login_throttle t
    WHERE t.username = p_username AND t.source = p_source FOR UPDATE;
    own_found := FOUND;

    IF own_found AND own.locked_until > p_now THEN
        RETURN QUERY SELECT false, own.locked_until;
        RETURN;
    END IF;
    IF NOT p_trusted AND wide.locked_until > p_now THEN
        RETURN QUERY SELECT false, wide.locked_until;
        RETURN;
    END IF;

    counted := CASE WHEN NOT own_found OR own.updated_at <= forgotten THEN 1
                    ELSE own.failures + 1 END;
    INSERT INTO login_throttle AS t (username, source, failures, locked_until, updated_at)
    VALUES (p_username, p_source, counted,
            login_lock_after(counted, p_threshold, p_now, p_base, p_cap), p_now)
    ON CONFLICT (username, source) DO UPDATE
    SET failures = EXCLUDED.failures, locked_until = EXCLUDED.locked_until,
        updated_at = EXCLUDED.updated_at;
    -- A trusted device's attempts are its own: they neither count towards
    -- nor obey the username-wide lock.
    IF NOT p_trusted THEN
        IF wide.updated_at <= forgotten THEN
            counted := 1;
            new_locks := 0;
        ELSIF wide.locked_until IS NOT NULL AND wide.locked_until <= p_now THEN
            counted := 1;
            new_locks := wide.locks;
        ELSE
            counted := wide.failures + 1;
            new_locks := wide.locks;
        END IF;
        IF counted >= p_username_threshold THEN
            new_locks := new_locks + 1;
        END IF;
        UPDATE login_throttle t
        SET failures = counted,
            locks = new_locks,
            locked_until = CASE WHEN counted >= p_username_threshold THEN
                p_now + make_interval(secs => LEAST(p_cap, p_base * power(2, LEAST(new_locks - 1, 40))))
            END,
            updated_at = p_now
        WHERE t.username = p_username AND t.source = '*';
    END IF;
    RETURN QUERY SELECT true, NULL::timestamptz;
END
$$;

-- Takes one counted attempt back (the server failed, not the guess): one
-- failure fewer in each row it was counted in, no lock below a threshold,
-- and rows back at nothing deleted.
CREATE FUNCTION login_release(p_username text, p_source text, p_trusted boolean,
                              p_threshold integer, p_username_threshold integer)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM login_throttle t
    WHERE t.username = p_username AND t.source = '*' FOR UPDATE;
    UPDATE login_throttle t
    SET failures = t.failures - 1,
        locked_until = CASE WHEN t.failures - 1 < p_threshold THEN NULL ELSE t.locked_until END
    WHERE t.username = p_username AND t.source = p_source AND t.failures > 0;
    IF NOT p_trusted THEN
        UPDATE login_throttle t
        SET failures = t.failures - 1,
            locks = CASE WHEN t.failures - 1 < p_username_threshold AND t.locked_until IS NOT NULL
                         THEN GREATEST(t.locks - 1, 0) ELSE t.locks END,
            locked_until = CASE WHEN t.failures - 1 < p_username_threshold THEN NULL
                                ELSE t.locked_until END
        WHERE t.username = p_username AND t.source = '*' AND t.failures > 0;
    END IF;
    DELETE FROM login_throttle t
    WHERE t.username = p_username AND t.source IN (p_source, '*')
      AND t.failures = 0 AND t.locks = 0 AND t.locked_until IS NULL;
END
$$;

-- The right password from this source: its failures were the user's own
-- typos. They are forgotten, in the username-wide count too.
CREATE FUNCTION login_forgive(p_username text, p_source text, p_trusted boolean,
                              p_username_threshold integer)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    own_failures integer;
BEGIN
    PERFORM 1 FROM login_throttle t
    WHERE t.username = p_username AND t.source = '*' FOR UPDATE;
    DELETE FROM login_throttle t
    WHERE t.username = p_username AND t.source = p_source
    RETURNING t.failures INTO own_failures;
    IF FOUND AND NOT p_trusted THEN
        UPDATE login_throttle t
        SET failures = GREATEST(t.failures - own_failures, 0),
            locks = CASE WHEN t.failures - own_failures < p_username_threshold
                          AND t.locked_until IS NOT NULL
                         THEN GREATEST(t.locks - 1, 0) ELSE t.locks END,
            locked_until = CASE WHEN t.failures - own_failures < p_username_threshold
                                THEN NULL ELSE t.locked_until END
        WHERE t.username = p_username AND t.source = '*';
    END IF;
END
$$;
