-- Departments (issue 16, "departments and fair quotas"): a monthly token limit shared by the users
-- in it, with optional alert thresholds of its own and contacts to alert. A user belongs to at most
-- one department.
CREATE TABLE departments (
    id                bigserial PRIMARY KEY,
    name              text NOT NULL CHECK (length(btrim(name)) > 0),
    monthly_limit     bigint NOT NULL CHECK (monthly_limit >= 0),
    -- percentages of the limit; NULL means the defaults (80 and 95)
    alert_thresholds  numeric(5, 2)[] CHECK (alert_thresholds IS NULL OR (0 < ALL (alert_thresholds) AND 100 >= ALL (alert_thresholds))),
    contacts          text[] NOT NULL DEFAULT '{}',  -- e-mail addresses alerted at its thresholds
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz
);
CREATE UNIQUE INDEX departments_name_key ON departments (lower(name)) WHERE deleted_at IS NULL;

ALTER TABLE end_users ADD COLUMN department_id bigint REFERENCES departments (id);
CREATE INDEX end_users_department ON end_users (department_id) WHERE department_id IS NOT NULL AND deleted_at IS NULL;

-- The department a request was charged to, as it was when the request was made: the chargeback of
-- a closed month does not move when a user changes department later.
ALTER TABLE token_usage ADD COLUMN department_id bigint;
CREATE INDEX token_usage_department_created ON token_usage (department_id, created_at DESC) WHERE department_id IS NOT NULL;
