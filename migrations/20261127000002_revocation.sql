-- Revocation events: denylisted access tokens (by jti) and per-user
-- not-before instants. Every instance keeps the live rows in memory and
-- learns of new ones through NOTIFY on `tessera_revocations`; offline
-- verifiers page through them by `seq`. Writers take an advisory lock, so
-- `seq` order is commit order and a reader's cursor never skips a row.
CREATE TABLE revocations (
    seq        bigserial PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('access_token', 'user')),
    jti        text,
    user_id    uuid,
    not_before timestamptz,
    -- When the entry stops mattering: the token's own exp, or for a user,
    -- not_before + the access-token lifetime. Pruned after that.
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    CHECK ((kind = 'access_token' AND jti IS NOT NULL) OR (kind = 'user' AND user_id IS NOT NULL AND not_before IS NOT NULL))
);
CREATE UNIQUE INDEX revocations_jti ON revocations (jti) WHERE kind = 'access_token';
CREATE INDEX revocations_expiry ON revocations (expires_at);

-- Who did what through the admin API.
CREATE TABLE audit_log (
    id         bigserial PRIMARY KEY,
    actor      text NOT NULL,
    actor_client_id text NOT NULL,
    action     text NOT NULL,
    target     text,
    reason     text,
    created_at timestamptz NOT NULL
);
CREATE INDEX audit_log_created ON audit_log (created_at DESC, id DESC);
