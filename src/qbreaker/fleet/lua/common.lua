-- qbreaker fleet: helpers every script starts with (the Python side prepends
-- this file to sync.lua, force.lua and view.lua). The rules are those of
-- qbreaker/fleet/spec.py, the executable specification; docs/fleet.md states them.
--
-- KEYS (one hash tag, one slot): meta, pol, st, ring, trip, seq, conf, ev.
-- ARGV[1] an epoch to create if none exists, ARGV[2] an injected time in ms
-- ("" = Redis TIME; only where meta.test_clock is "1"), ARGV[3] the stream's
-- MAXLEN (approximate), ARGV[4..] the script's own.
local K_META, K_POL, K_ST, K_RING = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local K_TRIP, K_SEQ, K_CONF, K_EV = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local BUCKETS = 10

-- Numbers as decimal integers: Lua's tostring keeps 14 digits only.
local function int(n)
  return string.format('%d', n)
end

-- Redis TIME in ms, or the injected time of a namespace in test mode; nil
-- when a time is injected outside test mode.
local function clock()
  if ARGV[2] ~= '' then
    if redis.call('HGET', K_META, 'test_clock') ~= '1' then
      return nil
    end
    return tonumber(ARGV[2])
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local TEST_CLOCK_ERROR = 'qbreaker: an injected time needs the namespace in test mode'

local function epoch()
  redis.call('HSETNX', K_META, 'epoch', ARGV[1])
  return redis.call('HGET', K_META, 'epoch')
end

local function version()
  return tonumber(redis.call('HGET', K_META, 'version') or '0')
end

local function unpacked(key, name)
  local raw = redis.call('HGET', key, name)
  if raw then
    return cmsgpack.unpack(raw)
  end
  return {}
end

-- A stored policy: "digest|quorum|max_failures|window|reset|failure_rate|slow_rate|minimum".
local function parse_policy(text)
  local f = {}
  for part in string.gmatch(text .. '|', '([^|]*)|') do
    f[#f + 1] = part
  end
  return {
    digest = f[1], quorum = tonumber(f[2]), max_failures = tonumber(f[3]),
    window = tonumber(f[4]), reset = tonumber(f[5]), failure_rate = tonumber(f[6]),
    slow_rate = tonumber(f[7]), minimum = tonumber(f[8]),
  }
end

local function load_state(name)
  local raw = redis.call('HGET', K_ST, name)
  if raw then
    return cmsgpack.unpack(raw)
  end
  return {s = 'closed', g = 0, u = 0, w = '', b = {}}
end

-- A breaker's state as replies carry it: name, state, generation, remaining
-- ms (open only), reason, tripped-by host ids joined by newlines.
local function reply_state(name, st, now)
  local remaining = 0
  if st.s == 'open' then
    remaining = st.u - now
  end
  return {name, st.s, st.g, remaining, st.w, table.concat(st.b, '\n')}
end

-- A fleet transition: new generation, the window and the trip reports
-- emptied, the namespace version + 1, one event on the stream.
local function transition(name, st, state, until_ms, reason, by, now)
  st.s, st.u, st.g, st.w, st.b = state, until_ms, st.g + 1, reason, by
  redis.call('HSET', K_ST, name, cmsgpack.pack(st))
  redis.call('HDEL', K_RING, name)
  redis.call('HDEL', K_TRIP, name)
  redis.call('HINCRBY', K_META, 'version', 1)
  local r = reply_state(name, st, now)
  redis.call('XADD', K_EV, 'MAXLEN', '~', ARGV[3], '*',
    'n', name, 's', r[2], 'g', int(r[3]), 'r', int(r[4]), 'w', r[5], 'b', r[6])
end
