-- Account deletions in progress. A deletion is recorded (after the password was
-- checked) before anything is deleted, advances one step at a time, and is
-- finished by a retry or the background loop after a crash or a failed call;
-- sign-in is refused meanwhile. The row is deleted with the account's own rows
-- at the very end, so nothing of the account outlives the deletion.
CREATE TABLE identity.account_deletions (
    owner_id   uuid        PRIMARY KEY,
    -- For the deletion notice and to forget the throttle rows at the end.
    email      text        NOT NULL,
    step       smallint    NOT NULL DEFAULT 0,
    attempts   integer     NOT NULL DEFAULT 0,
    last_error text,
    started_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE identity.account_deletions ENABLE ROW LEVEL SECURITY;
ALTER TABLE identity.account_deletions FORCE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE, DELETE ON identity.account_deletions TO bizops_identity_system;
-- The system role deletes the account's own rows at the end of a deletion.
GRANT DELETE ON identity.accounts, identity.sessions, identity.known_sources TO bizops_identity_system;
