-- view: every breaker the namespace knows (a stored state or policy), in no
-- particular order. Reply: JSON of [state, ...].
local now = clock()
if now == nil then
  return redis.error_reply(TEST_CLOCK_ERROR)
end
local seen, states = {}, {}
for _, key in ipairs({K_ST, K_POL}) do
  for _, name in ipairs(redis.call('HKEYS', key)) do
    if not seen[name] then
      seen[name] = true
      states[#states + 1] = reply_state(name, load_state(name), now)
    end
  end
end
return cjson.encode(states)
