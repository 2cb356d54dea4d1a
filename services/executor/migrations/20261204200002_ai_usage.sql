-- Tokens each owner used today through the server's Anthropic key (the owner's
-- own key is not counted). A call reserves its largest possible use first and
-- settles to what the answer reports, so concurrent steps cannot pass the budget
-- together. Deleted with the owner's other data; rows of past days go with the
-- retention sweep.
CREATE TABLE executor.ai_usage (
    owner_id uuid   NOT NULL,
    day      date   NOT NULL,
    tokens   bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (owner_id, day)
);
ALTER TABLE executor.ai_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE executor.ai_usage FORCE ROW LEVEL SECURITY;
CREATE POLICY ai_usage_owner ON executor.ai_usage USING (owner_id = executor.current_owner())
    WITH CHECK (owner_id = executor.current_owner());
REVOKE ALL ON executor.ai_usage FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON executor.ai_usage TO bizops_executor_system;
