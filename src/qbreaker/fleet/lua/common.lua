-- qbreaker fleet: helpers every script starts with (the Python side prepends
-- this file to sync.lua, force.lua and view.lua). The rules are those of
-- qbreaker/fleet/spec.py, the executable specification; docs/fleet.md states them.
--
-- KEYS (one hash tag, one slot): meta, pol, st, ring, trip, seq, conf, hosts, ev.
-- ARGV[1] an epoch to create if none exists, ARGV[2] an injected time in ms
-- ("" = Redis TIME; only where meta.test_clock is "1"), ARGV[3] the stream's
-- MAXLEN (approximate), ARGV[4..] the script's own.
local K_META, K_POL, K_ST, K_RING = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local K_TRIP, K_SEQ, K_CONF = KEYS[5], KEYS[6], KEYS[7]
local K_HOSTS, K_EV = KEYS[8], KEYS[9]
local BUCKETS = 10
-- ACTIVE_HOSTS_KEPT_MS of qbreaker/fleet/_protocol.py.
local HOSTS_KEPT_MS = 300000
-- PROBE_LEASE_MS of qbreaker/fleet/_protocol.py.
local LEASE_MS = 2000

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

-- A stored policy: "digest|quorum|max_failures|window|reset|failure_rate|slow_rate|minimum"
-- and, last, the hosts' own max_failures: in the digest only, no rule reads it.
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
  return {s = 'closed', g = 0, u = 0, w = '', b = {}, l = '', lu = 0}
end

-- Calls, failures, slow calls and successes of a ring's buckets in the
-- window at now. The current bucket is the newest of now's and the newest
-- stored (time that went backwards counts with the newest bucket).
local function window_sums(ring, pol, now)
  local sums = {0, 0, 0, 0}
  if #ring == 0 then
    return sums
  end
  local current = math.floor(now / math.floor(pol.window / BUCKETS))
  if ring[#ring][1] > current then
    current = ring[#ring][1]
  end
  for _, e in ipairs(ring) do
    if e[1] > current - BUCKETS then
      for i = 1, 4 do
        sums[i] = sums[i] + e[i + 1]
      end
    end
  end
  return sums
end

-- Policies parsed, by their stored text: breakers share a few policies.
local parsed_policies = {}

local function parsed(stored)
  local pol = parsed_policies[stored]
  if pol == nil then
    pol = parse_policy(stored)
    parsed_policies[stored] = pol
  end
  return pol
end

-- A breaker's stored policy, parsed, or nil.
local function load_policy(name)
  local stored = redis.call('HGET', K_POL, name)
  if not stored then
    return nil
  end
  return parsed(stored)
end

local function load_sums(name, now)
  local pol = load_policy(name)
  if pol == nil then
    return {0, 0, 0, 0}
  end
  return window_sums(unpacked(K_RING, name), pol, now)
end

-- A breaker's state as replies carry it: name, state, generation, remaining
-- ms (open only), reason, tripped-by host ids joined by newlines, and the
-- window's calls, failures, slow calls and successes (events leave them out:
-- a transition empties the window), the probe lease's holder ('' = none) and
-- its remaining ms (0 without a holder). A state stored before the lease
-- existed has no l/lu: no holder.
local function reply_state(name, st, now, sums)
  local remaining = 0
  if st.s == 'open' then
    remaining = st.u - now
  end
  local holder, lease_left = st.l or '', 0
  if holder ~= '' then
    lease_left = st.lu - now
  end
  return {
    name, st.s, st.g, remaining, st.w, table.concat(st.b, '\n'),
    sums[1], sums[2], sums[3], sums[4], holder, lease_left,
  }
end

-- A fleet transition: new generation, the window and the trip reports
-- emptied, the namespace version + 1, one event on the stream.
local function transition(name, st, state, until_ms, reason, by, now)
  st.s, st.u, st.g, st.w, st.b = state, until_ms, st.g + 1, reason, by
  st.l, st.lu = '', 0
  redis.call('HSET', K_ST, name, cmsgpack.pack(st))
  redis.call('HDEL', K_RING, name)
  redis.call('HDEL', K_TRIP, name)
  redis.call('HINCRBY', K_META, 'version', 1)
  local r = reply_state(name, st, now, {0, 0, 0, 0})
  redis.call('XADD', K_EV, 'MAXLEN', '~', ARGV[3], '*',
    'n', name, 's', r[2], 'g', int(r[3]), 'r', int(r[4]), 'w', r[5], 'b', r[6])
end
