-- The ledger's idempotency lives in usage_request_ids (every partition, one row per request id);
-- token_usage's own UNIQUE (request_id, created_at) only repeated it within a partition, and its
-- random-keyed index was a third of the ledger writer's time in Postgres (issue 6). Nothing looks
-- rows up by request id in token_usage.
ALTER TABLE token_usage DROP CONSTRAINT IF EXISTS token_usage_request_id_created_at_key;
