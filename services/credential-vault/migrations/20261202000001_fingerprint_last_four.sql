-- Fingerprints become the last 4 characters of the value ("…a1b2"; only "…" for a
-- value shorter than 12 characters), so users can match them against what the
-- provider shows. Rows stored before hold 4 hex digits of an HMAC under the data
-- key instead: they look the same but match nothing the user can see, so they are
-- cleared to "…" until the value is stored again (the vault cannot recompute them
-- without decrypting every value).
COMMENT ON COLUMN vault.credentials.fingerprint IS
    '"…" and the last 4 characters of the trimmed value; only "…" when it is shorter than 12 characters';

-- Row-level security is forced even for the table's owner (this role); this one
-- update spans every owner, so it is lifted for the length of this transaction.
ALTER TABLE vault.credentials NO FORCE ROW LEVEL SECURITY;
UPDATE vault.credentials SET fingerprint = '…';
ALTER TABLE vault.credentials FORCE ROW LEVEL SECURITY;
