-- force: ARGV[4] name, ARGV[5] "open" | "close" | "reset", ARGV[6] who.
-- Every force is a transition (reason "manual"). Reply: the state.
local now = clock()
if now == nil then
  return redis.error_reply(TEST_CLOCK_ERROR)
end
epoch()
local targets = {open = 'forced_open', close = 'forced_closed', reset = 'closed'}
local target = targets[ARGV[5]]
if target == nil then
  return redis.error_reply('qbreaker: unknown force action ' .. ARGV[5])
end
local st = load_state(ARGV[4])
transition(ARGV[4], st, target, 0, 'manual', {ARGV[6]}, now)
return reply_state(ARGV[4], st, now)
