-- Unregister a task: drop its record and its version history, nothing else.
--
-- KEYS[1] registry hash        wasmq:registry
-- KEYS[2] versions hash        wasmq:versions:<name>
-- ARGV[1] task name
--
-- The cost is the task's own history, whatever else is registered: module bytes stay
-- (content-addressed, maybe shared; prune_modules.lua deletes those no task uses), and
-- queued tasks or cron runs of the name are left for workers, which fail a task whose
-- name is no longer registered. Returns 1 when the task was registered, 0 otherwise.

if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('DEL', KEYS[2])
return 1
