-- DPoP (RFC 9449).
--
-- A client registered with dpop_bound_access_tokens (the RFC 9449 §10.2
-- metadata name) must send a proof with every token request.
ALTER TABLE clients ADD COLUMN dpop_bound_access_tokens boolean NOT NULL DEFAULT false;

-- The RFC 7638 thumbprint of the key a public client's session is bound to:
-- every refresh needs a proof by that key. NULL: a bearer session.
ALTER TABLE sessions ADD COLUMN dpop_jkt text;

-- Proofs used at the grants that write here anyway (password, refresh), so
-- that a proof replayed to another instance is refused too. The key is a
-- hash of the proof's key thumbprint and jti; a row is needed only until
-- the proof's iat leaves the window (expires_at).
CREATE TABLE dpop_proofs (
    proof_key  bytea PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE INDEX dpop_proofs_expiry ON dpop_proofs (expires_at);
