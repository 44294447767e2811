-- Pause a cron entry: it leaves the scheduled set until resumed.
--
-- KEYS[1]  task_set:scheduled (scored in Unix seconds)
-- KEYS[2]  wasmq:cron:paused (set of paused entry ids)
-- KEYS[3]  task_metadata:<entry id>
-- ARGV[1]  entry id
-- ARGV[2]  now, RFC3339
-- ARGV[3]  reason (written to error; empty when a user paused it)
--
-- Returns -1 (no such task), -2 (not a cron entry), 0 (already paused), 1 (paused).

if redis.call('TYPE', KEYS[3]).ok ~= 'hash' then
  return -1
end
if redis.call('HGET', KEYS[3], 'task_kind') ~= '2' then
  return -2
end
if stage_at(KEYS[3]) == 'paused' then
  redis.call('SADD', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[1])
set_stage(KEYS[3], 'paused', 'paused', '1', 'next_run_at', GO_ZERO_TIME,
  'updated_at', ARGV[2], 'error', ARGV[3])
return 1
