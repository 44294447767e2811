-- Remove a cron entry. Runs it already created stay, with their results and logs.
--
-- KEYS[1]  task_set:scheduled
-- KEYS[2]  wasmq:cron:paused
-- KEYS[3]  wasmq:cron:last_run
-- KEYS[4]  task_metadata:<entry id>
-- ARGV[1]  entry id
--
-- Returns -1 (no such task), -2 (not a cron entry), 1 (removed).

if redis.call('TYPE', KEYS[4]).ok ~= 'hash' then
  redis.call('SREM', KEYS[2], ARGV[1])
  return -1
end
if redis.call('HGET', KEYS[4], 'task_kind') ~= '2' then
  return -2
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[4])
return 1
