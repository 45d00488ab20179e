"""Every Lua script kaiju runs on Redis, each one atomic on the server.

Plain strings: the Redis backends register them with their client (`register_script`, or
`EVALSHA` with a reload after `NOSCRIPT`). Each says which keys and arguments it takes and
what it returns.
"""

# -- locks (kaiju.locks.redis; the cache's get_or_set fill lock releases with LOCK_RELEASE) --

# KEYS: lock key, fencing counter key; ARGV: lock id, ttl in ms.
# Returns the fencing token (> 0), or minus the holder's remaining ms (<= 0). Running it twice
# with one id (a retry after a lost reply) returns a token instead of waiting for ourselves.
LOCK_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  -- ours already (a retry after a lost reply): the counter now is >= our token and below
  -- the next holder's, so it fences as well as our token would
  return tonumber(redis.call('GET', KEYS[2]))
end
local left = redis.call('PTTL', KEYS[1])
if left < 0 then left = 0 end
return -left
"""

# KEYS: lock key; ARGV: lock id. Returns 1 when deleted, 0 when not ours (compare-and-delete).
LOCK_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: lock key; ARGV: lock id, ttl in ms. Returns 1 when extended, 0 when not ours
# (compare-and-pexpire).
LOCK_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# -- streams (kaiju.streams.redis) -------------------------------------------------

# KEYS: stream; ARGV: maxlen, most entries cut per call. Trims the stream to about maxlen
# entries, but only below the oldest entry any group still needs (its first pending one, else
# the one after its last delivered). Redis >= 6.2 (XTRIM ... LIMIT). Returns the count cut.
STREAM_TRIM = """
local key = KEYS[1]
local maxlen = tonumber(ARGV[1])
local len = redis.call('XLEN', key)
if len <= maxlen then return 0 end
local groups = redis.call('XINFO', 'GROUPS', key)
if #groups == 0 then return 0 end
local function split(id)
  local d = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, d - 1)), tonumber(string.sub(id, d + 1))
end
local fms, fseq = nil, nil
for _, g in ipairs(groups) do
  local name, last
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then last = g[i + 1] end
  end
  local p = redis.call('XPENDING', key, name)
  local ms, seq
  if p[1] > 0 then ms, seq = split(p[2]) else ms, seq = split(last); seq = seq + 1 end
  if fms == nil or ms < fms or (ms == fms and seq < fseq) then fms, fseq = ms, seq end
end
-- whole nodes below the floor only ('~'), and at most the excess (LIMIT): no entry is read
return redis.call('XTRIM', key, 'MINID', '~', string.format('%d-%d', fms, fseq),
                  'LIMIT', math.min(len - maxlen, tonumber(ARGV[2])))
"""

# KEYS: stream; ARGV: group, min idle ms. Deletes the group's consumers with nothing pending
# that have been idle that long; in a script so that no consumer can take a message between
# the check and the delete (which would drop the message from the pending list). Returns the
# count deleted.
STREAM_PRUNE_CONSUMERS = """
local n = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local name, pending, idle
  for i = 1, #c, 2 do
    if c[i] == 'name' then name = c[i + 1] elseif c[i] == 'pending' then pending = c[i + 1]
    elseif c[i] == 'idle' then idle = c[i + 1] end
  end
  if pending == 0 and idle >= tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    n = n + 1
  end
end
return n
"""

# KEYS: stream; ARGV: group, consumer, ids... Resets the idle time of the ids the consumer
# still holds, and only those: in a script, so that an entry claimed by another consumer
# meanwhile is not taken back (XCLAIM alone would steal it). JUSTID leaves the delivery count
# alone. Returns the count touched.
STREAM_TOUCH = """
local n = 0
for i = 3, #ARGV do
  if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2]) > 0 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    n = n + 1
  end
end
return n
"""

# KEYS: stream, its dead-letter stream (one hash tag: kaiju.keys); ARGV: group, id, then the
# dead letter's field and value pairs. Writes the dead letter and acknowledges the message,
# both or neither (a script, not MULTI: Redis Cluster clients run no transactions). Returns
# the dead letter's id.
STREAM_DEAD_LETTER = """
local id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return id
"""

# -- rate limits (kaiju.ratelimit.store) --------------------------------------------

# KEYS: the limiter's key for one subject; ARGV: interval, tolerance (both microseconds).
# One GCRA step on the server's clock (every process agrees on it): returns 0 when the call
# is allowed (the theoretical arrival time moved one interval on, kept until it is past),
# else the microseconds to wait (nothing written). TIME before a write needs effects
# replication: the default from Redis 7, asked for on 6.2.
RATE_TAKE = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - now - tolerance
if wait > 0 then return wait end
tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
return 0
"""

# KEYS: stream; ARGV: group, consumer, idle ms, ids... Sets the idle time of the ids the
# consumer still holds to `idle ms` (no other consumer's entry is taken), so that the next
# claim of any consumer takes them at once: a stopping listener hands back what it holds.
# Returns the count handed back.
STREAM_RELEASE = """
local n = 0
for i = 4, #ARGV do
  if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2]) > 0 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', ARGV[3], 'JUSTID')
    n = n + 1
  end
end
return n
"""

# KEYS: stream, its dead-letter stream (one hash tag); ARGV: count, then ids (none: the
# oldest `count` dead letters). Each dead letter still there is added to the stream again
# (its fields but the record `x`) and deleted from the dead letters in the same step, so
# two replays of one letter put it back once. Returns the new entry ids.
STREAM_REPLAY = """
local ids = {}
if #ARGV > 1 then
  for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  for _, e in ipairs(redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', ARGV[1])) do ids[#ids + 1] = e[1] end
end
local out = {}
for _, id in ipairs(ids) do
  local found = redis.call('XRANGE', KEYS[2], id, id)
  if #found > 0 then
    local f, fields = found[1][2], {}
    for i = 1, #f, 2 do
      if f[i] ~= 'x' then fields[#fields + 1] = f[i]; fields[#fields + 1] = f[i + 1] end
    end
    out[#out + 1] = redis.call('XADD', KEYS[1], '*', unpack(fields))
    redis.call('XDEL', KEYS[2], id)
  end
end
return out
"""

# -- tasks (kaiju.tasks.records) ----------------------------------------------------

# KEYS: the task's latest run, its history; ARGV: mode, the run's fire time, the run (JSON),
# the history's length. "begin" and "finish" write the run as the latest unless a later fire
# is recorded ("finish" also pushes it onto the history); "claim" writes it only when the
# latest fire recorded is earlier (a missed fire caught up by one process only). Returns 1
# when written as the latest, else 0.
TASK_RECORD = """
local old = redis.call('GET', KEYS[1])
local fire = tonumber(ARGV[2])
local latest = true
if old then
  local last = tonumber(cjson.decode(old)['fire'])
  if ARGV[1] == 'claim' then latest = last < fire else latest = last <= fire end
end
if latest then redis.call('SET', KEYS[1], ARGV[3]) end
if ARGV[1] == 'finish' then
  redis.call('LPUSH', KEYS[2], ARGV[3])
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
end
if latest then return 1 end
return 0
"""
