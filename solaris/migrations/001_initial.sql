-- The whole data model of the seed (types/api.ts), in the seed's words, snake_case.

-- End users: the people chatting in LibreChat. Never deleted for real: `deleted_at` hides them and
-- keeps their usage history attached to them.
CREATE TABLE end_users (
    id                          bigserial PRIMARY KEY,
    email                       text NOT NULL,
    librechat_id                text,
    name                        text NOT NULL DEFAULT '',
    phone                       text,
    status                      text NOT NULL DEFAULT 'active'
                                CHECK (status IN ('active', 'suspended', 'blocked', 'pending')),
    plan                        text NOT NULL DEFAULT 'basic'
                                CHECK (plan IN ('basic', 'pro', 'enterprise', 'trial')),
    monthly_limit               bigint NOT NULL CHECK (monthly_limit >= 0),
    last_alert_date             timestamptz,
    last_login                  timestamptz,
    login_count                 integer NOT NULL DEFAULT 0,
    notes                       text,
    custom_alert_threshold80    numeric(5, 2) CHECK (custom_alert_threshold80 > 0 AND custom_alert_threshold80 <= 100),
    custom_alert_threshold95    numeric(5, 2) CHECK (custom_alert_threshold95 > 0 AND custom_alert_threshold95 <= 100),
    email_notifications_enabled boolean NOT NULL DEFAULT true,
    language                    text CHECK (language IN ('pt-BR', 'en')),
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    deleted_at                  timestamptz
);
CREATE UNIQUE INDEX end_users_email_key ON end_users (lower(email)) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX end_users_librechat_id_key ON end_users (librechat_id) WHERE deleted_at IS NULL;
CREATE INDEX end_users_status_plan ON end_users (status, plan) WHERE deleted_at IS NULL;

-- Admin accounts: people who use the panel and the /api.
CREATE TABLE admin_accounts (
    id              bigserial PRIMARY KEY,
    email           text NOT NULL,
    name            text NOT NULL,
    password_hash   text NOT NULL,
    role            text NOT NULL DEFAULT 'user' CHECK (role IN ('admin', 'user')),
    permissions     text[] NOT NULL DEFAULT '{}',
    is_active       boolean NOT NULL DEFAULT true,
    last_login      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX admin_accounts_email_key ON admin_accounts (lower(email));

-- Admin sessions: opaque bearer tokens, stored as SHA-256 digests, revocable.
CREATE TABLE admin_sessions (
    token_hash      bytea PRIMARY KEY,
    admin_id        bigint NOT NULL REFERENCES admin_accounts (id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    revoked_at      timestamptz,
    ip_address      text,
    user_agent      text
);
CREATE INDEX admin_sessions_admin ON admin_sessions (admin_id);

-- API keys: service keys (LibreChat) have no end user; personal keys belong to one.
-- Keys are random 256-bit secrets, so a SHA-256 digest is a safe and fast lookup hash.
CREATE TABLE api_keys (
    id              bigserial PRIMARY KEY,
    key_hash        bytea NOT NULL UNIQUE,
    prefix          text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('service', 'personal')),
    user_id         bigint REFERENCES end_users (id),
    name            text NOT NULL DEFAULT '',
    created_by      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_used_at    timestamptz,
    revoked_at      timestamptz,
    CHECK ((kind = 'personal') = (user_id IS NOT NULL))
);
CREATE INDEX api_keys_prefix ON api_keys (prefix);
CREATE INDEX api_keys_user ON api_keys (user_id) WHERE user_id IS NOT NULL;

-- Token usage: one row per forwarded request, idempotent on request_id. Partitioned by month on
-- created_at (the request's start time, fixed in the usage event so retries land in one partition).
CREATE TABLE token_usage (
    id                  bigserial,
    user_id             bigint,
    request_id          text NOT NULL,
    session_id          text,
    model               text NOT NULL,
    endpoint            text NOT NULL,
    method              text NOT NULL DEFAULT 'POST',
    prompt_tokens       integer NOT NULL DEFAULT 0,
    completion_tokens   integer NOT NULL DEFAULT 0,
    total_tokens        integer NOT NULL DEFAULT 0,
    estimated_tokens    integer,
    estimation_accuracy double precision,
    cost_per_token      double precision NOT NULL DEFAULT 0,
    total_cost          double precision NOT NULL DEFAULT 0,
    user_agent          text,
    ip_address          text,
    country_code        text,
    response_time_ms    integer,
    queue_time_ms       integer,
    processing_time_ms  integer,
    status_code         integer NOT NULL,
    error_message       text,
    error_type          text,
    is_cached           boolean NOT NULL DEFAULT false,
    is_retry            boolean NOT NULL DEFAULT false,
    retry_count         integer NOT NULL DEFAULT 0,
    is_complete         boolean NOT NULL DEFAULT true,
    price_known         boolean NOT NULL DEFAULT true,
    request_data        text,
    response_data       text,
    created_at          timestamptz NOT NULL,
    PRIMARY KEY (id, created_at),
    UNIQUE (request_id, created_at)
) PARTITION BY RANGE (created_at);
CREATE TABLE token_usage_default PARTITION OF token_usage DEFAULT;
CREATE INDEX token_usage_created ON token_usage USING brin (created_at);
CREATE INDEX token_usage_user_created ON token_usage (user_id, created_at DESC);
CREATE INDEX token_usage_model_created ON token_usage (model, created_at DESC);

-- Monthly partitions are made ahead of time; rows outside them fall into the default partition.
CREATE FUNCTION ensure_token_usage_partition(month_start date) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    part_name text := format('token_usage_%s', to_char(month_start, 'YYYY_MM'));
BEGIN
    IF to_regclass(part_name) IS NULL THEN
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF token_usage FOR VALUES FROM (%L) TO (%L)',
            part_name, month_start::timestamptz, (month_start + interval '1 month')::timestamptz);
    END IF;
END $$;

-- Request ids already recorded, so that a replayed usage event is recognised whatever partition
-- its row went to (the partitioned table can only enforce uniqueness with created_at).
CREATE TABLE usage_request_ids (
    request_id  text PRIMARY KEY,
    created_at  timestamptz NOT NULL
);

-- Daily rollup kept by the ledger writer in the same transaction as the rows, for fast analytics.
CREATE TABLE usage_daily (
    day                 date NOT NULL,
    user_id             bigint NOT NULL DEFAULT 0,
    model               text NOT NULL,
    requests            bigint NOT NULL DEFAULT 0,
    errors              bigint NOT NULL DEFAULT 0,
    prompt_tokens       bigint NOT NULL DEFAULT 0,
    completion_tokens   bigint NOT NULL DEFAULT 0,
    total_tokens        bigint NOT NULL DEFAULT 0,
    total_cost          double precision NOT NULL DEFAULT 0,
    response_time_ms    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (day, user_id, model)
);
CREATE INDEX usage_daily_user_day ON usage_daily (user_id, day);

-- Extra tokens granted to a user for one period (YYYY-MM in SOLARIS_TIMEZONE).
CREATE TABLE token_grants (
    id          bigserial PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES end_users (id),
    period      text NOT NULL,
    amount      bigint NOT NULL CHECK (amount <> 0),
    reason      text NOT NULL DEFAULT '',
    actor       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX token_grants_user_period ON token_grants (user_id, period);

-- Usage resets: rebuilding counters from the ledger counts only what came after the last reset.
CREATE TABLE usage_resets (
    id          bigserial PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES end_users (id),
    period      text NOT NULL,
    actor       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX usage_resets_user_period ON usage_resets (user_id, period, created_at DESC);

-- Alerts: the seed's Alert. `period` and the partial unique index make each threshold fire once.
CREATE TABLE alerts (
    id              bigserial PRIMARY KEY,
    user_id         bigint REFERENCES end_users (id),
    type            text NOT NULL
                    CHECK (type IN ('usage_80', 'usage_95', 'blocked', 'system_error', 'model_error')),
    title           text NOT NULL,
    message         text NOT NULL,
    severity        text NOT NULL CHECK (severity IN ('info', 'warning', 'error', 'critical')),
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sent', 'failed', 'acknowledged')),
    period          text,
    dedupe_key      text,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    sent_at         timestamptz,
    acknowledged_at timestamptz,
    metadata        jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX alerts_dedupe_key ON alerts (dedupe_key) WHERE dedupe_key IS NOT NULL;
CREATE INDEX alerts_user_created ON alerts (user_id, created_at DESC);
CREATE INDEX alerts_status_created ON alerts (status, created_at DESC);
CREATE INDEX alerts_retry ON alerts (next_attempt_at) WHERE status IN ('pending', 'failed');

-- Audit log: the seed's AuditLog. `user_id` is the acting admin account.
CREATE TABLE audit_log (
    id              bigserial PRIMARY KEY,
    user_id         bigint,
    actor_email     text,
    action          text NOT NULL,
    resource        text NOT NULL,
    resource_id     text,
    details         jsonb NOT NULL DEFAULT '{}',
    ip_address      text,
    user_agent      text,
    request_id      text,
    success         boolean NOT NULL,
    error_message   text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_created ON audit_log (created_at DESC);
CREATE INDEX audit_log_user_created ON audit_log (user_id, created_at DESC);
CREATE INDEX audit_log_action ON audit_log (action, resource);

-- System settings: the seed's SystemSettings as one JSON document (one row), validated in code.
-- The SMTP password is kept apart so that it is never returned with the settings.
CREATE TABLE system_settings (
    id              boolean PRIMARY KEY DEFAULT true CHECK (id),
    settings        jsonb NOT NULL,
    smtp_password   text NOT NULL DEFAULT '',
    updated_at      timestamptz NOT NULL DEFAULT now(),
    updated_by      text
);
