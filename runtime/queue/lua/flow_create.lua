-- Create a flow (chain, group or chord) and its first tasks in one step.
--
-- KEYS[1] flow hash          wasmq:flow:<flow id>
-- KEYS[2] members list       wasmq:flow_members:<flow id>
-- KEYS[3] flow data hash     wasmq:flow_data:<flow id>
-- KEYS[4] registry hash      wasmq:registry
-- KEYS[5] queue names set    wasmq:queues
-- ARGV[1] kind: chain, group or chord
-- ARGV[2] now ms
-- ARGV[3] number of members n
-- ARGV[4] the chord callback's fields as a JSON object of strings, or ""
-- ARGV[5..] per member 4 values: its fields (JSON object of strings, id and queue
--         included), "1" to queue it now or "" to keep it for later (a chain's later
--         steps), "1" when a payload of its own follows or "", the payload
-- Per-task keys derived here: task_metadata:<id>, task_payload:<id> (a large payload).
--
-- Every task name is looked up in the registry before anything is written: its current
-- digest and version are recorded with the member (a flow runs the versions registered
-- when it was made). Members queued now are written and queued as enqueue.lua does;
-- the others' fields (and own payloads) wait in the flow data hash, under s<i> and
-- p<i> (sc for the callback), until the hooks in prelude.lua create them.
-- Returns {1} when created, {0} when the flow id exists (nothing changes), {-1, name}
-- for an unregistered task name, {-2, id} when a member id is taken.

if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0}
end
local n = tonumber(ARGV[3])
local specs = {}
local versions = {}
local function resolve(json)
  local fields = cjson.decode(json)
  local name = fields['task_name']
  if not versions[name] then
    local record = redis.call('HGET', KEYS[4], name)
    if not record then return nil, {-1, name} end
    versions[name] = {registered_version(record)}
  end
  if redis.call('EXISTS', TASK_PREFIX .. fields['id']) == 1 then
    return nil, {-2, fields['id']}
  end
  fields['digest'] = versions[name][1]
  fields['task_version'] = versions[name][2]
  return fields
end

for m = 1, n do
  local fields, problem = resolve(ARGV[1 + 4 * m])
  if not fields then return problem end
  specs[m] = fields
end
local callback = false
if ARGV[4] ~= '' then
  local fields, problem = resolve(ARGV[4])
  if not fields then return problem end
  callback = fields
end

local ids = {}
for m = 1, n do
  local fields, base = specs[m], 1 + 4 * m
  local id = fields['id']
  ids[m] = id
  redis.call('SADD', KEYS[5], fields['queue'])
  if ARGV[base + 1] == '1' then
    local flat = {}
    for name, value in pairs(fields) do
      flat[#flat + 1] = name
      flat[#flat + 1] = value
    end
    local payload = ARGV[base + 3]
    if #payload > FLOW_INLINE_MAX then
      redis.call('SET', PAYLOAD_PREFIX .. id, payload)
      flat[#flat + 1] = 'payload_ref'
      flat[#flat + 1] = '1'
    else
      flat[#flat + 1] = 'payload'
      flat[#flat + 1] = payload
    end
    redis.call('HSET', TASK_PREFIX .. id, unpack(flat))
    index_task(id, fields['queue'], fields['task_name'], fields['enqueued_ms'] or ARGV[2])
    push_task(fields['queue'], fields['priority'], id)
  else
    redis.call('HSET', KEYS[3], 's' .. (m - 1), cjson.encode(fields))
    if ARGV[base + 2] == '1' then
      redis.call('HSET', KEYS[3], 'p' .. (m - 1), ARGV[base + 3])
    end
  end
end
each_chunk(ids, CHUNK, function(...) redis.call('RPUSH', KEYS[2], ...) end)
local flow = {'kind', ARGV[1], 'total', n, 'completed', 0, 'failed', 0, 'cancelled', 0,
  'state', 'running', 'created_ms', ARGV[2]}
if callback then
  redis.call('SADD', KEYS[5], callback['queue'])
  redis.call('HSET', KEYS[3], 'sc', cjson.encode(callback))
  flow[#flow + 1] = 'callback'
  flow[#flow + 1] = callback['id']
end
if ARGV[1] == 'chain' then
  flow[#flow + 1] = 'step'
  flow[#flow + 1] = 0
end
redis.call('HSET', KEYS[1], unpack(flow))
return {1}
