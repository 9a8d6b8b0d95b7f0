-- Tokens shaped for each API (issue 21).

-- The APIs that accept Tessera's tokens (RFC 8707 resource indicators): an
-- access token asked for one carries its URI as `aud`, only the scopes it
-- accepts, and its lifetime if it has one.
CREATE TABLE resources (
    uri             text PRIMARY KEY,
    scopes          text[] NOT NULL,
    access_ttl_secs integer CHECK (access_ttl_secs > 0),
    created_at      timestamptz NOT NULL
);

-- Which resources a client may ask for; none means the default audience only.
CREATE TABLE client_resources (
    client_id text NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    uri       text NOT NULL REFERENCES resources (uri) ON DELETE CASCADE,
    PRIMARY KEY (client_id, uri)
);
CREATE INDEX client_resources_uri ON client_resources (uri);

-- The client mirror holds each client's resources: a change to them (a
-- resource deleted cascades here) is a change of the client.
CREATE TRIGGER client_resources_notify
    AFTER INSERT OR UPDATE OR DELETE ON client_resources
    FOR EACH ROW EXECUTE FUNCTION tessera_notify_client_change();

-- Per-client lifetimes (NULL: the server's default), and the user
-- attributes the client's access tokens carry (none by default).
ALTER TABLE clients ADD COLUMN access_ttl_secs integer CHECK (access_ttl_secs > 0);
ALTER TABLE clients ADD COLUMN refresh_idle_secs integer CHECK (refresh_idle_secs > 0);
ALTER TABLE clients ADD COLUMN refresh_max_secs integer CHECK (refresh_max_secs > 0);
ALTER TABLE clients ADD COLUMN claims text[] NOT NULL DEFAULT '{}';

-- A user's attributes (at most 2 KiB, validated by the service), read by the
-- statements that already read the user at login and refresh.
ALTER TABLE users ADD COLUMN claims jsonb NOT NULL DEFAULT '{}';
