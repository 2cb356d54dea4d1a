-- Key-check values of the catalog keys that encrypt webhook secrets: a wrong or
-- mistyped key under a known id stops the service at start-up (naming the id)
-- instead of failing every webhook later.
CREATE TABLE catalog.webhook_key_checks (
    key_id      text        PRIMARY KEY,
    check_value bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE catalog.webhook_key_checks ENABLE ROW LEVEL SECURITY;
ALTER TABLE catalog.webhook_key_checks FORCE ROW LEVEL SECURITY;
GRANT SELECT, INSERT ON catalog.webhook_key_checks TO bizops_catalog_system;

-- Outbox events that fail to publish are retried with backoff without holding up
-- the events behind them.
ALTER TABLE catalog.outbox ADD COLUMN attempts integer NOT NULL DEFAULT 0;
ALTER TABLE catalog.outbox ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX outbox_due_idx ON catalog.outbox (next_attempt_at, id);
GRANT UPDATE ON catalog.outbox TO bizops_catalog_system;
