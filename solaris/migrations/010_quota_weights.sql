-- Cost-weighted quotas (issue 16): with weights on, a request is charged to the user's quota
-- `quota_tokens` (its tokens times its model's weight, as the weight was when the request was
-- made), not `total_tokens`. NULL (every row written with weights off, and every row before this
-- migration) means the charge was `total_tokens`: sums of what was charged read
-- coalesce(quota_tokens, total_tokens).
ALTER TABLE token_usage ADD COLUMN quota_tokens bigint;

-- The same charge summed in the daily rollup (for the forecast's pace); NULL on a row means its
-- charge equals its total_tokens, as for the rows before this migration.
ALTER TABLE usage_daily ADD COLUMN quota_tokens bigint;
