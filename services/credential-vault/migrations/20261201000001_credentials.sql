-- credential-vault: envelope-encrypted connector credentials, KEK key-check values,
-- the minimum decryption version and key-rotation jobs.
-- Runs as bizops_migrator, which owns the schema. Row-level security is FORCEd on
-- credentials, so even the owner of the table sees only the rows of the owner set
-- in `app.owner_id`; the service role (bizops_vault, NOBYPASSRLS) serves user
-- requests and ResolveForRun, the system role (bizops_vault_system, BYPASSRLS)
-- only the paths in src/system.rs.

-- The owner of the current transaction (`SELECT set_config('app.owner_id', $1, true)`),
-- NULL when unset, so a query without it matches no row.
CREATE FUNCTION vault.current_owner() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ SELECT NULLIF(current_setting('app.owner_id', true), '')::uuid $$;

-- One credential. The value is stored only as AES-256-GCM ciphertext under a per-row
-- data key; the data key only wrapped by a KEK (see src/crypto.rs for the formats).
CREATE TABLE vault.credentials (
    id           uuid        PRIMARY KEY,
    owner_id     uuid        NOT NULL,
    name         text        NOT NULL,
    -- Connector kind as named in src/connectors.rs (no list here: adding a kind
    -- needs no migration).
    kind         text        NOT NULL,
    -- nonce (12) ‖ ciphertext ‖ tag (16)
    ciphertext   bytea       NOT NULL,
    -- "v<N>:" ‖ nonce (12) ‖ wrapped data key (32) ‖ tag (16)
    wrapped_key  bytea       NOT NULL,
    kek_version  integer     NOT NULL,
    -- "…" and 4 hex digits of HMAC-SHA256 under the data key; never of the bare value
    fingerprint  text        NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    last_used_at timestamptz,
    CONSTRAINT credentials_owner_name_key UNIQUE (owner_id, name),
    CONSTRAINT credentials_name_format CHECK (name ~ '^[a-z][a-z0-9_-]{0,62}$'),
    CONSTRAINT credentials_kind_format CHECK (kind ~ '^[a-z][a-z0-9_]{0,31}$'),
    CONSTRAINT credentials_kek_version_positive CHECK (kek_version > 0),
    CONSTRAINT credentials_ciphertext_length CHECK (length(ciphertext) >= 28),
    -- The version in the wrapped key's prefix and the column always agree.
    CONSTRAINT credentials_wrapped_key_version CHECK (
        substring(wrapped_key FROM 1 FOR length('v' || kek_version || ':')) = convert_to('v' || kek_version || ':', 'UTF8')
        AND length(wrapped_key) = length('v' || kek_version || ':') + 60
    )
);
CREATE INDEX credentials_kek_version_idx ON vault.credentials (kek_version);

ALTER TABLE vault.credentials ENABLE ROW LEVEL SECURITY;
ALTER TABLE vault.credentials FORCE ROW LEVEL SECURITY;
CREATE POLICY credentials_owner ON vault.credentials
    USING (owner_id = vault.current_owner())
    WITH CHECK (owner_id = vault.current_owner());

-- Key-check values: HMAC-SHA256 of a fixed label under each KEK version seen, so a
-- wrong key stops the service at start-up instead of failing decryptions later.
CREATE TABLE vault.kek_checks (
    version     integer     PRIMARY KEY CHECK (version > 0),
    check_value bytea       NOT NULL CHECK (length(check_value) = 32),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Service-wide settings: one row.
CREATE TABLE vault.settings (
    singleton              boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    -- Data keys wrapped under a lower KEK version are refused (0 = none retired).
    min_decryption_version integer     NOT NULL DEFAULT 0 CHECK (min_decryption_version >= 0),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
INSERT INTO vault.settings DEFAULT VALUES;

-- Key-rotation jobs: progress and cursor are written in the same transaction as
-- each batch of rewrapped keys, so a job resumes exactly where it stopped.
CREATE TABLE vault.rotation_jobs (
    id             uuid        PRIMARY KEY,
    state          text        NOT NULL CHECK (state IN ('running', 'completed', 'failed')),
    target_version integer     NOT NULL CHECK (target_version > 0),
    batch_size     integer     NOT NULL CHECK (batch_size BETWEEN 1 AND 1000),
    -- Rows with an id up to this one existed when the job started (UUIDv7 ids grow).
    upto_id        uuid,
    cursor_id      uuid,
    total          bigint      NOT NULL DEFAULT 0,
    done           bigint      NOT NULL DEFAULT 0,
    failed         bigint      NOT NULL DEFAULT 0,
    last_error     text,
    started_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz
);
-- At most one running job.
CREATE UNIQUE INDEX rotation_jobs_one_running ON vault.rotation_jobs ((true)) WHERE state = 'running';

-- Not per-owner and never reachable by the service role: RLS on, no policy, so even
-- a mistaken grant would show nothing.
ALTER TABLE vault.kek_checks ENABLE ROW LEVEL SECURITY;
ALTER TABLE vault.kek_checks FORCE ROW LEVEL SECURITY;
ALTER TABLE vault.rotation_jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE vault.rotation_jobs FORCE ROW LEVEL SECURITY;

REVOKE ALL ON SCHEMA vault FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA vault FROM PUBLIC;
GRANT USAGE ON SCHEMA vault TO bizops_vault, bizops_vault_system;
GRANT EXECUTE ON FUNCTION vault.current_owner() TO bizops_vault, bizops_vault_system;
GRANT SELECT, INSERT, UPDATE, DELETE ON vault.credentials TO bizops_vault;
-- The service role reads the minimum decryption version with each decryption.
GRANT SELECT ON vault.settings TO bizops_vault;
GRANT SELECT, UPDATE, DELETE ON vault.credentials TO bizops_vault_system;
GRANT SELECT, INSERT ON vault.kek_checks TO bizops_vault_system;
GRANT SELECT, UPDATE ON vault.settings TO bizops_vault_system;
GRANT SELECT, INSERT, UPDATE ON vault.rotation_jobs TO bizops_vault_system;
