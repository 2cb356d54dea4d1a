-- executor: queue jobs (trigger payloads), runs, step results and approvals.
-- Runs as bizops_migrator. FORCE row-level security on every owner's table; the
-- service role (bizops_executor) serves user requests, the system role
-- (bizops_executor_system) the paths in src/system.rs: intake, leases and the
-- reaper, retention sweeps, scheduler state, approval expiry, deletions.
--
-- Status columns hold the protobuf enum numbers of bizops.events.v1.RunStatus /
-- StepStatus and bizops.executor.v1.ApprovalStatus.

CREATE FUNCTION executor.current_owner() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ SELECT NULLIF(current_setting('app.owner_id', true), '')::uuid $$;

-- A trigger taken in from the stream. Holds the payload; deleted 7 days after its
-- run finished (the privacy policy's promise for queue jobs).
CREATE TABLE executor.jobs (
    id              uuid        PRIMARY KEY,          -- the trigger id
    owner_id        uuid        NOT NULL,
    pilot_id        uuid        NOT NULL,
    idempotency_key text        NOT NULL,
    source          smallint    NOT NULL,
    payload         bytea       NOT NULL,
    content_type    text        NOT NULL,
    accepted_at     timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    CONSTRAINT jobs_pilot_key UNIQUE (pilot_id, idempotency_key)
);
CREATE INDEX jobs_finished_at_idx ON executor.jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX jobs_owner_id_idx ON executor.jobs (owner_id);

CREATE TABLE executor.runs (
    id                   uuid        PRIMARY KEY,
    owner_id             uuid        NOT NULL,
    pilot_id             uuid        NOT NULL,
    pilot_version        bigint      NOT NULL,
    idempotency_key      text        NOT NULL,
    job_id               uuid        REFERENCES executor.jobs (id) ON DELETE SET NULL,
    trigger_id           uuid        NOT NULL,
    source               smallint    NOT NULL,
    status               smallint    NOT NULL,
    -- Index of the first step that has not finished.
    next_step            integer     NOT NULL DEFAULT 0,
    error                text,
    replay_of_run_id     uuid,
    lease_owner          text,
    lease_until          timestamptz,
    created_at           timestamptz NOT NULL,
    started_at           timestamptz,
    finished_at          timestamptz,
    -- Monotonic per run for live events.
    event_seq            bigint      NOT NULL DEFAULT 0,
    CONSTRAINT runs_pilot_key UNIQUE (pilot_id, idempotency_key)
);
CREATE INDEX runs_pilot_created_idx ON executor.runs (pilot_id, created_at DESC, id DESC);
CREATE INDEX runs_owner_id_idx ON executor.runs (owner_id);
-- The reaper looks for unfinished runs whose lease ran out.
CREATE INDEX runs_unfinished_idx ON executor.runs (lease_until) WHERE status IN (1, 2);

CREATE TABLE executor.step_runs (
    run_id           uuid        NOT NULL REFERENCES executor.runs (id) ON DELETE CASCADE,
    idx              integer     NOT NULL,
    owner_id         uuid        NOT NULL,
    step_key         text        NOT NULL,
    kind             text        NOT NULL,
    status           smallint    NOT NULL,
    attempts         integer     NOT NULL DEFAULT 0,
    provider         text,
    -- The output as JSON, secrets redacted; NULL until the step succeeds.
    output           jsonb,
    output_truncated boolean     NOT NULL DEFAULT false,
    error            text,
    started_at       timestamptz,
    finished_at      timestamptz,
    PRIMARY KEY (run_id, idx)
);

CREATE TABLE executor.approvals (
    id         uuid        PRIMARY KEY,
    owner_id   uuid        NOT NULL,
    run_id     uuid        NOT NULL REFERENCES executor.runs (id) ON DELETE CASCADE,
    pilot_id   uuid        NOT NULL,
    step_idx   integer     NOT NULL,
    step_key   text        NOT NULL,
    status     smallint    NOT NULL,
    message    text        NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    decided_at timestamptz,
    decided_by uuid,
    comment    text,
    CONSTRAINT approvals_one_per_step UNIQUE (run_id, step_idx)
);
CREATE INDEX approvals_pending_idx ON executor.approvals (expires_at) WHERE status = 1;
CREATE INDEX approvals_owner_idx ON executor.approvals (owner_id, created_at);

-- The scheduler's high-water mark, shared by every executor replica.
CREATE TABLE executor.scheduler_state (
    id        smallint    PRIMARY KEY CHECK (id = 1),
    last_tick timestamptz NOT NULL
);

DO $rls$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['jobs', 'runs', 'step_runs', 'approvals'] LOOP
        EXECUTE format('ALTER TABLE executor.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE executor.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY %I ON executor.%I USING (owner_id = executor.current_owner()) '
            'WITH CHECK (owner_id = executor.current_owner())',
            t || '_owner', t);
    END LOOP;
END
$rls$;
ALTER TABLE executor.scheduler_state ENABLE ROW LEVEL SECURITY;
ALTER TABLE executor.scheduler_state FORCE ROW LEVEL SECURITY;

REVOKE ALL ON SCHEMA executor FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA executor FROM PUBLIC;
GRANT USAGE ON SCHEMA executor TO bizops_executor, bizops_executor_system;
GRANT EXECUTE ON FUNCTION executor.current_owner() TO bizops_executor, bizops_executor_system;
GRANT SELECT, INSERT, UPDATE, DELETE ON executor.jobs, executor.runs, executor.step_runs, executor.approvals
    TO bizops_executor, bizops_executor_system;
GRANT SELECT, INSERT, UPDATE ON executor.scheduler_state TO bizops_executor_system;
