-- view: every breaker the namespace knows (a stored state or policy), in no
-- particular order, and the hosts that synced within ARGV[4] ms ('' or 0:
-- none asked). Reply: {JSON of [state, ...], JSON of [[host, ms ago], ...]}.
local now = clock()
if now == nil then
  return redis.error_reply(TEST_CLOCK_ERROR)
end
local seen, states = {}, {}
for _, key in ipairs({K_ST, K_POL}) do
  for _, name in ipairs(redis.call('HKEYS', key)) do
    if not seen[name] then
      seen[name] = true
      states[#states + 1] = reply_state(name, load_state(name), now, load_sums(name, now))
    end
  end
end
local active = {}
local within = tonumber(ARGV[4] or '') or 0
if within > 0 then
  local found = redis.call('ZRANGEBYSCORE', K_HOSTS, int(now - within), '+inf', 'WITHSCORES')
  for i = 1, #found, 2 do
    -- A clock that went back since (a failover) makes no negative age.
    active[#active + 1] = {found[i], math.max(0, now - tonumber(found[i + 1]))}
  end
end
return {cjson.encode(states), cjson.encode(active)}
