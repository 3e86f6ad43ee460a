-- Grant extra tokens for a period; a user now under the block threshold is unblocked.
-- The 80/95 flags stay: those alerts fire once per period.
-- KEYS: cfg, use
-- ARGV: amount, block_pct, use_ttl_seconds
local extra = redis.call('HINCRBY', KEYS[2], 'extra', ARGV[1])
local total = (tonumber(redis.call('HGET', KEYS[1], 'limit')) or 0) + extra
local used = tonumber(redis.call('HGET', KEYS[2], 'used')) or 0
if used < math.floor(total * tonumber(ARGV[2]) / 100) then
  redis.call('HDEL', KEYS[2], 'blk')
end
redis.call('EXPIRE', KEYS[2], ARGV[3])
return extra
