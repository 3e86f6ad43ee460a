-- Grant extra tokens for a period; a user now under the block threshold is unblocked.
-- The 80/95 flags stay: those alerts fire once per period.
-- KEYS: cfg, use
-- ARGV: amount, block_pct, use_ttl_seconds
local extra_tokens = redis.call('HINCRBY', KEYS[2], 'extra', ARGV[1])
-- `limit`: the monthly limit of a config cached before the field was renamed `monthly_limit`.
local cfg = redis.call('HMGET', KEYS[1], 'monthly_limit', 'limit')
local total_limit = (tonumber(cfg[1]) or tonumber(cfg[2]) or 0) + extra_tokens
local used = tonumber(redis.call('HGET', KEYS[2], 'used')) or 0
if used < math.floor(total_limit * tonumber(ARGV[2]) / 100) then
  redis.call('HDEL', KEYS[2], 'blk')
end
redis.call('EXPIRE', KEYS[2], ARGV[3])
return extra_tokens
