-- Usernames are stored in their PRECIS UsernameCaseMapped form. Rows from
-- before are normalised once at startup (and collisions reported); rows
-- written from now on are normalised by the application.
ALTER TABLE users ADD COLUMN username_normalised boolean NOT NULL DEFAULT false;
ALTER TABLE users ALTER COLUMN username_normalised SET DEFAULT true;

-- Client ids and user ids share the `sub` claim (RFC 9068 §5): user ids are
-- UUIDs, so a client id may never look like one, in any spelling.
ALTER TABLE clients ADD CONSTRAINT clients_id_not_uuid CHECK (
    client_id !~* '^(urn:uuid:)?[{]?[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}[}]?$'
);

-- Audit rows also come from the CLI (actor `cli`, with the OS user) and
-- from admin calls refused to a valid token (outcome `denied`).
ALTER TABLE audit_log ALTER COLUMN actor_client_id DROP NOT NULL;
ALTER TABLE audit_log ADD COLUMN os_user text;
ALTER TABLE audit_log ADD COLUMN outcome text NOT NULL DEFAULT 'ok'
    CHECK (outcome IN ('ok', 'denied'));
