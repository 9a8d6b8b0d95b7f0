-- Key compromise (issue 22): a distrusted signing key is never published,
-- trusted or used to sign again. The row stays, with when and why, for the
-- record (`tessera keys list`).
ALTER TABLE signing_keys ADD COLUMN distrusted_at timestamptz;
ALTER TABLE signing_keys ADD COLUMN distrust_reason text;

-- And every instance and every follower of the revocation feed hears of it
-- as an entry of its own, in `seq` order with the others.
ALTER TABLE revocations ADD COLUMN kid text;
ALTER TABLE revocations DROP CONSTRAINT revocations_kind_check;
ALTER TABLE revocations ADD CONSTRAINT revocations_kind_check
    CHECK (kind IN ('access_token', 'user', 'session', 'client', 'distrusted_key'));
ALTER TABLE revocations DROP CONSTRAINT revocations_shape;
ALTER TABLE revocations ADD CONSTRAINT revocations_shape CHECK (
    (kind = 'access_token' AND jti IS NOT NULL)
    OR (kind = 'user' AND user_id IS NOT NULL AND not_before IS NOT NULL)
    OR (kind = 'session' AND session_id IS NOT NULL)
    OR (kind = 'client' AND client_id IS NOT NULL AND not_before IS NOT NULL)
    OR (kind = 'distrusted_key' AND kid IS NOT NULL)
);
CREATE UNIQUE INDEX revocations_kid ON revocations (kid) WHERE kind = 'distrusted_key';
