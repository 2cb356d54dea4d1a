-- Execution slots. A run holds one of its owner's slots while an executor works
-- on it, and not while it waits: for a decision, for a retry's back-off (then
-- its lease is given back with lease_until as the time it may be picked up
-- again), or for a slot. An owner's slots in use are its runs with `executing`
-- set and a live lease, on every replica (a slot of an executor that died frees
-- itself when its lease runs out). `executed_ms` adds up the time the run held a
-- slot, which its execution deadline limits.
ALTER TABLE executor.runs
    ADD COLUMN executing   boolean NOT NULL DEFAULT false,
    ADD COLUMN executed_ms bigint  NOT NULL DEFAULT 0;
CREATE INDEX runs_executing_by_owner ON executor.runs (owner_id) WHERE executing;
