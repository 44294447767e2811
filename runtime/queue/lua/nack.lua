-- A task's attempt failed: schedule a retry or dead-letter it, in one step.
--
-- KEYS[1] task hash          task_metadata:<id>
-- KEYS[2] processing list    task_queue[:<queue>]:processing
-- KEYS[3] lease zset         task_set:timeout
-- KEYS[4] scheduled zset     task_set:scheduled (scored in Unix seconds)
-- KEYS[5] dead-letter list   task_queue[:<queue>]:dlq
-- KEYS[6] logs list          task_logs:<id>
-- KEYS[7] pending list       task_queue[:<queue>]:pending (and its other priority levels)
-- KEYS[8] scheduler wake     wasmq:scheduler:wake
-- ARGV[1] id
-- ARGV[2] now ms
-- ARGV[3] now as RFC3339 (updated_at)
-- ARGV[4] error message
-- ARGV[5] error kind (the outcome's kind: trap, timeout, exit, invalid, ...)
-- ARGV[6] "1" when a retry could help
-- ARGV[7] retry delay ms (backoff with jitter, chosen by the caller)
-- ARGV[8] result retention ms (for the logs)
-- ARGV[9] duration_ms, ARGV[10] log_bytes, ARGV[11] log_dropped, ARGV[12] log_file,
-- ARGV[13] started_ms
-- ARGV[14] the handler's last progress value ("" when it reported none), ARGV[15] its
--          message
-- ARGV[16..] log chunks
-- Channel published: task_done:<id> (when the task fails for good).
--
-- Retry when the outcome is retryable and attempts <= max_retries (max_retries counts
-- retries after the first attempt; in compat mode attempts counts failed attempts and
-- is incremented here, as the reference's Nack does, so a task gets as many runs in
-- either mode): stage retrying, due in task_set:scheduled at now + delay, and no
-- worker holds it (the reaper tells a wasmq claim by that field). Otherwise stage failed and the id goes to the dead-letter list. Either way the
-- error, and the attempt's last progress, stay on the task. Returns retrying, failed, cancelled, duplicate or missing.

local id = ARGV[1]
redis.call('LREM', KEYS[2], -1, id)
redis.call('ZREM', KEYS[3], id)
limit_release(id)
if redis.call('TYPE', KEYS[1])['ok'] ~= 'hash' then
  return 'missing'
end
local stage = stage_at(KEYS[1])
if stage == 'cancelled' then
  return 'cancelled'
elseif stage == 'completed' or stage == 'failed' then
  return 'duplicate'
elseif stage == 'pending' then
  remove_pending_at(KEYS[7], id)
elseif stage == 'retrying' or stage == 'scheduled' then
  redis.call('ZREM', KEYS[4], id)
end

redis.call('HSET', KEYS[1], 'updated_at', ARGV[3], 'error', ARGV[4], 'error_kind', ARGV[5],
  'retryable', ARGV[6], 'duration_ms', ARGV[9], 'log_bytes', ARGV[10],
  'log_dropped', ARGV[11], 'started_ms', ARGV[13])
if ARGV[12] ~= '' then
  redis.call('HSET', KEYS[1], 'log_file', ARGV[12])
end
if ARGV[14] ~= '' then
  redis.call('HSET', KEYS[1], 'progress', ARGV[14], 'progress_message', ARGV[15],
    'progress_ms', ARGV[2])
else
  redis.call('HDEL', KEYS[1], 'progress', 'progress_message', 'progress_ms')
end
redis.call('DEL', KEYS[6])
if #ARGV >= 16 then
  for c = 16, #ARGV do
    redis.call('RPUSH', KEYS[6], ARGV[c])
  end
  redis.call('PEXPIRE', KEYS[6], ARGV[8])
end

local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') or 0
if COMPAT then
  attempts = math.floor(attempts) + 1
  redis.call('HSET', KEYS[1], 'attempts', tostring(attempts))
end
local max_retries = tonumber(redis.call('HGET', KEYS[1], 'max_retries') or '3') or 0
if ARGV[6] == '1' and attempts <= max_retries then
  local due = tonumber(ARGV[2]) + tonumber(ARGV[7])
  local first = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
  set_stage(KEYS[1], 'retrying')
  redis.call('HDEL', KEYS[1], 'worker')
  redis.call('ZADD', KEYS[4], ms_to_score(due), id)
  if #first == 0 or due < score_to_ms(first[2]) then
    redis.call('LPUSH', KEYS[8], '1')
    redis.call('LTRIM', KEYS[8], 0, 15)
  end
  return 'retrying'
end
redis.call('HSET', KEYS[1], 'task_stage', 'failed', 'finished_ms', ARGV[2])
redis.call('LPUSH', KEYS[5], id)
flow_failed(KEYS[1], ARGV[2])
redis.call('PUBLISH', DONE_CHANNEL_PREFIX .. id, 'failed')
return 'failed'
