-- Read a flow and the stage of every member in one step.
--
-- KEYS[1] flow hash          wasmq:flow:<flow id>
-- KEYS[2] members list       wasmq:flow_members:<flow id>
-- Per-task keys derived here: task_metadata:<id>.
--
-- Returns {} when there is no such flow, else {flow hash as a flat list, member ids,
-- their stages, the callback's stage}; a stage is "" for a member with no record (a
-- chain step not created yet, or a record that expired).

if redis.call('EXISTS', KEYS[1]) == 0 then
  return {}
end
local ids = redis.call('LRANGE', KEYS[2], 0, -1)
local stages = {}
for i, id in ipairs(ids) do
  stages[i] = stage_at(TASK_PREFIX .. id) or ''
end
local callback = redis.call('HGET', KEYS[1], 'callback')
local callback_stage = ''
if callback then
  callback_stage = stage_at(TASK_PREFIX .. callback) or ''
end
return {redis.call('HGETALL', KEYS[1]), ids, stages, callback_stage}
