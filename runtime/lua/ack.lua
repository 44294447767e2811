-- Acknowledge a batch of tasks of one queue that ran to the end.
--
-- KEYS[1] lease zset         task_set:timeout
-- KEYS[2] processing list    task_queue[:<queue>]:processing
-- KEYS[3] finished list      task_queue[:<queue>]:finished
-- KEYS[4] pending list       task_queue[:<queue>]:pending
-- KEYS[5] scheduled zset     task_set:scheduled
-- KEYS[6] completions zset   wasmq:completions:<queue>
-- ARGV[1] now ms
-- ARGV[2] now as RFC3339 (updated_at)
-- ARGV[3] result retention ms
-- ARGV[4] finished list cap
-- ARGV[5] number of tasks, then per task 8 + nchunks values:
--         id, result, duration_ms, log_bytes, log_dropped, log_file, started_ms, nchunks,
--         chunk 1 .. chunk nchunks
-- Per-task keys derived here: task_metadata:<id>, task_result:<id>, task_logs:<id>,
-- channel task_done:<id>.
--
-- Each task leaves processing and the lease set; its result and logs are stored with
-- the retention time, its hash gets the outcome and timings and stage completed and
-- then expires with the result; finished is trimmed to its cap. A task cancelled while
-- it ran keeps stage cancelled and its result is discarded; a task that already ended
-- (a late duplicate) is left alone. A task whose lease had expired and was put back
-- to pending is taken out of pending again: its result is as good as any.
-- Returns one status per task: completed, cancelled, duplicate or missing.

local now = tonumber(ARGV[1])
local ttl = ARGV[3]
local n = tonumber(ARGV[5])
local out = {}
local i = 6
local completed = 0
for _ = 1, n do
  local id, result = ARGV[i], ARGV[i + 1]
  local nchunks = tonumber(ARGV[i + 7])
  local key = 'task_metadata:' .. id
  redis.call('LREM', KEYS[2], -1, id)
  redis.call('ZREM', KEYS[1], id)
  local stage = false
  if redis.call('TYPE', key)['ok'] == 'hash' then
    stage = redis.call('HGET', key, 'task_stage')
  end
  if not stage then
    out[#out + 1] = 'missing'
  elseif stage == 'cancelled' then
    redis.call('PEXPIRE', key, ttl)
    out[#out + 1] = 'cancelled'
  elseif stage == 'completed' or stage == 'failed' then
    out[#out + 1] = 'duplicate'
  else
    if stage == 'pending' then
      redis.call('LREM', KEYS[4], 0, id)
    elseif stage ~= 'in_progress' then
      redis.call('ZREM', KEYS[5], id)
    end
    redis.call('HSET', key, 'task_stage', 'completed', 'updated_at', ARGV[2],
      'finished_ms', ARGV[1], 'started_ms', ARGV[i + 6], 'duration_ms', ARGV[i + 2],
      'log_bytes', ARGV[i + 3], 'log_dropped', ARGV[i + 4])
    if ARGV[i + 5] ~= '' then
      redis.call('HSET', key, 'log_file', ARGV[i + 5])
    end
    redis.call('HDEL', key, 'error', 'error_kind', 'retryable')
    redis.call('SET', 'task_result:' .. id, result, 'PX', ttl)
    local logs = 'task_logs:' .. id
    redis.call('DEL', logs)
    if nchunks > 0 then
      for c = i + 8, i + 7 + nchunks do
        redis.call('RPUSH', logs, ARGV[c])
      end
      redis.call('PEXPIRE', logs, ttl)
    end
    redis.call('PEXPIRE', key, ttl)
    redis.call('LPUSH', KEYS[3], id)
    redis.call('ZADD', KEYS[6], now, id)
    redis.call('PUBLISH', 'task_done:' .. id, 'completed')
    completed = completed + 1
    out[#out + 1] = 'completed'
  end
  i = i + 8 + nchunks
end
if completed > 0 then
  local cap = tonumber(ARGV[4])
  if cap > 0 then
    redis.call('LTRIM', KEYS[3], 0, cap - 1)
  else
    redis.call('DEL', KEYS[3])
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now - 120000)
end
return out
