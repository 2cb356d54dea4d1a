-- How often a run's lease was taken over after its holder stopped without
-- finishing or releasing it (the executor crashed, was OOM-killed or lost its
-- node). A run taken over `runs.max_takeovers` times is failed as poisoned rather
-- than handed to the next replica again.
ALTER TABLE executor.runs ADD COLUMN takeovers integer NOT NULL DEFAULT 0;
