-- Every instance keeps the clients in memory (issue 11). A trigger, not the
-- application, announces each change, so that a change made by any means
-- (the CLI, another version, an operator at psql) reaches every instance
-- at commit. The payload is the client_id; readers re-read that row.
CREATE FUNCTION tessera_notify_client_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tessera_clients',
        CASE WHEN TG_OP = 'DELETE' THEN OLD.client_id ELSE NEW.client_id END);
    RETURN NULL;
END;
$$;

CREATE TRIGGER clients_notify
    AFTER INSERT OR UPDATE OR DELETE ON clients
    FOR EACH ROW EXECUTE FUNCTION tessera_notify_client_change();
