-- Delete dead-lettered tasks (record, result, logs), all or those that failed before a time.
--
-- KEYS[1] dead-letter list   task_queue[:<queue>]:dlq
-- ARGV[1] cutoff ms: delete tasks that failed before it; 0 deletes all
-- Per-task keys derived here: task_metadata:<id>, task_result:<id>, task_logs:<id>,
-- task_payload:<id>.
--
-- Returns the number of ids removed from the list.

local cutoff = tonumber(ARGV[1])
local ids = redis.call('LRANGE', KEYS[1], 0, -1)
local removed = 0
for _, id in ipairs(ids) do
  local key = TASK_PREFIX .. id
  local when = nil
  if redis.call('TYPE', key)['ok'] == 'hash' then
    when = tonumber(redis.call('HGET', key, 'finished_ms') or '')
  end
  if cutoff == 0 or not when or when < cutoff then
    removed = removed + redis.call('LREM', KEYS[1], 0, id)
    redis.call('DEL', key, RESULT_PREFIX .. id, LOGS_PREFIX .. id, PAYLOAD_PREFIX .. id)
  end
end
return removed
