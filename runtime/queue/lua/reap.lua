-- Recover tasks whose lease expired (their worker died or hung).
--
-- KEYS[1] lease zset   task_set:timeout (scored in Unix seconds; ms scores of an older
--                      wasmq, 1e11 and up, are read as ms)
-- ARGV[1] now ms
-- ARGV[2] now as RFC3339 (updated_at)
-- ARGV[3] most ids to recover in this call
-- ARGV[4] how many expired leases to pass over first: the ones earlier calls of the same
--         round left to the reference workers
-- Per-task keys derived here: task_metadata:<id>, and the pending (of its priority),
-- processing and dlq lists of the task's queue (field `queue`, default queue when
-- absent), its wake-token list wasmq:wake:<queue>; channel task_done:<id>.
--
-- Each expired id leaves the lease set and processing in this one step, so many
-- reapers never recover one task twice. Its attempt was counted at claim (in compat
-- mode, where attempts counts failures, the lost attempt is counted here): with
-- attempts <= max_retries it goes back to pending (ahead of the backlog, stage
-- pending, held by no worker), otherwise to the dead-letter list (stage failed). The
-- error says the lease expired. A lease whose task has no `worker` field was taken by
-- a reference worker (a wasmq claim writes it): it is theirs, and left as it is.
-- Returns a flat list: id, action (requeued, failed, dropped, foreign), ...

local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[3])
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ms_to_score(now),
  'LIMIT', tonumber(ARGV[4]) or 0, limit)
if #ids < limit then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], LEGACY_MS_SCORE, now,
      'LIMIT', 0, limit - #ids)) do
    ids[#ids + 1] = id
  end
end

local out = {}
for _, id in ipairs(ids) do
  local key = TASK_PREFIX .. id
  local action = 'dropped'
  local is_hash = redis.call('TYPE', key)['ok'] == 'hash'
  if is_hash and not redis.call('HGET', key, 'worker') then
    action = 'foreign'
  elseif not is_hash then
    redis.call('ZREM', KEYS[1], id)
    limit_release(id)
    redis.call('LREM', queue_key(nil, 'processing'), -1, id)
  else
    redis.call('ZREM', KEYS[1], id)
    limit_release(id)
    local queue = redis.call('HGET', key, 'queue')
    redis.call('LREM', queue_key(queue, 'processing'), -1, id)
    if stage_at(key) == 'in_progress' then
      local attempts = tonumber(redis.call('HGET', key, 'attempts') or '0') or 0
      if COMPAT then
        attempts = math.floor(attempts) + 1
        redis.call('HSET', key, 'attempts', tostring(attempts))
      end
      local max_retries = tonumber(redis.call('HGET', key, 'max_retries') or '3') or 0
      local worker = redis.call('HGET', key, 'worker') or '?'
      local message = 'lease expired: worker ' .. worker .. ' stopped before finishing attempt '
        .. attempts
      redis.call('HSET', key, 'updated_at', ARGV[2], 'error', message, 'error_kind', 'lost',
        'retryable', '1')
      if attempts <= max_retries then
        set_stage(key, 'pending')
        redis.call('HDEL', key, 'worker')
        redis.call('RPUSH', pending_key(queue, priority_of(id)), id)
        add_wake_tokens(wake_key(queue), 1)
        action = 'requeued'
      else
        redis.call('HSET', key, 'task_stage', 'failed', 'finished_ms', ARGV[1])
        redis.call('LPUSH', queue_key(queue, 'dlq'), id)
        flow_failed(key, ARGV[1])
        redis.call('PUBLISH', DONE_CHANNEL_PREFIX .. id, 'failed')
        action = 'failed'
      end
    end
  end
  out[#out + 1] = id
  out[#out + 1] = action
end
return out
