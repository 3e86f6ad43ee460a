-- Admission: status, rate bucket and quota checked, and the reservation made, in one atomic step,
-- so concurrent requests (from any number of processes) cannot jointly overspend.
-- A refusal changes no counter a request spends: it only counts itself (`r:<reason>`) and, when
-- the user has reached the cap, sets the block flag (once a period; the caller raises "blocked").
-- KEYS: cfg, use, inflight, rate
-- ARGV: request_id, prompt_tokens, completion_allowance, block_pct, per_minute, burst, now_ms,
--       period, inflight_info, use_ttl_seconds
-- Returns {decision, used, reserved, total_limit, cap, reservation, retry_after_ms, blocked_now, dept}
--   dept: the cached config's `dept` (the user's department id, '' for none), admitted or not.
--   decision "quota": what is left after `used` cannot hold the prompt (the quota is spent);
--   "busy": it could, but the user's own requests in flight hold it (wait, or retry soon).
-- A config without `monthly_limit` (never cached, or cached before the field was renamed from
-- `limit`) is an unknown user: the caller loads the user from Postgres and tries again.
local cfg = redis.call('HMGET', KEYS[1], 'status', 'monthly_limit', 'dept')
local dept = cfg[3] or ''
if not cfg[1] or (not cfg[2] and cfg[1] ~= 'deleted') then
  return {'unknown_user', 0, 0, 0, 0, 0, 0, 0, ''}
end
local use = redis.call('HMGET', KEYS[2], 'used', 'reserved', 'extra', 'blk')
local used = tonumber(use[1]) or 0
local reserved = tonumber(use[2]) or 0
local total_limit = (tonumber(cfg[2]) or 0) + (tonumber(use[3]) or 0)
local cap = math.floor(total_limit * tonumber(ARGV[4]) / 100)

local function refuse(decision, retry_ms, blocked_now)
  redis.call('HINCRBY', KEYS[2], 'r:' .. decision, 1)
  redis.call('EXPIRE', KEYS[2], ARGV[10])
  return {decision, used, reserved, total_limit, cap, 0, retry_ms, blocked_now, dept}
end

if cfg[1] ~= 'active' then
  return refuse(cfg[1], 0, 0)
end

-- Token bucket, refilled lazily from the elapsed time; a missing bucket is a full one.
local per_minute = tonumber(ARGV[5])
local now = tonumber(ARGV[7])
local capacity, per_ms, left, stamp
if per_minute > 0 then
  capacity = tonumber(ARGV[6])
  if capacity <= 0 then capacity = per_minute end
  per_ms = per_minute / 60000
  local bucket = redis.call('HMGET', KEYS[4], 'tokens', 'ts')
  local tokens = capacity
  stamp = now
  if bucket[1] then
    -- Clocks of different processes differ a little: never let time run backwards.
    stamp = math.max(now, tonumber(bucket[2]) or now)
    tokens = math.min(capacity, tonumber(bucket[1]) + math.max(0, now - (tonumber(bucket[2]) or now)) * per_ms)
  end
  if tokens < 1 then
    return refuse('rate', math.ceil((1 - tokens) / per_ms), 0)
  end
  left = tokens - 1
end

-- Room for the prompt and at least one completion token. Without it: spent, or only held.
local prompt = tonumber(ARGV[2])
if cap - used - prompt < 1 then
  local blocked_now = 0
  if not use[4] then
    redis.call('HSET', KEYS[2], 'blk', 1)
    blocked_now = 1
  end
  return refuse('quota', 0, blocked_now)
end
local room = cap - used - reserved - prompt
if room < 1 then
  return refuse('busy', 0, 0)
end
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then
  return redis.error_reply('duplicate request id ' .. ARGV[1])
end

local reservation = prompt + math.min(tonumber(ARGV[3]), room)
redis.call('HSET', KEYS[3], ARGV[1], string.format('%d|%s|%s', reservation, ARGV[8], ARGV[9]))
reserved = redis.call('HINCRBY', KEYS[2], 'reserved', reservation)
if use[4] then
  -- A stale block flag (the limit was raised since): clear it so reaching the new cap fires again.
  redis.call('HDEL', KEYS[2], 'blk')
end
redis.call('EXPIRE', KEYS[2], ARGV[10])
if per_minute > 0 then
  redis.call('HSET', KEYS[4], 'tokens', tostring(left), 'ts', string.format('%d', stamp))
  redis.call('PEXPIRE', KEYS[4], math.ceil(capacity / per_ms) + 1000)
end
return {'ok', used, reserved, total_limit, cap, reservation, 0, 0, dept}
