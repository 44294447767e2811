-- Move dead-lettered tasks back to pending, as fresh tasks (attempts 0).
--
-- KEYS[1] dead-letter list   task_queue[:<queue>]:dlq
-- KEYS[2] pending list       task_queue[:<queue>]:pending (each task goes to its priority's)
-- KEYS[3] wake-token list    wasmq:wake:<queue>
-- KEYS[4] registry hash      wasmq:registry
-- ARGV[1] now as RFC3339 (updated_at)
-- ARGV[2] "1": each task runs its task's current registered version (digest and
--         task_version from the registry); "": the version it was enqueued with
-- ARGV[3..] ids to redrive; none means every id in the list
-- Per-task keys derived here: task_metadata:<id>.
--
-- The last error stays on the task until it runs again; one wake token per task
-- redriven. Returns the ids redriven.

local ids = {}
if #ARGV < 3 then
  ids = redis.call('LRANGE', KEYS[1], 0, -1)
else
  for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
end
local out = {}
for i = #ids, 1, -1 do
  local id = ids[i]
  if redis.call('LREM', KEYS[1], 0, id) > 0 then
    local key = TASK_PREFIX .. id
    if redis.call('TYPE', key)['ok'] == 'hash' then
      set_stage(key, 'pending', 'attempts', '0', 'updated_at', ARGV[1])
      redis.call('HDEL', key, 'finished_ms', 'worker')
      redis.call('PERSIST', key)
      redis.call('PERSIST', PAYLOAD_PREFIX .. id)
      flow_redriven(key)
      if ARGV[2] == '1' then redrive_latest(key, KEYS[4]) end
      redis.call('LPUSH', at_level(KEYS[2], priority_of(id)), id)
      out[#out + 1] = id
    end
  end
end
add_wake_tokens(KEYS[3], #out)
return out
