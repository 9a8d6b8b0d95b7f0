-- A second factor (RFC 6238 TOTP, recovery codes) and the first-party apps
-- challenge flow (draft-ietf-oauth-first-party-apps): the challenge that
-- asks for the second factor, and the authorization code it ends with.

-- One TOTP secret per user, sealed under the key-encryption key (AAD
-- `totp:<user id>`). Until confirmed_at is set it is only an enrollment in
-- progress and login does not ask for it. last_step: the newest time step
-- whose code was accepted; every code must be of a later step, so a code
-- is accepted once (on any instance: the update is the check).
CREATE TABLE user_totp (
    user_id       uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret_sealed bytea NOT NULL,
    confirmed_at  timestamptz,
    last_step     bigint,
    created_at    timestamptz NOT NULL
);

-- Single-use recovery codes, as SHA-256 hashes (they are random, 50 bits+).
CREATE TABLE recovery_codes (
    user_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash bytea NOT NULL,
    used_at   timestamptz,
    PRIMARY KEY (user_id, code_hash)
);

-- A login between its password and its second factor (the draft's
-- `auth_session`, stored hashed): one client, one user, one flow.
CREATE TABLE login_challenges (
    id             uuid PRIMARY KEY,
    token_hash     bytea NOT NULL UNIQUE,
    client_id      text NOT NULL,
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    scope          text NOT NULL,
    -- PKCE S256 challenge, once a request of the flow has given it.
    code_challenge text,
    -- The DPoP key of the request that started it: later ones must prove it.
    dpop_jkt       text,
    failures       integer NOT NULL DEFAULT 0,
    expires_at     timestamptz NOT NULL,
    finished_at    timestamptz,
    created_at     timestamptz NOT NULL
);
CREATE INDEX login_challenges_expiry ON login_challenges (expires_at);

-- What a finished challenge (or a password alone) hands the app, redeemed
-- once at the token endpoint with its PKCE verifier.
CREATE TABLE authorization_codes (
    code_hash      bytea PRIMARY KEY,
    client_id      text NOT NULL,
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    scope          text NOT NULL,
    code_challenge text NOT NULL,
    dpop_jkt       text,
    -- RFC 8176 methods the login used (pwd, otp, mfa).
    amr            text[] NOT NULL,
    expires_at     timestamptz NOT NULL,
    used_at        timestamptz,
    -- The session its redemption started: revoked if the code is replayed.
    session_id     uuid,
    created_at     timestamptz NOT NULL
);
CREATE INDEX authorization_codes_expiry ON authorization_codes (expires_at);

-- How a session's login was authenticated, carried by its access tokens
-- (`amr`) across refreshes.
ALTER TABLE sessions ADD COLUMN amr text[] NOT NULL DEFAULT '{pwd}';
