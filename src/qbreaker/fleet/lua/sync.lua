-- sync: one host's deltas, idempotent by (host, seq). ARGV[4]: JSON
-- {"h": host, "q": "seq", "d": [[name, "digest|policy", calls, failures,
-- slow, successes, tripped 0/1, verdict generation or -1, verdict ok 0/1,
-- reseed ms or -1, lease generation or -1, lease take 1 / release 0], ...]}. Reply: {epoch, version, duplicate 0/1, JSON of
-- [state, ...], the host's last applied seq}.
local now = clock()
if now == nil then
  return redis.error_reply(TEST_CLOCK_ERROR)
end
local current_epoch = epoch()
local request = cjson.decode(ARGV[4])
local host = request.h

-- Add a delta to the ring's current bucket (the newest of now's and the
-- newest stored, so time going backwards adds to the newest), dropping the
-- buckets that fell out. Entries {bucket, calls, failures, slow, successes},
-- oldest first. Returns the ring.
local function count(name, pol, d)
  local ring = unpacked(K_RING, name)
  local current = math.floor(now / math.floor(pol.window / BUCKETS))
  if #ring > 0 and ring[#ring][1] > current then
    current = ring[#ring][1]
  end
  local kept = {}
  for _, e in ipairs(ring) do
    if e[1] > current - BUCKETS then
      kept[#kept + 1] = e
    end
  end
  local changed = #kept ~= #ring
  if d[3] + d[4] + d[5] + d[6] > 0 then
    local last = kept[#kept]
    if last == nil or last[1] ~= current then
      last = {current, 0, 0, 0, 0}
      kept[#kept + 1] = last
    end
    for i = 2, 5 do
      last[i] = last[i] + d[i + 1]
    end
    changed = true
  end
  if changed then
    if #kept == 0 then
      redis.call('HDEL', K_RING, name)
    else
      redis.call('HSET', K_RING, name, cmsgpack.pack(kept))
    end
  end
  return kept
end

-- A host's local trip: its older report goes, reports out of reset_timeout
-- go, and it is appended (oldest first). Returns the reports.
local function record_trip(name, pol)
  local kept = {}
  for _, e in ipairs(unpacked(K_TRIP, name)) do
    if e[1] ~= host and now - e[2] < pol.reset then
      kept[#kept + 1] = e
    end
  end
  kept[#kept + 1] = {host, now}
  redis.call('HSET', K_TRIP, name, cmsgpack.pack(kept))
  return kept
end

-- The first rule that trips a closed breaker: reason and who, or nil.
local function trip_rule(pol, sums, trips)
  local quorum = {}
  for _, e in ipairs(trips) do
    if now - e[2] < pol.reset then
      quorum[#quorum + 1] = e[1]
    end
  end
  if #quorum >= pol.quorum then
    return 'quorum', quorum
  end
  local calls, failures, slow, successes = sums[1], sums[2], sums[3], sums[4]
  if pol.max_failures and failures >= pol.max_failures and successes == 0 then
    return 'burst', {host}
  end
  if calls > 0 and calls >= pol.minimum then
    if pol.failure_rate and failures >= pol.failure_rate * calls then
      return 'failure_rate', {host}
    end
    if pol.slow_rate and slow >= pol.slow_rate * calls then
      return 'slow_rate', {host}
    end
  end
  return nil
end

-- The probe lease: an expired one re-opens the fleet from its expiry (its
-- holder died or was cut off); a request for the current generation of an
-- expired open takes, renews or releases it.
local function lease(name, st, pol, d)
  if st.s == 'open' and (st.l or '') ~= '' and st.lu - now <= 0 then
    transition(name, st, 'open', st.lu + pol.reset, 'lease_expired', {st.l}, now)
  end
  if d[11] < 0 or st.s ~= 'open' or d[11] ~= st.g or st.u - now > 0 then
    return
  end
  local holder = st.l or ''
  if d[12] == 1 and (holder == '' or holder == host) then
    st.l, st.lu = host, now + LEASE_MS
    redis.call('HSET', K_ST, name, cmsgpack.pack(st))
  elseif d[12] == 0 and holder == host then
    st.l, st.lu = '', 0
    redis.call('HSET', K_ST, name, cmsgpack.pack(st))
  end
end

-- Each breaker's state and window once applied: the reply reads them.
local applied = {}

local function apply(d)
  local name = d[1]
  -- The first policy stored wins; another one is recorded, nothing more.
  local stored = redis.call('HGET', K_POL, name)
  if not stored then
    stored = d[2]
    redis.call('HSET', K_POL, name, stored)
  else
    local digest = string.match(d[2], '^[^|]*')
    if digest ~= string.match(stored, '^[^|]*') then
      redis.call('HSET', K_CONF, name .. '\n' .. host, digest)
    end
  end
  local pol = parsed(stored)
  local sums = window_sums(count(name, pol, d), pol, now)
  local st = load_state(name)
  local generation = st.g
  local trips = nil
  if d[7] == 1 and st.s == 'closed' then
    trips = record_trip(name, pol)
  end
  lease(name, st, pol, d)
  -- While a host holds the lease, only its probes count.
  local holder = st.l or ''
  if d[8] >= 0 and st.s == 'open' and d[8] == st.g and st.u - now <= 0
      and (holder == '' or holder == host) then
    if d[9] == 1 then
      transition(name, st, 'closed', 0, 'probe', {host}, now)
    else
      transition(name, st, 'open', now + pol.reset, 'probe', {host}, now)
    end
  end
  if d[10] > 0 then
    local until_ms = now + d[10]
    if st.s == 'closed' then
      transition(name, st, 'open', until_ms, 'reseed', {host}, now)
    elseif st.s == 'open' and until_ms > st.u then
      -- Open again for a while: no probing, so no lease.
      st.u, st.l, st.lu = until_ms, '', 0
      redis.call('HSET', K_ST, name, cmsgpack.pack(st))
    end
  end
  if st.s == 'closed' then
    -- A transition above emptied the window and the reports.
    if st.g ~= generation then
      sums, trips = {0, 0, 0, 0}, {}
    end
    local reason, by = trip_rule(pol, sums, trips or unpacked(K_TRIP, name))
    if reason then
      transition(name, st, 'open', now + pol.reset, reason, by, now)
    end
  end
  if st.g ~= generation then
    sums = {0, 0, 0, 0}
  end
  applied[name] = {st, sums}
end

-- The host's last sync (any, a duplicate too: the host is alive), for the
-- view's active hosts; hosts silent for HOSTS_KEPT_MS are trimmed.
redis.call('ZADD', K_HOSTS, int(now), host)
redis.call('ZREMRANGEBYSCORE', K_HOSTS, '-inf', '(' .. int(now - HOSTS_KEPT_MS))

local last = tonumber(redis.call('HGET', K_SEQ, host) or '-1')
local duplicate = tonumber(request.q) <= last
if not duplicate then
  redis.call('HSET', K_SEQ, host, request.q)
  for _, d in ipairs(request.d) do
    apply(d)
  end
end
local states = {}
for _, d in ipairs(request.d) do
  local done = applied[d[1]]
  if done then
    states[#states + 1] = reply_state(d[1], done[1], now, done[2])
  else
    states[#states + 1] = reply_state(d[1], load_state(d[1]), now, load_sums(d[1], now))
  end
end
-- The states as one JSON text: a client parses it much faster than nested
-- arrays of bulk strings.
return {
  current_epoch, version(), duplicate and 1 or 0, cjson.encode(states),
  redis.call('HGET', K_SEQ, host) or '-1',
}
