-- Recover every task a dead worker process held, at once instead of at lease expiry.
--
-- KEYS[1]        lease zset        task_set:timeout
-- KEYS[4q-2]     processing list of queue q (q = 1..n)
-- KEYS[4q-1]     pending list of queue q (each task goes to its priority's, beside it)
-- KEYS[4q]       dead-letter list of queue q
-- KEYS[4q+1]     wake-token list of queue q
-- ARGV[1] now ms
-- ARGV[2] now as RFC3339 (updated_at)
-- ARGV[3] worker id
-- ARGV[4] error message for the attempts it was running
-- ARGV[5..] ids it had claimed but never started
-- Per-task keys derived here: task_metadata:<id>; channel task_done:<id>.
--
-- Only tasks still in_progress under this worker are touched (the worker id is unique
-- per process). Never-started ones go back to pending with the attempt uncounted; the
-- others are treated as a lease expiry (in compat mode the lost attempt is counted
-- here, as a failure): back to pending while attempts <= max_retries, else
-- dead-lettered. Each task back in pending gets a wake token.
-- Returns {released, requeued, failed}.

local unstarted = {}
for i = 5, #ARGV do unstarted[ARGV[i]] = true end
local released, requeued, failed = 0, 0, 0
local nqueues = (#KEYS - 1) / 4
for q = 1, nqueues do
  local processing, pending, dlq, wake = KEYS[4 * q - 2], KEYS[4 * q - 1], KEYS[4 * q], KEYS[4 * q + 1]
  for _, id in ipairs(redis.call('LRANGE', processing, 0, -1)) do
    local key = TASK_PREFIX .. id
    local f = redis.pcall('HMGET', key, 'worker', 'task_stage', 'attempts', 'max_retries')
    if type(f) == 'table' and not f.err and f[1] == ARGV[3] and f[2] == 'in_progress' then
      redis.call('ZREM', KEYS[1], id)
      limit_release(id)
      redis.call('LREM', processing, -1, id)
      local attempts = tonumber(f[3] or '0') or 0
      if unstarted[id] then
        if COMPAT then
          set_stage(key, 'pending', 'updated_at', ARGV[2])
        else
          set_stage(key, 'pending', 'updated_at', ARGV[2],
            'attempts', tostring(math.max(attempts - 1, 0)))
        end
        redis.call('HDEL', key, 'worker', 'started_ms')
        redis.call('RPUSH', at_level(pending, priority_of(id)), id)
        add_wake_tokens(wake, 1)
        released = released + 1
      else
        if COMPAT then
          attempts = math.floor(attempts) + 1
          redis.call('HSET', key, 'attempts', tostring(attempts))
        end
        redis.call('HSET', key, 'updated_at', ARGV[2], 'error', ARGV[4], 'error_kind', 'lost',
          'retryable', '1')
        if attempts <= (tonumber(f[4] or '3') or 0) then
          set_stage(key, 'pending')
          redis.call('HDEL', key, 'worker')
          redis.call('RPUSH', at_level(pending, priority_of(id)), id)
          add_wake_tokens(wake, 1)
          requeued = requeued + 1
        else
          redis.call('HSET', key, 'task_stage', 'failed', 'finished_ms', ARGV[1])
          redis.call('LPUSH', dlq, id)
          flow_failed(key, ARGV[1])
          redis.call('PUBLISH', DONE_CHANNEL_PREFIX .. id, 'failed')
          failed = failed + 1
        end
      end
    end
  end
end
return {released, requeued, failed}
