-- Admin analytics on millions of ledger rows (issue 6: dashboard and usage history p95 <= 100 ms
-- with 5 million rows; bench/admin.py measures it).

-- The usage history lists the ledger newest first. With only a BRIN index on created_at every page
-- sorted the whole ledger (1-2 s on 5 million rows); a b-tree read backwards gives the order at once,
-- and read forwards it serves the export's oldest-first order. Building it locks out ledger writes
-- for a while on a big table: the writers' events wait in the Redis Stream meanwhile.
CREATE INDEX token_usage_created_id ON token_usage (created_at, id);
-- The same with a user or a model filter: with id in the index a deep page (OFFSET thousands) is
-- found from the index alone, without visiting the rows it skips. They replace 001's indexes on
-- (user_id, created_at DESC) and (model, created_at DESC), which they cover.
CREATE INDEX token_usage_user_created_id ON token_usage (user_id, created_at, id);
CREATE INDEX token_usage_model_created_id ON token_usage (model, created_at, id);
DROP INDEX token_usage_user_created;
DROP INDEX token_usage_model_created;
-- The b-tree serves every created_at range the BRIN index served, and one index less to keep up
-- pays for part of the new one on the ledger writer's side.
DROP INDEX token_usage_created;

-- Two coarser rollups of usage_daily, which has a row per day, user and model (about 450,000 rows
-- for 90 days of 1,000 users on 5 models: too many to sum per dashboard view):
--   usage_daily_models: the same sums per day and model (a few rows a day, whatever the users);
--   usage_daily_users:  which users (not the anonymous user 0) had usage on which day.
-- Triggers on usage_daily keep both equal to what they summarise, in the same transaction as the
-- ledger writer's rollup, whoever writes usage_daily. Rows are upserted in key order so that
-- concurrent writers lock them in the same order.
CREATE TABLE usage_daily_models (
    day                 date NOT NULL,
    model               text NOT NULL,
    requests            bigint NOT NULL DEFAULT 0,
    errors              bigint NOT NULL DEFAULT 0,
    prompt_tokens       bigint NOT NULL DEFAULT 0,
    completion_tokens   bigint NOT NULL DEFAULT 0,
    total_tokens        bigint NOT NULL DEFAULT 0,
    total_cost          double precision NOT NULL DEFAULT 0,
    response_time_ms    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (day, model)
);

CREATE TABLE usage_daily_users (
    day         date NOT NULL,
    user_id     bigint NOT NULL,
    PRIMARY KEY (day, user_id)
);
CREATE INDEX usage_daily_users_user_day ON usage_daily_users (user_id, day);

INSERT INTO usage_daily_models (day, model, requests, errors, prompt_tokens, completion_tokens, total_tokens,
                                total_cost, response_time_ms)
SELECT day, model, sum(requests), sum(errors), sum(prompt_tokens), sum(completion_tokens), sum(total_tokens),
       sum(total_cost), sum(response_time_ms)
FROM usage_daily GROUP BY day, model;

INSERT INTO usage_daily_users (day, user_id)
SELECT DISTINCT day, user_id FROM usage_daily WHERE user_id <> 0;

-- One function for the three row-changing triggers below: the rows a statement added count +1, the
-- rows it removed (the old side of an update, deleted rows) count -1. Dynamic SQL only to name the
-- transition tables each trigger has; the statement text is fixed.
CREATE FUNCTION usage_daily_rollup() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    delta text := CASE TG_OP
        WHEN 'INSERT' THEN 'SELECT 1 AS sign, * FROM new_rows'
        WHEN 'UPDATE' THEN 'SELECT 1 AS sign, * FROM new_rows UNION ALL SELECT -1, * FROM old_rows'
        ELSE 'SELECT -1 AS sign, * FROM old_rows'
    END;
BEGIN
    EXECUTE format($sql$
        INSERT INTO usage_daily_models AS m (day, model, requests, errors, prompt_tokens, completion_tokens,
                                             total_tokens, total_cost, response_time_ms)
        SELECT day, model, sum(sign * requests), sum(sign * errors), sum(sign * prompt_tokens),
               sum(sign * completion_tokens), sum(sign * total_tokens), sum(sign * total_cost),
               sum(sign * response_time_ms)
        FROM (%s) delta GROUP BY day, model ORDER BY day, model
        ON CONFLICT (day, model) DO UPDATE SET
            requests = m.requests + EXCLUDED.requests,
            errors = m.errors + EXCLUDED.errors,
            prompt_tokens = m.prompt_tokens + EXCLUDED.prompt_tokens,
            completion_tokens = m.completion_tokens + EXCLUDED.completion_tokens,
            total_tokens = m.total_tokens + EXCLUDED.total_tokens,
            total_cost = m.total_cost + EXCLUDED.total_cost,
            response_time_ms = m.response_time_ms + EXCLUDED.response_time_ms
    $sql$, delta);
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO usage_daily_users (day, user_id)
        SELECT DISTINCT day, user_id FROM new_rows WHERE user_id <> 0 ORDER BY day, user_id
        ON CONFLICT DO NOTHING;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        -- Keys that lost their last usage_daily row (the writer's updates never change keys, so
        -- for it the EXCEPT is empty).
        EXECUTE format($sql$
            DELETE FROM usage_daily_models m USING (SELECT day, model FROM old_rows %1$s) gone
            WHERE m.day = gone.day AND m.model = gone.model
              AND NOT EXISTS (SELECT 1 FROM usage_daily d WHERE d.day = gone.day AND d.model = gone.model)
        $sql$, CASE WHEN TG_OP = 'UPDATE' THEN 'EXCEPT SELECT day, model FROM new_rows' ELSE '' END);
        EXECUTE format($sql$
            DELETE FROM usage_daily_users u USING (SELECT day, user_id FROM old_rows %1$s) gone
            WHERE u.day = gone.day AND u.user_id = gone.user_id
              AND NOT EXISTS (SELECT 1 FROM usage_daily d WHERE d.day = gone.day AND d.user_id = gone.user_id)
        $sql$, CASE WHEN TG_OP = 'UPDATE' THEN 'EXCEPT SELECT day, user_id FROM new_rows' ELSE '' END);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION usage_daily_rollup_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM usage_daily_models;
    DELETE FROM usage_daily_users;
    RETURN NULL;
END $$;

CREATE TRIGGER usage_daily_rollup_insert AFTER INSERT ON usage_daily
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION usage_daily_rollup();
CREATE TRIGGER usage_daily_rollup_update AFTER UPDATE ON usage_daily
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION usage_daily_rollup();
CREATE TRIGGER usage_daily_rollup_delete AFTER DELETE ON usage_daily
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION usage_daily_rollup();
CREATE TRIGGER usage_daily_rollup_truncate AFTER TRUNCATE ON usage_daily
    FOR EACH STATEMENT EXECUTE FUNCTION usage_daily_rollup_truncate();
