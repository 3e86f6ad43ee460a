-- Settlement: swap a request's reservation for its actual usage, then fire each threshold the
-- new total reaches for the first time this period. Atomic, so each fires exactly once.
-- While a rebuild of the period is open (the `rebuild` key exists), the request and what it was
-- charged are recorded there, so the rebuild cannot overwrite this settlement (see rebuild.lua).
-- KEYS: cfg, use, inflight, rebuild
-- ARGV: request_id, actual_tokens, alert80_pct, alert95_pct, block_pct, period, use_ttl_seconds
-- Returns {found (0|1), used, total_limit, crossed...}
local entry = redis.call('HGET', KEYS[3], ARGV[1])
-- `limit`: the monthly limit of a config cached before the field was renamed `monthly_limit`.
local cfg = redis.call('HMGET', KEYS[1], 'monthly_limit', 't80', 't95', 'limit')
local monthly_limit = tonumber(cfg[1]) or tonumber(cfg[4]) or 0
if not entry then
  local use = redis.call('HMGET', KEYS[2], 'used', 'extra')
  return {0, tonumber(use[1]) or 0, monthly_limit + (tonumber(use[2]) or 0)}
end
local reservation, period = string.match(entry, '^(%d+)|([^|]*)|')
if period ~= ARGV[6] then
  return redis.error_reply('request ' .. ARGV[1] .. ' was reserved in period ' .. tostring(period))
end

redis.call('HDEL', KEYS[3], ARGV[1])
if redis.call('HINCRBY', KEYS[2], 'reserved', 0 - tonumber(reservation)) < 0 then
  redis.call('HSET', KEYS[2], 'reserved', 0)
end
local used = redis.call('HINCRBY', KEYS[2], 'used', ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[7])
if redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])
end

local flags = redis.call('HMGET', KEYS[2], 'extra', 'a80', 'a95', 'blk')
local total_limit = monthly_limit + (tonumber(flags[1]) or 0)
local result = {1, used, total_limit}
local function fire(is_set, reached, flag, event)
  if (not is_set) and reached then
    redis.call('HSET', KEYS[2], flag, 1)
    result[#result + 1] = event
  end
end
-- Nothing used, nothing crossed (matters for a zero limit).
if used > 0 then
  local t80 = tonumber(cfg[2]) or tonumber(ARGV[3])
  local t95 = tonumber(cfg[3]) or tonumber(ARGV[4])
  fire(flags[2], used * 100 >= t80 * total_limit, 'a80', 'usage_80')
  fire(flags[3], used * 100 >= t95 * total_limit, 'a95', 'usage_95')
  fire(flags[4], used >= math.floor(total_limit * tonumber(ARGV[5]) / 100), 'blk', 'blocked')
end
return result
