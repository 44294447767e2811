-- Cancel every unfinished task of a flow, and the flow, in one step.
--
-- KEYS[1] flow hash          wasmq:flow:<flow id>
-- KEYS[2] members list       wasmq:flow_members:<flow id>
-- KEYS[3] flow data hash     wasmq:flow_data:<flow id>
-- KEYS[4] scheduled zset     task_set:scheduled (scored in Unix seconds)
-- ARGV[1] now ms
-- ARGV[2] now as RFC3339 (updated_at)
-- ARGV[3] result retention ms
-- Per-task keys derived here: task_metadata:<id>, task_payload:<id>, the pending lists
-- of each task's queue; channels task_done:<id>, and wasmq:cancel for running tasks.
--
-- Waiting members (pending, scheduled, retrying) leave their list or set; running ones
-- are marked cancelled and their ids published on the cancel channel, so their workers
-- stop them; members not created yet (later chain steps, the callback) never will be.
-- The flow's keys then expire with the retention. Returns {status, waiting cancelled,
-- running marked}: status cancelled, final (the flow had ended) or missing.

if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'missing', 0, 0}
end
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'completed' or state == 'cancelled' then
  return {'final', 0, 0}
end
local ids = redis.call('LRANGE', KEYS[2], 0, -1)
local callback = redis.call('HGET', KEYS[1], 'callback')
if callback then ids[#ids + 1] = callback end
local waiting, running, members = 0, 0, 0
for _, id in ipairs(ids) do
  local key = TASK_PREFIX .. id
  local stage = stage_at(key)
  if type(stage) == 'string' and stage ~= 'completed' and stage ~= 'failed'
    and stage ~= 'cancelled' then
    if stage == 'in_progress' then
      running = running + 1
      redis.call('PUBLISH', CANCEL_CHANNEL, id)
    else
      remove_pending(redis.call('HGET', key, 'queue'), id)
      redis.call('ZREM', KEYS[4], id)
      waiting = waiting + 1
    end
    if id ~= callback then members = members + 1 end
    set_stage(key, 'cancelled', 'updated_at', ARGV[2], 'finished_ms', ARGV[1])
    if not COMPAT then
      redis.call('PEXPIRE', key, ARGV[3])
      redis.call('PEXPIRE', PAYLOAD_PREFIX .. id, ARGV[3])
    end
    redis.call('PUBLISH', DONE_CHANNEL_PREFIX .. id, 'cancelled')
  end
end
redis.call('HINCRBY', KEYS[1], 'cancelled', members)
redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_ms', ARGV[1])
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
return {'cancelled', waiting, running}
