-- End users asking for more tokens (issue 16, "end users who can see and ask"), and the `forecast`
-- alert type.

-- A request for extra tokens this period, with the user's reason. An admin approves it (a grant in
-- token_grants for the period current at approval, which ends with that period) or denies it, with a
-- note either way; the user reads the outcome from the virtual quota model.
CREATE TABLE quota_requests (
    id              bigserial PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES end_users (id),
    amount          bigint NOT NULL CHECK (amount > 0),
    reason          text NOT NULL,
    source          text NOT NULL CHECK (source IN ('chat', 'api')),
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'denied')),
    period          text NOT NULL,  -- the period it was asked in
    grant_id        bigint REFERENCES token_grants (id),
    decided_by      text,
    decision_note   text,
    decided_at      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'pending') = (decided_at IS NULL)),
    CHECK ((status = 'approved') = (grant_id IS NOT NULL))
);
-- One pending request per user at a time: a second one is refused until the first is decided (and
-- two racing requests cannot both get in).
CREATE UNIQUE INDEX quota_requests_one_pending ON quota_requests (user_id) WHERE status = 'pending';
CREATE INDEX quota_requests_user_created ON quota_requests (user_id, created_at DESC);
CREATE INDEX quota_requests_status_created ON quota_requests (status, created_at DESC);

-- The forecast alert: the user's projected run-out date falls before the period's end.
ALTER TABLE alerts DROP CONSTRAINT alerts_type_check;
ALTER TABLE alerts ADD CONSTRAINT alerts_type_check
    CHECK (type IN ('usage_80', 'usage_95', 'blocked', 'system_error', 'model_error', 'forecast'));
