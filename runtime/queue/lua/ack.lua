-- Acknowledge a batch of tasks of one queue that ran to the end.
--
-- KEYS[1] lease zset         task_set:timeout (scored in Unix seconds)
-- KEYS[2] processing list    task_queue[:<queue>]:processing
-- KEYS[3] finished list      task_queue[:<queue>]:finished
-- KEYS[4] pending list       task_queue[:<queue>]:pending (and its other priority levels)
-- KEYS[5] scheduled zset     task_set:scheduled
-- KEYS[6] throughput hash    wasmq:throughput:<queue>   (Unix second -> completions)
-- ARGV[1] now ms
-- ARGV[2] now as RFC3339 (updated_at)
-- ARGV[3] finished list cap (ids kept in the list)
-- ARGV[4] completed record cap: beyond it the oldest completed records are deleted
--         (0 = none; they expire with their retention)
-- ARGV[5] number of tasks, then per task 9 (+1 with flag "r", +2 with flag "g") +
--         nchunks values:
--         id, retention ms, duration_ms, log_bytes, log_dropped, log_file, started_ms,
--         flags, nchunks, [result,] [progress value, progress message,]
--         chunk 1 .. chunk nchunks
--         flags: "r" the result follows (a small one), "g" the handler's last progress
--         follows, "k" keep the payload, "p" the payload is stored apart, "e" the record
--         holds an earlier attempt's error (and maybe its progress), "l" it may hold
--         earlier logs, "x" the run was stopped by a cancel: its error message follows
--         (after the result's place, before the progress)
-- Per-task keys derived here: task_metadata:<id>, task_result:<id>, task_logs:<id>,
-- task_payload:<id>, channel task_done:<id>.
--
-- A large result is not an argument: the caller SETs task_result:<id> (with the
-- retention) in the same MULTI, before this script, so its bytes never pass through
-- Lua; a result that must not stand (cancelled, missing or failed task) is deleted here.
-- Each task leaves processing and the lease set; its logs are stored with the
-- retention, its hash gets the outcome and timings and stage completed, drops its
-- payload unless asked to keep it, and then expires with the result (not in compat
-- mode: the reference keeps its records, and so do the payloads kept then). A task cancelled
-- while it ran keeps stage cancelled and loses its result, but keeps its logs and
-- timings (and, when the cancel stopped it, the reason); a task that already ended (a late duplicate) is
-- left alone. A task whose lease had expired and was put back to pending is taken out
-- of pending again: its result is as good as any.
-- Returns one status per task: completed, cancelled, duplicate or missing.

local now = tonumber(ARGV[1])
local n = tonumber(ARGV[5])
local out = {}
local done = {}
local leased = {}
local i = 6
for _ = 1, n do
  local id, ttl, flags = ARGV[i], ARGV[i + 1], ARGV[i + 7]
  local nchunks = tonumber(ARGV[i + 8])
  local result, chunks = false, i + 9
  if string.find(flags, 'r', 1, true) then
    result = ARGV[i + 9]
    chunks = i + 10
  end
  local stopped = false
  if string.find(flags, 'x', 1, true) then
    stopped = chunks
    chunks = chunks + 1
  end
  local progress = false
  if string.find(flags, 'g', 1, true) then
    progress = chunks
    chunks = chunks + 2
  end
  local key = TASK_PREFIX .. id
  leased[#leased + 1] = id
  redis.call('LREM', KEYS[2], -1, id)
  limit_release(id)
  local stage = stage_at(key)
  if not stage then
    redis.call('DEL', RESULT_PREFIX .. id)
    out[#out + 1] = 'missing'
  elseif stage == 'cancelled' then
    keep_cancelled_run(key, id, i, stopped, progress, chunks, nchunks)
    out[#out + 1] = 'cancelled'
  elseif stage == 'completed' or stage == 'failed' then
    if stage == 'failed' then redis.call('DEL', RESULT_PREFIX .. id) end
    out[#out + 1] = 'duplicate'
  else
    if stage == 'pending' then
      remove_pending_at(KEYS[4], id)
    elseif stage ~= 'in_progress' then
      redis.call('ZREM', KEYS[5], id)
    end
    if ARGV[i + 3] == '0' and ARGV[i + 4] == '0' and ARGV[i + 5] == '' then
      redis.call('HSET', key, 'task_stage', 'completed', 'updated_at', ARGV[2],
        'finished_ms', ARGV[1], 'started_ms', ARGV[i + 6], 'duration_ms', ARGV[i + 2])
    else
      redis.call('HSET', key, 'task_stage', 'completed', 'updated_at', ARGV[2],
        'finished_ms', ARGV[1], 'started_ms', ARGV[i + 6], 'duration_ms', ARGV[i + 2],
        'log_bytes', ARGV[i + 3], 'log_dropped', ARGV[i + 4], 'log_file', ARGV[i + 5])
    end
    if progress then
      redis.call('HSET', key, 'progress', ARGV[progress], 'progress_message',
        ARGV[progress + 1], 'progress_ms', ARGV[1])
    end
    if string.find(flags, 'e', 1, true) then
      redis.call('HDEL', key, 'error', 'error_kind', 'retryable')
      if not progress then
        redis.call('HDEL', key, 'progress', 'progress_message', 'progress_ms')
      end
    end
    local apart = string.find(flags, 'p', 1, true)
    if string.find(flags, 'k', 1, true) then
      if apart and not COMPAT then redis.call('PEXPIRE', PAYLOAD_PREFIX .. id, ttl) end
    else
      redis.call('HDEL', key, 'payload', 'payload_ref')
      if apart then redis.call('DEL', PAYLOAD_PREFIX .. id) end
    end
    local logs = LOGS_PREFIX .. id
    if string.find(flags, 'l', 1, true) then
      redis.call('DEL', logs)
    end
    if nchunks > 0 then
      redis.call('RPUSH', logs, unpack(ARGV, chunks, chunks + nchunks - 1))
      redis.call('PEXPIRE', logs, ttl)
    end
    if not COMPAT then redis.call('PEXPIRE', key, ttl) end
    if result then redis.call('SET', RESULT_PREFIX .. id, result, 'PX', ttl) end
    flow_completed(id, key, ttl, now, ARGV[2])
    redis.call('PUBLISH', DONE_CHANNEL_PREFIX .. id, 'completed')
    done[#done + 1] = id
    out[#out + 1] = 'completed'
  end
  i = chunks + nchunks
end
redis.call('ZREM', KEYS[1], unpack(leased))
if #done > 0 then
  redis.call('LPUSH', KEYS[3], unpack(done))
  local keep = tonumber(ARGV[3])
  local records = tonumber(ARGV[4])
  if records > 0 then
    local over = redis.call('LLEN', KEYS[3]) - records
    if over > 0 then
      for _, old in ipairs(redis.call('RPOP', KEYS[3], over)) do
        local okey = TASK_PREFIX .. old
        if redis.pcall('HGET', okey, 'task_stage') == 'completed' then
          redis.call('DEL', okey, RESULT_PREFIX .. old, LOGS_PREFIX .. old,
            PAYLOAD_PREFIX .. old)
        end
      end
    end
    keep = records
  end
  if keep > 0 then
    redis.call('LTRIM', KEYS[3], 0, keep - 1)
  else
    redis.call('DEL', KEYS[3])
  end
  local second = math.floor(now / 1000)
  redis.call('HINCRBY', KEYS[6], second, #done)
  -- A quiet queue's counts disappear on their own, and a busy one's (over 180 fields)
  -- are pruned here every minute or so, whether or not `stats` reads them.
  redis.call('EXPIRE', KEYS[6], THROUGHPUT_WINDOW)
  if redis.call('HLEN', KEYS[6]) > 180 then
    for _, field in ipairs(redis.call('HKEYS', KEYS[6])) do
      local t = tonumber(field)
      if not t or t < second - THROUGHPUT_WINDOW then redis.call('HDEL', KEYS[6], field) end
    end
  end
end
return out
