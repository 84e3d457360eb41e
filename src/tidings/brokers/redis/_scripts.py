"""The Lua scripts of the adapter: each is one atomic step at the server.

Stream ids are ``<ms>-<offset>``: :data:`PUBLISH` gives every entry of a
partition the next offset as the sequence part and the server's clock (never
going back) as the time part, so offsets count 0, 1, 2... per partition, time
seeks and ``MINID`` retention stay native, and one id says both.

Settling is fenced: :data:`ACK`, :data:`DELAY` and :data:`REDELIVER` do nothing
unless the member still holds the partition's lease (its value is the token the
member wrote when it took the lease), so a member that lost a partition cannot
ack what another member now owns.
"""

from __future__ import annotations

__all__ = [
    "ACK",
    "DELAY",
    "DROP_LEASE",
    "PUBLISH",
    "REDELIVER",
    "RELEASE",
    "RENEW_LEASE",
    "SWEEP",
]

#: KEYS: stream. ARGV: maxlen (0: none), min age ms (0: none), then per message
#: its field count and fields. Returns the offset of the first entry written.
PUBLISH = """
local key = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ms, seq = now, -1
if redis.call('EXISTS', key) == 1 then
  local info = redis.call('XINFO', 'STREAM', key)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' and info[i + 1] ~= '0-0' then
      local last = info[i + 1]
      local dash = string.find(last, '-', 1, true)
      local last_ms = tonumber(string.sub(last, 1, dash - 1))
      seq = tonumber(string.sub(last, dash + 1))
      if last_ms > ms then ms = last_ms end
    end
  end
end
local trim = {}
if tonumber(ARGV[1]) > 0 then
  trim = {'MAXLEN', '~', ARGV[1]}
elseif tonumber(ARGV[2]) > 0 then
  trim = {'MINID', '~', string.format('%d', now - tonumber(ARGV[2]))}
end
local first = seq + 1
local i = 3
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  seq = seq + 1
  local args = {'XADD', key}
  for _, v in ipairs(trim) do args[#args + 1] = v end
  args[#args + 1] = string.format('%d-%d', ms, seq)
  for j = i + 1, i + n do args[#args + 1] = ARGV[j] end
  redis.call(unpack(args))
  i = i + n + 1
end
return first
"""

#: KEYS: lease, stream, dues. ARGV: token, group, ids... Returns -1 if fenced.
ACK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local ids = {}
for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
redis.call('HDEL', KEYS[3], unpack(ids))
return redis.call('XACK', KEYS[2], ARGV[2], unpack(ids))
"""

#: KEYS: lease, dues. ARGV: token, id, "<due ms>:<key>". Remembers a retry's time,
#: so that a member taking the partition over waits for it too.
DELAY = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
return redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
"""

#: KEYS: lease, stream, dues. ARGV: token, group, consumer, ids... Claims each id for
#: the consumer (counting a delivery) and returns {id, fields, deliveries, due or
#: false} for each still stored; false if fenced.
REDELIVER = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
local out = {}
for i = 4, #ARGV do
  local claimed = redis.call('XCLAIM', KEYS[2], ARGV[2], ARGV[3], 0, ARGV[i])
  local entry = claimed[1]
  if entry then
    local pending = redis.call('XPENDING', KEYS[2], ARGV[2], ARGV[i], ARGV[i], 1)
    local due = redis.call('HGET', KEYS[3], ARGV[i])
    out[#out + 1] = {entry[1], entry[2], pending[1][4], due}
  else
    redis.call('HDEL', KEYS[3], ARGV[i])
  end
end
return out
"""

#: KEYS: lease, stream. ARGV: token, group, consumer, id, deliveries. Sets the entry's
#: delivery counter back (``RETRYCOUNT``), so that its next claim repeats the attempt.
RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
redis.call('XCLAIM', KEYS[2], ARGV[2], ARGV[3], 0, ARGV[4], 'RETRYCOUNT', ARGV[5], 'JUSTID')
return 1
"""

#: KEYS: stream. ARGV: group, consumer, min idle ms. Claims (without counting a
#: delivery) every entry pending in the group idle that long; returns their ids.
SWEEP = """
local out = {}
local cursor = '0-0'
repeat
  local reply = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], cursor,
    'COUNT', 1000, 'JUSTID')
  cursor = reply[1]
  for _, id in ipairs(reply[2]) do out[#out + 1] = id end
until cursor == '0-0'
return out
"""

#: KEYS: lease. ARGV: token, ttl ms. 1 if still held (and extended).
RENEW_LEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""

#: KEYS: lease. ARGV: token. Deletes the lease if this member still holds it.
DROP_LEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""
