"""The Lua scripts the Redis broker runs: each one atomic, each on the keys of one group.

Keys and payload format: :mod:`fullduplex.brokers.wire`. Times are milliseconds; presence
expiry uses the server's clock (``TIME``), so machines with skewed clocks agree.
"""

from __future__ import annotations

__all__ = [
    "NEW_EPOCH",
    "POSITION",
    "PRESENCE_ADD",
    "PRESENCE_READ",
    "PRESENCE_REFRESH",
    "PUBLISH",
    "RECOVER",
]

PUBLISH = """
-- KEYS: meta, stream, idempotency result (meta when unused)
-- ARGV: channel, new epoch, head, data, history size (-1: as recorded), history ttl,
--       meta ttl, publish command, idempotency ttl (0: none)
local meta, stream = KEYS[1], KEYS[2]
if ARGV[9] ~= '0' then
  local done = redis.call('GET', KEYS[3])
  if done then
    local sep = string.find(done, ':', 1, true)
    return {tonumber(string.sub(done, sep + 1)), string.sub(done, 1, sep - 1), 1}
  end
end
local epoch = redis.call('HGET', meta, 'e')
if not epoch then
  epoch = ARGV[2]
  redis.call('HSET', meta, 'e', epoch)
  redis.call('DEL', stream)
end
local size, ttl = ARGV[5], ARGV[6]
if size == '-1' then
  -- A publisher that does not know the group's options (a script outside the app): use
  -- those the app's last publish recorded.
  local stored = redis.call('HMGET', meta, 'hs', 'ht')
  size, ttl = stored[1] or '0', stored[2] or '0'
else
  redis.call('HSET', meta, 'hs', size, 'ht', ttl)
end
local offset = redis.call('HINCRBY', meta, 'o', 1)
redis.call('PEXPIRE', meta, ARGV[7])
if size ~= '0' then
  redis.call('XADD', stream, 'MAXLEN', size, offset .. '-0', 'd', ARGV[3] .. ARGV[4])
  redis.call('PEXPIRE', stream, ttl)
end
redis.call(ARGV[8], ARGV[1], epoch .. ':' .. offset .. ':' .. ARGV[3] .. ARGV[4])
if ARGV[9] ~= '0' then
  redis.call('SET', KEYS[3], epoch .. ':' .. offset, 'PX', ARGV[9])
end
return {offset, epoch, 0}
"""

POSITION = """
-- KEYS: meta. Returns {epoch or '', offset}.
local position = redis.call('HMGET', KEYS[1], 'e', 'o')
return {position[1] or '', tonumber(position[2] or '0')}
"""

RECOVER = """
-- KEYS: meta, stream. ARGV: first offset wanted, most entries, new epoch, meta ttl.
-- Returns {epoch, top, entries}. A group with no state gets its epoch here, so that a client
-- that joins before the first publish has a position to come back with.
local position = redis.call('HMGET', KEYS[1], 'e', 'o')
local epoch, top = position[1], tonumber(position[2] or '0')
if not epoch then
  epoch, top = ARGV[3], 0
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  redis.call('DEL', KEYS[2])
end
local entries = {}
if tonumber(ARGV[1]) <= top then
  entries = redis.call('XRANGE', KEYS[2], ARGV[1] .. '-0', '+', 'COUNT', ARGV[2])
end
return {epoch, top, entries}
"""

NEW_EPOCH = """
-- KEYS: meta, stream. ARGV: the epoch that went wrong, the new epoch.
-- Starts a new epoch (offsets from 1, history emptied) unless another process already did.
if redis.call('HGET', KEYS[1], 'e') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'e', ARGV[2], 'o', 0)
redis.call('DEL', KEYS[2])
return 1
"""

PRESENCE_ADD = """
-- KEYS: presence set, users hash. ARGV: session id, user id ('' none), ttl.
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[1], ms + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3] * 2)
redis.call('PEXPIRE', KEYS[2], ARGV[3] * 2)
return 1
"""

PRESENCE_REFRESH = """
-- KEYS: presence set, users hash. ARGV: ttl, then the session ids still present.
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', ms + ttl, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ttl * 2)
redis.call('PEXPIRE', KEYS[2], ttl * 2)
return #ARGV - 1
"""

PRESENCE_READ = """
-- KEYS: presence set, users hash. Drops the expired; returns {session, user, ...}.
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ms)
-- One call per element, not unpack(): Lua's stack holds at most ~8000 arguments.
for _, session in ipairs(expired) do
  redis.call('HDEL', KEYS[2], session)
end
if #expired > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms)
end
local result = {}
for _, session in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  result[#result + 1] = session
  result[#result + 1] = redis.call('HGET', KEYS[2], session) or ''
end
return result
"""
