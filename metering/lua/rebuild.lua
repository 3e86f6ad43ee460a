-- Rebuild a period's counters from the ledger (Postgres is the truth). A threshold the user is
-- already past is marked fired, so rebuilding never sends an alert again; the block flag follows
-- the counters both ways. In-flight reservations are kept: those requests still settle.
-- KEYS: cfg, use
-- ARGV: used, extra_tokens, alert80_pct, alert95_pct, block_pct, use_ttl_seconds
-- `limit`: the monthly limit of a config cached before the field was renamed `monthly_limit`.
local cfg = redis.call('HMGET', KEYS[1], 'monthly_limit', 't80', 't95', 'limit')
local used = tonumber(ARGV[1])
local total_limit = (tonumber(cfg[1]) or tonumber(cfg[4]) or 0) + tonumber(ARGV[2])
redis.call('HSET', KEYS[2], 'used', ARGV[1], 'extra', ARGV[2])
if used > 0 then
  if used * 100 >= (tonumber(cfg[2]) or tonumber(ARGV[3])) * total_limit then
    redis.call('HSET', KEYS[2], 'a80', 1)
  end
  if used * 100 >= (tonumber(cfg[3]) or tonumber(ARGV[4])) * total_limit then
    redis.call('HSET', KEYS[2], 'a95', 1)
  end
end
if used > 0 and used >= math.floor(total_limit * tonumber(ARGV[5]) / 100) then
  redis.call('HSET', KEYS[2], 'blk', 1)
else
  redis.call('HDEL', KEYS[2], 'blk')
end
redis.call('EXPIRE', KEYS[2], ARGV[6])
return 1
