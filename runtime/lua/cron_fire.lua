-- Fire one due cron entry: create its run task, then move the entry to its next time.
--
-- KEYS[1]  task_set:scheduled
-- KEYS[2]  wasmq:cron:last_run (hash entry id -> id of its latest run)
-- KEYS[3]  wasmq:registry (each run uses the module registered when it fires)
-- ARGV[1]  entry id
-- ARGV[2]  the entry's score the caller saw (ms); the firing happens only if it still is
-- ARGV[3]  next due time (ms)
-- ARGV[4]  run id
-- ARGV[5]  now (ms)
-- ARGV[6]  now, RFC3339
-- ARGV[7]  the firing's due time, RFC3339 (the run's scheduled_at)
-- ARGV[8]  next due time, RFC3339 (the entry's next_run_at)
-- ARGV[9]  ticks missed while no scheduler ran (added to missed_runs)
--
-- Also touches: task_metadata:<entry id>, task_metadata:<run id>, task_metadata:<last run
-- id> (read), the pending list of the entry's queue, and PUBLISHes on wasmq:ready:<queue>.
--
-- The compare-and-set on the score makes each firing happen once however many
-- schedulers race for it. Overlap policy: while the entry's previous run has not
-- finished (pending, scheduled, retrying or in_progress) the firing is skipped and
-- counted in skipped_runs, so at most one run per entry is alive at any time.
-- Returns 0 (another scheduler fired it, or it was paused/removed), 1 (run created),
-- 2 (skipped: previous run still alive), 3 (this tick's run id exists already).

local entry, expected = ARGV[1], ARGV[2]
local score = redis.call('ZSCORE', KEYS[1], entry)
if not score or tonumber(score) ~= tonumber(expected) then
  return 0
end
local key = 'task_metadata:' .. entry
if redis.call('TYPE', key).ok ~= 'hash' or redis.call('HGET', key, 'task_kind') ~= '2' then
  return 0
end
local entry_stage = redis.call('HGET', key, 'task_stage')
if entry_stage == 'paused' or entry_stage == 'cancelled' or entry_stage == 'completed'
  or entry_stage == 'failed' then
  -- Left in the set by an interrupted writer: it must not fire.
  redis.call('ZREM', KEYS[1], entry)
  return 0
end

local result = 1
local last = redis.call('HGET', KEYS[2], entry)
local alive = {pending = true, scheduled = true, retrying = true, in_progress = true}
if last then
  local stage = redis.call('HGET', 'task_metadata:' .. last, 'task_stage')
  if stage and alive[stage] then
    result = 2
  end
end

if result == 1 and redis.call('EXISTS', 'task_metadata:' .. ARGV[4]) == 1 then
  -- The run of this tick exists already (the entry was removed and re-created): keep it.
  result = 3
end

if result == 1 then
  local f = redis.call('HMGET', key, 'task_name', 'task_version', 'payload', 'digest',
    'queue', 'limits', 'max_retries', 'timeout')
  local queue = f[5]
  if not queue or queue == '' or #queue > 128 or not string.match(queue, '^[%w_%.%-]+$')
    or queue == 'pending' or queue == 'processing' or queue == 'finished' or queue == 'dlq' then
    queue = 'default'
  end
  local pending = 'task_queue:pending'
  if queue ~= 'default' then
    pending = 'task_queue:' .. queue .. ':pending'
  end
  -- Like an enqueue, a run takes the task's current registration; the digest recorded
  -- on the entry is the fallback when the task is no longer registered.
  local digest, version = f[4] or '', f[2] or ''
  local record = redis.call('HGET', KEYS[3], f[1] or '')
  if record then
    local ok, decoded = pcall(cjson.decode, record)
    if ok and type(decoded) == 'table' and type(decoded['digest']) == 'string' then
      digest = decoded['digest']
      if decoded['version'] ~= nil and type(decoded['version']) ~= 'table' then
        version = tostring(decoded['version'])
      end
    end
  end
  local run = ARGV[4]
  local run_key = 'task_metadata:' .. run
  redis.call('HSET', run_key,
    'id', run, 'task_name', f[1] or '', 'task_version', version,
    'task_stage', 'pending', 'payload', f[3] or '', 'task_kind', '0',
    'created_at', ARGV[6], 'updated_at', ARGV[6], 'attempts', '0',
    'max_retries', f[7] or '3', 'timeout', f[8] or '30s', 'scheduled_at', ARGV[7],
    'cron_expr', '', 'next_run_at', '', 'queue', f[5] or 'default', 'digest', digest,
    'limits', f[6] or '', 'enqueued_ms', ARGV[5], 'promoted_ms', ARGV[5], 'cron_id', entry)
  redis.call('RPUSH', pending, run)
  redis.call('PUBLISH', 'wasmq:ready:' .. queue, queue)
  redis.call('HSET', KEYS[2], entry, run)
  redis.call('HSET', key, 'last_run_id', run, 'last_run_at', ARGV[7])
  redis.call('HINCRBY', key, 'run_count', 1)
elseif result == 2 then
  redis.call('HINCRBY', key, 'skipped_runs', 1)
  redis.call('HSET', key, 'last_skipped_at', ARGV[7])
end
if tonumber(ARGV[9]) > 0 then
  redis.call('HINCRBY', key, 'missed_runs', ARGV[9])
end
redis.call('ZADD', KEYS[1], ARGV[3], entry)
redis.call('HSET', key, 'task_stage', 'scheduled', 'next_run_at', ARGV[8], 'updated_at', ARGV[6])
return result
