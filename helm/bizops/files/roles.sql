-- Roles of ARCHITECTURE.md (Isolation and system paths), created idempotently.
-- Run as a superuser by scripts/dev-services, libs/testkit and the Helm migration Job.
--
--   bizops_migrator        owns every schema and runs migrations (no RLS bypass)
--   bizops_<svc>           serves user-scoped requests: NOSUPERUSER NOBYPASSRLS
--   bizops_<svc>_system    the audited cross-owner paths in system.rs: BYPASSRLS
--
-- Locally every role logs in without a password (trust authentication on
-- 127.0.0.1); in a cluster the Job sets passwords from Kubernetes Secrets.
DO $roles$
DECLARE
    svc text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bizops_migrator') THEN
        CREATE ROLE bizops_migrator LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB;
    END IF;
    FOREACH svc IN ARRAY ARRAY['identity', 'catalog', 'vault', 'executor'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bizops_' || svc) THEN
            EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB', 'bizops_' || svc);
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bizops_' || svc || '_system') THEN
            EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER BYPASSRLS NOCREATEROLE NOCREATEDB', 'bizops_' || svc || '_system');
        END IF;
    END LOOP;
EXCEPTION
    -- Another session created a role between our check and CREATE ROLE.
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$roles$;
