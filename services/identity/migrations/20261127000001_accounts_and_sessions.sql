-- identity: accounts, sessions and login throttling.
-- Runs as bizops_migrator, which owns the schema. Row-level security is FORCEd, so
-- even the owner sees only rows of the owner set in `app.owner_id`; the service
-- role (bizops_identity, NOBYPASSRLS) serves user requests, the system role
-- (bizops_identity_system, BYPASSRLS) only the paths in src/system.rs.

-- The owner of the current transaction (`SELECT set_config('app.owner_id', $1, true)`),
-- NULL when unset, so a query without it matches no row.
CREATE FUNCTION identity.current_owner() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ SELECT NULLIF(current_setting('app.owner_id', true), '')::uuid $$;

CREATE TABLE identity.accounts (
    id                  uuid        PRIMARY KEY,
    email               text        NOT NULL,
    display_name        text,
    -- scrypt in PHC string form: $scrypt$ln=..,r=..,p=..$<salt>$<hash>
    password_hash       text        NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_email_key UNIQUE (email),
    CONSTRAINT accounts_email_normalised CHECK (email = lower(btrim(email)) AND length(email) BETWEEN 3 AND 254),
    CONSTRAINT accounts_display_name_length CHECK (display_name IS NULL OR length(display_name) <= 100),
    CONSTRAINT accounts_password_hash_phc CHECK (password_hash LIKE '$scrypt$%')
);

CREATE TABLE identity.sessions (
    id           uuid        PRIMARY KEY,
    owner_id     uuid        NOT NULL REFERENCES identity.accounts (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL
);
CREATE INDEX sessions_owner_id_idx ON identity.sessions (owner_id);

-- Addresses an account has signed in from successfully (hashed), so the per-email
-- throttle cannot lock the owner out from a known address.
CREATE TABLE identity.known_sources (
    owner_id        uuid        NOT NULL REFERENCES identity.accounts (id) ON DELETE CASCADE,
    source_hash     bytea       NOT NULL,
    last_success_at timestamptz NOT NULL,
    PRIMARY KEY (owner_id, source_hash)
);

-- Failed password checks in the throttle window. Keys are SHA-256 hashes of the
-- normalised email, the source address and the pair; rows older than the window
-- are swept. Not per-owner (an unknown email has no owner): system role only.
CREATE TABLE identity.login_failures (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pair_key   bytea       NOT NULL,
    email_key  bytea       NOT NULL,
    source_key bytea       NOT NULL,
    failed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_pair_idx ON identity.login_failures (pair_key, failed_at);
CREATE INDEX login_failures_email_idx ON identity.login_failures (email_key, failed_at);
CREATE INDEX login_failures_source_idx ON identity.login_failures (source_key, failed_at);
CREATE INDEX login_failures_failed_at_idx ON identity.login_failures (failed_at);

ALTER TABLE identity.accounts ENABLE ROW LEVEL SECURITY;
ALTER TABLE identity.accounts FORCE ROW LEVEL SECURITY;
CREATE POLICY accounts_owner ON identity.accounts
    USING (id = identity.current_owner())
    WITH CHECK (id = identity.current_owner());

ALTER TABLE identity.sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE identity.sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY sessions_owner ON identity.sessions
    USING (owner_id = identity.current_owner())
    WITH CHECK (owner_id = identity.current_owner());

ALTER TABLE identity.known_sources ENABLE ROW LEVEL SECURITY;
ALTER TABLE identity.known_sources FORCE ROW LEVEL SECURITY;
CREATE POLICY known_sources_owner ON identity.known_sources
    USING (owner_id = identity.current_owner())
    WITH CHECK (owner_id = identity.current_owner());

-- login_failures is never reachable by the service role; RLS on, no policy, so
-- even a mistaken grant would show nothing.
ALTER TABLE identity.login_failures ENABLE ROW LEVEL SECURITY;
ALTER TABLE identity.login_failures FORCE ROW LEVEL SECURITY;

REVOKE ALL ON SCHEMA identity FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA identity FROM PUBLIC;
GRANT USAGE ON SCHEMA identity TO bizops_identity, bizops_identity_system;
GRANT EXECUTE ON FUNCTION identity.current_owner() TO bizops_identity, bizops_identity_system;
GRANT SELECT, INSERT, UPDATE, DELETE ON identity.accounts, identity.sessions, identity.known_sources
    TO bizops_identity, bizops_identity_system;
GRANT SELECT, INSERT, DELETE ON identity.login_failures TO bizops_identity_system;
