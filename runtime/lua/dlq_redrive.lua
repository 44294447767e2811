-- Move dead-lettered tasks back to pending, as fresh tasks (attempts 0).
--
-- KEYS[1] dead-letter list   task_queue[:<queue>]:dlq
-- KEYS[2] pending list       task_queue[:<queue>]:pending
-- ARGV[1] now as RFC3339 (updated_at)
-- ARGV[2] ready channel      wasmq:ready:<queue>
-- ARGV[3] queue name
-- ARGV[4..] ids to redrive; none means every id in the list
-- Per-task keys derived here: task_metadata:<id>.
--
-- The last error stays on the task until it runs again. Returns the ids redriven.

local ids = {}
if #ARGV < 4 then
  ids = redis.call('LRANGE', KEYS[1], 0, -1)
else
  for i = 4, #ARGV do ids[#ids + 1] = ARGV[i] end
end
local out = {}
for i = #ids, 1, -1 do
  local id = ids[i]
  if redis.call('LREM', KEYS[1], 0, id) > 0 then
    local key = 'task_metadata:' .. id
    if redis.call('TYPE', key)['ok'] == 'hash' then
      redis.call('HSET', key, 'task_stage', 'pending', 'attempts', '0', 'updated_at', ARGV[1])
      redis.call('HDEL', key, 'finished_ms', 'worker')
      redis.call('PERSIST', key)
      redis.call('LPUSH', KEYS[2], id)
      out[#out + 1] = id
    end
  end
end
if #out > 0 then
  redis.call('PUBLISH', ARGV[2], ARGV[3])
end
return out
