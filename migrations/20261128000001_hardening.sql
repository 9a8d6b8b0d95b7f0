-- Usernames are stored in their PRECIS UsernameCaseMapped form. Rows from
-- before are normalised once at startup (and collisions reported); rows
-- written from now on are normalised by the application.
-- The default stays false, so that a row written by an older binary or an
-- import script is normalised at the next startup too.
ALTER TABLE users ADD COLUMN username_normalised boolean NOT NULL DEFAULT false;

-- Client ids and user ids share the `sub` claim (RFC 9068 §5): user ids are
-- UUIDs, so a client id may never look like one, in any spelling.
ALTER TABLE clients ADD CONSTRAINT clients_id_not_uuid CHECK (
    client_id !~* '^(urn:uuid:)?[{]?[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}[}]?$'
);

-- Expired logins are deleted periodically.
CREATE INDEX refresh_families_expiry ON refresh_families (expires_at);

-- Audit rows also come from the CLI (actor `cli`, with the OS user) and
-- from admin calls refused to a valid token (outcome `denied`).
ALTER TABLE audit_log ALTER COLUMN actor_client_id DROP NOT NULL;
ALTER TABLE audit_log ADD COLUMN os_user text;
ALTER TABLE audit_log ADD COLUMN outcome text NOT NULL DEFAULT 'ok'
    CHECK (outcome IN ('ok', 'denied'));
-- Refusals are recorded at most once a minute per caller and call.
CREATE INDEX audit_log_denied ON audit_log (actor, action, created_at DESC) WHERE outcome = 'denied';
