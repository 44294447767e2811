-- Resume a paused cron entry at its next tick and wake sleeping schedulers.
--
-- KEYS[1]  task_set:scheduled (scored in Unix seconds)
-- KEYS[2]  wasmq:cron:paused
-- KEYS[3]  task_metadata:<entry id>
-- KEYS[4]  wasmq:scheduler:wake
-- ARGV[1]  entry id
-- ARGV[2]  next due time (ms)
-- ARGV[3]  next due time, RFC3339
-- ARGV[4]  now, RFC3339
--
-- Returns -1 (no such task), -2 (not a cron entry), 0 (not paused), 1 (resumed).

if redis.call('TYPE', KEYS[3]).ok ~= 'hash' then
  return -1
end
if redis.call('HGET', KEYS[3], 'task_kind') ~= '2' then
  return -2
end
if stage_at(KEYS[3]) ~= 'paused' then
  redis.call('SREM', KEYS[2], ARGV[1])
  return 0
end
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[1], ms_to_score(ARGV[2]), ARGV[1])
set_stage(KEYS[3], 'scheduled', 'paused', '0', 'next_run_at', ARGV[3],
  'updated_at', ARGV[4], 'error', '')
redis.call('LPUSH', KEYS[4], '1')
redis.call('LTRIM', KEYS[4], 0, 9)
return 1
