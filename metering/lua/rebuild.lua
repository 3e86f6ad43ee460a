-- Rebuild a period's counters from the ledger (Postgres is the truth). A threshold the user is
-- already past is marked fired, so rebuilding never sends an alert again; the block flag follows
-- the counters both ways. `reserved` is recomputed from the requests really in flight in this
-- period (their entries in `inflight`), which still settle; a reservation nobody holds is gone.
--
-- Settlements race a rebuild: the ledger read in Python misses what was settled while it was being
-- read. So a rebuild is two-phase. `QuotaEngine.rebuild_begin` opens a window (the `rebuild` hash,
-- `_n` counts the rebuilds open on it); while it is open settle.lua records each request it charges
-- there. Python reads the window, then the ledger, and passes `used` = the ledger plus the requests
-- of the window the ledger did not have; this script adds the requests recorded since the window
-- was read (those not listed in ARGV[9..]), and closes its part of the window.
-- KEYS: cfg, use, inflight, rebuild
-- ARGV: used, extra_tokens, alert80_pct, alert95_pct, block_pct, use_ttl_seconds, period,
--       began (1: rebuild_begin opened a window), request ids of the window already counted...
-- `limit`: the monthly limit of a config cached before the field was renamed `monthly_limit`.
if ARGV[8] == '1' and redis.call('EXISTS', KEYS[4]) == 0 then
  return redis.error_reply('rebuild window expired; rebuild again')
end
local cfg = redis.call('HMGET', KEYS[1], 'monthly_limit', 't80', 't95', 'limit')
local used = tonumber(ARGV[1])
if ARGV[8] == '1' then
  local counted = {}
  for i = 9, #ARGV do
    counted[ARGV[i]] = true
  end
  local window = redis.call('HGETALL', KEYS[4])
  for i = 1, #window, 2 do
    if window[i] ~= '_n' and not counted[window[i]] then
      used = used + tonumber(window[i + 1])
    end
  end
  if redis.call('HINCRBY', KEYS[4], '_n', -1) <= 0 then
    redis.call('DEL', KEYS[4])
  end
end
local total_limit = (tonumber(cfg[1]) or tonumber(cfg[4]) or 0) + tonumber(ARGV[2])
local reserved = 0
local entries = redis.call('HGETALL', KEYS[3])
for i = 2, #entries, 2 do
  local reservation, period = string.match(entries[i], '^(%d+)|([^|]*)|')
  if period == ARGV[7] then
    reserved = reserved + tonumber(reservation)
  end
end
redis.call('HSET', KEYS[2], 'used', used, 'extra', ARGV[2], 'reserved', reserved)
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
return used
