-- Promote every due one-off scheduled or retrying task to its queue's pending list.
--
-- KEYS[1]  task_set:scheduled
-- ARGV[1]  now (ms): ids with a score <= now are due
-- ARGV[2]  most ids to look at in this call
-- ARGV[3]  now as an RFC3339 time (written to updated_at)
--
-- Also touches, per due id: task_metadata:<id> (hash), the pending list of the task's
-- queue (task_queue:pending for "default", task_queue:<q>:pending otherwise), and
-- PUBLISHes the queue name on wasmq:ready:<queue>.
--
-- Cron entries (task_kind 2) are not promoted here: their next time needs the cron
-- parser, so they are returned for the caller to fire with cron_fire.lua.
-- Returns {promoted ids, dropped ids, {cron id, score, cron_expr, cron_tz, ...}, seen}.
--
-- The reference's Go producer scores entries in Unix seconds (NextRunAt.Unix()); a score
-- below 1e11 (year 1973 in ms, year 5138 in s) is read as seconds and rescored in ms, so
-- such an entry is neither promoted early nor lost.

local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[2])
local promoted, dropped, crons = {}, {}, {}
-- Terminal or running tasks left in the set by an interrupted producer must not run again.
local stale = {completed = true, failed = true, cancelled = true, in_progress = true}

-- Walk backwards: RPUSH puts the last pushed id where workers pop first, so the
-- earliest due task is claimed first.
local now = tonumber(ARGV[1])
for i = #due - 1, 1, -2 do
  local id = due[i]
  local key = 'task_metadata:' .. id
  local kind_of_key = redis.call('TYPE', key).ok
  local score = tonumber(due[i + 1])
  if score > 0 and score < 1e11 then
    score = score * 1000
    due[i + 1] = string.format('%d', score)
    redis.call('ZADD', KEYS[1], 'XX', due[i + 1], id)
  end
  if score > now then
    -- A seconds score not yet due: it stays, now in ms, for a later pass.
  elseif kind_of_key ~= 'hash' then
    -- A missing (or non-hash) record cannot run: forget the id.
    redis.call('ZREM', KEYS[1], id)
    dropped[#dropped + 1] = id
  else
    local f = redis.call('HMGET', key, 'task_kind', 'queue', 'task_stage', 'cron_expr', 'cron_tz')
    if f[1] == '2' then
      crons[#crons + 1] = id
      crons[#crons + 1] = due[i + 1]
      crons[#crons + 1] = f[4] or ''
      crons[#crons + 1] = f[5] or ''
    elseif stale[f[3] or ''] then
      redis.call('ZREM', KEYS[1], id)
      dropped[#dropped + 1] = id
    else
      local queue = f[2]
      -- A damaged queue name goes to the default queue, where the worker fails the task
      -- with a clear error instead of it waiting forever under a key no worker reads.
      if not queue or queue == '' or #queue > 128 or not string.match(queue, '^[%w_%.%-]+$')
        or queue == 'pending' or queue == 'processing' or queue == 'finished' or queue == 'dlq' then
        queue = 'default'
      end
      local pending = 'task_queue:pending'
      if queue ~= 'default' then
        pending = 'task_queue:' .. queue .. ':pending'
      end
      redis.call('ZREM', KEYS[1], id)
      redis.call('HSET', key, 'task_stage', 'pending', 'updated_at', ARGV[3],
        'promoted_ms', ARGV[1])
      redis.call('RPUSH', pending, id)
      redis.call('PUBLISH', 'wasmq:ready:' .. queue, queue)
      promoted[#promoted + 1] = id
    end
  end
end
return {promoted, dropped, crons, #due / 2}
