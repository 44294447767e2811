-- Give back claimed tasks that a stopping worker never started.
--
-- KEYS[1] lease zset        task_set:timeout
-- KEYS[2] processing list   task_queue[:<queue>]:processing
-- KEYS[3] pending list      task_queue[:<queue>]:pending (each task goes to its priority's)
-- KEYS[4] wake-token list   wasmq:wake:<queue>
-- ARGV[1] now as RFC3339 (updated_at)
-- ARGV[2] worker id (only tasks this worker still holds are released)
-- ARGV[3..] ids, in the order they were claimed
-- Per-task keys derived here: task_metadata:<id>.
--
-- Each id goes back to the side of pending that is claimed first, in its original
-- order, with its attempt uncounted (compat mode counts failures only: nothing to
-- undo), and one wake token each. Returns the number
-- released.

local released = 0
for i = #ARGV, 3, -1 do
  local id = ARGV[i]
  local key = TASK_PREFIX .. id
  if redis.call('TYPE', key)['ok'] == 'hash'
      and redis.call('HGET', key, 'task_stage') == 'in_progress'
      and redis.call('HGET', key, 'worker') == ARGV[2] then
    redis.call('LREM', KEYS[2], -1, id)
    redis.call('ZREM', KEYS[1], id)
    limit_release(id)
    if COMPAT then
      set_stage(key, 'pending', 'updated_at', ARGV[1])
    else
      local attempts = tonumber(redis.call('HGET', key, 'attempts') or '1') or 1
      set_stage(key, 'pending', 'updated_at', ARGV[1],
        'attempts', tostring(math.max(attempts - 1, 0)))
    end
    redis.call('HDEL', key, 'worker', 'started_ms')
    redis.call('RPUSH', at_level(KEYS[3], priority_of(id)), id)
    released = released + 1
  end
end
add_wake_tokens(KEYS[4], released)
return released
