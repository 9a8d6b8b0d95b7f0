-- One word for one concept: the login that a chain of refresh tokens
-- belongs to is a session everywhere (code, SQL, the admin API's
-- /sessions routes, the access token's `sid`). It was called a refresh-
-- token family here.
ALTER TABLE refresh_families RENAME TO sessions;
ALTER INDEX refresh_families_live_by_user RENAME TO sessions_live_by_user;
ALTER INDEX refresh_families_live_by_client RENAME TO sessions_live_by_client;
ALTER INDEX refresh_families_expiry RENAME TO sessions_expiry;
ALTER TABLE refresh_tokens RENAME COLUMN family_id TO session_id;
ALTER INDEX refresh_tokens_family RENAME TO refresh_tokens_session;
