-- Revoking a login (refresh-token family) also revokes the access tokens
-- issued from it: they carry the family id as `sid`, denylisted here until
-- the last of them has expired.
ALTER TABLE revocations ADD COLUMN session_id uuid;
ALTER TABLE revocations DROP CONSTRAINT revocations_kind_check;
ALTER TABLE revocations DROP CONSTRAINT revocations_check;
ALTER TABLE revocations ADD CONSTRAINT revocations_kind_check
    CHECK (kind IN ('access_token', 'user', 'session'));
ALTER TABLE revocations ADD CONSTRAINT revocations_shape CHECK (
    (kind = 'access_token' AND jti IS NOT NULL)
    OR (kind = 'user' AND user_id IS NOT NULL AND not_before IS NOT NULL)
    OR (kind = 'session' AND session_id IS NOT NULL)
);
