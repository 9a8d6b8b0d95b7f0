-- Per-client not-before: every access token of the client issued before
-- `not_before` is revoked (`tessera client disable|rotate-secret
-- --revoke-tokens`, and a client that revokes many of its own tokens).
-- One row per client: a later one replaces it (with a new `seq`, so
-- followers hear of it). Denylisted service tokens also record their
-- client, so that their number per client can be bounded.
ALTER TABLE revocations ADD COLUMN client_id text;
ALTER TABLE revocations DROP CONSTRAINT revocations_kind_check;
ALTER TABLE revocations ADD CONSTRAINT revocations_kind_check
    CHECK (kind IN ('access_token', 'user', 'session', 'client'));
ALTER TABLE revocations DROP CONSTRAINT revocations_shape;
ALTER TABLE revocations ADD CONSTRAINT revocations_shape CHECK (
    (kind = 'access_token' AND jti IS NOT NULL)
    OR (kind = 'user' AND user_id IS NOT NULL AND not_before IS NOT NULL)
    OR (kind = 'session' AND session_id IS NOT NULL)
    OR (kind = 'client' AND client_id IS NOT NULL AND not_before IS NOT NULL)
);
CREATE UNIQUE INDEX revocations_client ON revocations (client_id) WHERE kind = 'client';
CREATE INDEX revocations_client_tokens ON revocations (client_id, expires_at) WHERE kind = 'access_token';
CREATE INDEX refresh_families_live_by_client ON refresh_families (client_id) WHERE revoked_at IS NULL;
