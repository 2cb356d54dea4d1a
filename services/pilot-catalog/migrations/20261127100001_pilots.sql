-- pilot-catalog: Pilots, immutable versions, schedules, encrypted webhook secrets,
-- and an outbox for events that must follow a committed change (pilot deleted).
-- Runs as bizops_migrator; FORCE row-level security on every owner's table; the
-- service role (bizops_catalog) serves user requests, the system role
-- (bizops_catalog_system) only the paths in src/system.rs.

CREATE FUNCTION catalog.current_owner() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ SELECT NULLIF(current_setting('app.owner_id', true), '')::uuid $$;

CREATE TABLE catalog.pilots (
    id                       uuid        PRIMARY KEY,
    owner_id                 uuid        NOT NULL,
    current_version          bigint      NOT NULL CHECK (current_version >= 1),
    enabled                  boolean     NOT NULL,
    -- Denormalised from the current version for listing.
    title                    text        NOT NULL,
    created_at               timestamptz NOT NULL,
    updated_at               timestamptz NOT NULL,
    webhook_secret_issued_at timestamptz NOT NULL
);
-- UUIDv7 ids sort by creation time: newest first per owner.
CREATE INDEX pilots_owner_id_idx ON catalog.pilots (owner_id, id DESC);

CREATE TABLE catalog.pilot_versions (
    pilot_id   uuid        NOT NULL REFERENCES catalog.pilots (id) ON DELETE CASCADE,
    owner_id   uuid        NOT NULL,
    version    bigint      NOT NULL CHECK (version >= 1),
    title      text        NOT NULL,
    step_count integer     NOT NULL,
    -- bizops.catalog.v1.PilotSpec, protobuf-encoded; never updated.
    spec       bytea       NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (pilot_id, version)
);

-- The schedules of each Pilot's current version, for ListDueSchedules.
CREATE TABLE catalog.schedules (
    pilot_id uuid    NOT NULL REFERENCES catalog.pilots (id) ON DELETE CASCADE,
    id       uuid    NOT NULL,
    owner_id uuid    NOT NULL,
    cron     text    NOT NULL,
    timezone text    NOT NULL,
    enabled  boolean NOT NULL,
    PRIMARY KEY (pilot_id, id)
);

CREATE TABLE catalog.webhook_secrets (
    id          uuid        PRIMARY KEY,
    pilot_id    uuid        NOT NULL REFERENCES catalog.pilots (id) ON DELETE CASCADE,
    owner_id    uuid        NOT NULL,
    -- Which configured catalog key encrypted it.
    key_id      text        NOT NULL,
    -- nonce (12 bytes) || AES-256-GCM ciphertext of the secret, AAD = pilot id.
    ciphertext  bytea       NOT NULL,
    created_at  timestamptz NOT NULL,
    -- NULL for the current secret; for the previous one, the end of its grace period.
    valid_until timestamptz
);
CREATE INDEX webhook_secrets_pilot_id_idx ON catalog.webhook_secrets (pilot_id);

-- Events written in the same transaction as the change they announce, published
-- to JetStream by the relay and then deleted.
CREATE TABLE catalog.outbox (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id   uuid        NOT NULL,
    subject    text        NOT NULL,
    msg_id     text        NOT NULL,
    payload    bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

DO $rls$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['pilots', 'pilot_versions', 'schedules', 'webhook_secrets', 'outbox'] LOOP
        EXECUTE format('ALTER TABLE catalog.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE catalog.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY %I ON catalog.%I USING (owner_id = catalog.current_owner()) '
            'WITH CHECK (owner_id = catalog.current_owner())',
            t || '_owner', t);
    END LOOP;
END
$rls$;

REVOKE ALL ON SCHEMA catalog FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA catalog FROM PUBLIC;
GRANT USAGE ON SCHEMA catalog TO bizops_catalog, bizops_catalog_system;
GRANT EXECUTE ON FUNCTION catalog.current_owner() TO bizops_catalog, bizops_catalog_system;
GRANT SELECT, INSERT, UPDATE, DELETE
    ON catalog.pilots, catalog.pilot_versions, catalog.schedules, catalog.webhook_secrets
    TO bizops_catalog, bizops_catalog_system;
GRANT INSERT ON catalog.outbox TO bizops_catalog;
GRANT SELECT, DELETE ON catalog.outbox TO bizops_catalog_system;
