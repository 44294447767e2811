-- Enqueue one task atomically; idempotent by id.
--
-- KEYS[1] task hash            task_metadata:<id>
-- KEYS[2] pending list         task_queue[:<queue>]:pending
-- KEYS[3] scheduled zset       task_set:scheduled
-- KEYS[4] registry hash        wasmq:registry
-- KEYS[5] queue names set      wasmq:queues
-- KEYS[6] scheduler wake list  wasmq:scheduler:wake
-- ARGV[1] task id
-- ARGV[2] task name (looked up in the registry: its current digest and version are recorded)
-- ARGV[3] queue name
-- ARGV[4] due ms, or "" to push to pending now
-- ARGV[5] ready channel        wasmq:ready:<queue>
-- ARGV[6] payload (bytes)
-- ARGV[7] the other fields of the new hash, as a JSON object of strings (one argument
--         instead of forty keeps producers fast)
--
-- Returns {0, <flat hash>} when the id exists (nothing is changed), {-1} when the task
-- name is not registered, {1, digest, version} when the task was created.

if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0, redis.call('HGETALL', KEYS[1])}
end

local record = redis.call('HGET', KEYS[4], ARGV[2])
if not record then
  return {-1}
end
local digest, version = '', ''
local ok, decoded = pcall(cjson.decode, record)
if ok and type(decoded) == 'table' then
  if type(decoded['digest']) == 'string' then digest = decoded['digest'] end
  if decoded['version'] ~= nil and type(decoded['version']) ~= 'table' then
    version = tostring(decoded['version'])
  end
end

local fields = {'payload', ARGV[6]}
for name, value in pairs(cjson.decode(ARGV[7])) do
  fields[#fields + 1] = name
  fields[#fields + 1] = value
end
fields[#fields + 1] = 'digest'
fields[#fields + 1] = digest
fields[#fields + 1] = 'task_version'
fields[#fields + 1] = version
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('SADD', KEYS[5], ARGV[3])

if ARGV[4] == '' then
  -- Workers only sleep after finding the list empty, so only a push onto an empty list
  -- needs to wake them; publishing on every push would flood busy subscribers.
  if redis.call('LPUSH', KEYS[2], ARGV[1]) == 1 then
    redis.call('PUBLISH', ARGV[5], ARGV[3])
  end
else
  local due = tonumber(ARGV[4])
  local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  redis.call('ZADD', KEYS[3], due, ARGV[1])
  -- A sleeping scheduler only needs waking when this task is due before everything else.
  if #first == 0 or due < tonumber(first[2]) then
    redis.call('LPUSH', KEYS[6], '1')
    redis.call('LTRIM', KEYS[6], 0, 15)
  end
end
return {1, digest, version}
