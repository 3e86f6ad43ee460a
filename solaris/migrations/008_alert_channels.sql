-- Alert channels besides e-mail (issue 16, "Alerts where admins live"): generic signed webhooks,
-- Slack- and Microsoft Teams-style incoming webhooks.
--
-- `alert_channels`: one row per channel. `alert_types` lists the alert types it receives. A
-- webhook's signing secret is never stored: `secret_salt` is random per channel and the secret is
-- HMAC-SHA256(server key, salt), so a database dump alone cannot forge signatures.
CREATE TABLE alert_channels (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('webhook', 'slack', 'teams')),
    url         text NOT NULL,
    alert_types text[] NOT NULL DEFAULT '{}',
    enabled     boolean NOT NULL DEFAULT true,
    secret_salt text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);

-- The outbox: one row per (alert, channel), written in the same statement that writes the alert
-- (the trigger below), so an alert is never lost between its insert and its fan-out, whichever
-- process raised it. Delivery claims due rows with FOR UPDATE SKIP LOCKED and a lease, like the
-- alerts' e-mail delivery. `alert_id` NULL: a channel's test message (no alert behind it).
CREATE TABLE alert_channel_deliveries (
    id              bigserial PRIMARY KEY,
    alert_id        bigint REFERENCES alerts (id) ON DELETE CASCADE,
    channel_id      bigint NOT NULL REFERENCES alert_channels (id) ON DELETE CASCADE,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz DEFAULT now(),
    delivered_at    timestamptz,
    test            boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX alert_channel_deliveries_once ON alert_channel_deliveries (alert_id, channel_id)
    WHERE alert_id IS NOT NULL;
CREATE INDEX alert_channel_deliveries_due ON alert_channel_deliveries (next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;
CREATE INDEX alert_channel_deliveries_channel ON alert_channel_deliveries (channel_id, created_at DESC);

-- The delivery log: one row per attempt (its HTTP status, or the error when there was none).
CREATE TABLE alert_channel_attempts (
    id          bigserial PRIMARY KEY,
    delivery_id bigint NOT NULL REFERENCES alert_channel_deliveries (id) ON DELETE CASCADE,
    attempt     integer NOT NULL,
    http_status integer,
    error       text,
    duration_ms integer NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_channel_attempts_delivery ON alert_channel_attempts (delivery_id, attempt);

CREATE FUNCTION alert_channels_fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO alert_channel_deliveries (alert_id, channel_id)
    SELECT NEW.id, c.id FROM alert_channels c
    WHERE c.enabled AND c.deleted_at IS NULL AND NEW.type = ANY (c.alert_types)
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END;
$$;

CREATE TRIGGER alerts_fan_out_to_channels AFTER INSERT ON alerts
    FOR EACH ROW EXECUTE FUNCTION alert_channels_fan_out();
