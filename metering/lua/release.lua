-- Release: the request never reached the upstream; drop its reservation and charge nothing.
-- KEYS: use, inflight
-- ARGV: request_id
-- Returns 1 when a reservation was released, 0 when there was none.
local entry = redis.call('HGET', KEYS[2], ARGV[1])
if not entry then
  return 0
end
redis.call('HDEL', KEYS[2], ARGV[1])
local reservation = tonumber(string.match(entry, '^(%d+)|'))
if redis.call('HINCRBY', KEYS[1], 'reserved', 0 - reservation) < 0 then
  redis.call('HSET', KEYS[1], 'reserved', 0)
end
return 1
