-- Admin accounts are managed from the panel, the API and the CLI (issue 14 #9): each sign-in is
-- counted (the seed's loginCount beside lastLogin), and an account remembers when it was disabled.
ALTER TABLE admin_accounts ADD COLUMN IF NOT EXISTS login_count integer NOT NULL DEFAULT 0;
ALTER TABLE admin_accounts ADD COLUMN IF NOT EXISTS disabled_at timestamptz;
