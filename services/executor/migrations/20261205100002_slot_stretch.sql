-- When a run took the slot it holds, so a stretch ended by a release or by a
-- takeover (its executor stopped) still counts towards the run's execution
-- deadline (`executed_ms`).
ALTER TABLE executor.runs ADD COLUMN slot_taken_at timestamptz;
-- An owner's unfinished runs in order: the hand-outs of waiting runs read them
-- oldest first.
CREATE INDEX runs_unfinished_by_owner ON executor.runs (owner_id, created_at, id) WHERE status IN (1, 2);
