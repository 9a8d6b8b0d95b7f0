-- Core schema: users, clients, refresh-token families and signing keys.
-- Every timestamp is written by the application (it passes "now" in), never by a
-- column default, so tests can control time.

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    username      text NOT NULL UNIQUE,
    -- PHC string ($argon2id$...); upgraded in place when the configured cost rises.
    password_hash text NOT NULL,
    scopes        text[] NOT NULL DEFAULT '{}',
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);

CREATE TABLE clients (
    client_id   text PRIMARY KEY,
    -- SHA-256 of the client secret; NULL for public clients. Secrets are
    -- high-entropy (generated, or at least 32 characters), so a fast hash suffices.
    secret_hash bytea,
    grant_types text[] NOT NULL,
    scopes      text[] NOT NULL DEFAULT '{}',
    disabled    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL
);

-- One family per login: every refresh token descended from it shares the
-- family's absolute expiry, and revoking the family kills all of them.
CREATE TABLE refresh_families (
    id             uuid PRIMARY KEY,
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id      text NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    scope          text NOT NULL,
    created_at     timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    last_used_at   timestamptz,
    revoked_at     timestamptz,
    revoked_reason text
);
CREATE INDEX refresh_families_live_by_user ON refresh_families (user_id) WHERE revoked_at IS NULL;

CREATE TABLE refresh_tokens (
    id         uuid PRIMARY KEY,
    family_id  uuid NOT NULL REFERENCES refresh_families (id) ON DELETE CASCADE,
    parent_id  uuid REFERENCES refresh_tokens (id) ON DELETE CASCADE,
    -- SHA-256 of the opaque token; the token itself is never stored.
    token_hash bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL,
    used_at    timestamptz,
    revoked_at timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_parent ON refresh_tokens (parent_id);

-- A key signs from activates_at until the next key activates; it stays in the
-- JWKS until every token it signed has expired. Both are derived, not stored.
CREATE TABLE signing_keys (
    kid                   text PRIMARY KEY,
    algorithm             text NOT NULL,
    -- AES-256-GCM(nonce || ciphertext || tag) of the PKCS#8 private key, with the kid as AAD.
    private_key_encrypted bytea NOT NULL,
    public_jwk            jsonb NOT NULL,
    created_at            timestamptz NOT NULL,
    activates_at          timestamptz NOT NULL
);
CREATE INDEX signing_keys_activation ON signing_keys (activates_at);
