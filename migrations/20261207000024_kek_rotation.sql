-- Rotating the key-encryption key (issue 22): every value sealed under a
-- key-encryption key records which one, so that an instance configured with
-- the current key and previous ones opens each row with the right key, and
-- startup can count what each key still seals without decrypting anything.

-- kek_id: the first 8 bytes of SHA-256("tessera kek id v1" || key), never
-- the key. NULL for rows sealed before this migration (all under the one
-- key of that time): the first startup of this version finds their key by
-- trying each configured one and records it; `tessera keys rewrap` re-seals
-- them.
ALTER TABLE signing_keys ADD COLUMN kek_id bytea CHECK (octet_length(kek_id) = 8);
ALTER TABLE user_totp ADD COLUMN kek_id bytea CHECK (octet_length(kek_id) = 8);

-- Secrets of the deployment kept sealed under the key-encryption key instead
-- of derived from it, so that replacing the key does not change them. One
-- so far, `recovery-codes`: the HMAC key recovery codes are stored under
-- (AAD `secret:<purpose>`). A deployment that existed before this migration
-- gets the key earlier versions derived from the key-encryption key, so its
-- users' codes keep working; a new one gets 32 random bytes.
CREATE TABLE sealed_secrets (
    purpose    text PRIMARY KEY,
    sealed     bytea NOT NULL,
    kek_id     bytea NOT NULL CHECK (octet_length(kek_id) = 8),
    created_at timestamptz NOT NULL
);
