-- Unregister a task: drop its record and version history, and the module bytes (and
-- compile-index entries) that no other registered task still uses.
--
-- KEYS[1] registry hash        wasmq:registry
-- KEYS[2] versions hash        wasmq:versions:<name>
-- KEYS[3] compile index hash   wasmq:compiles
-- ARGV[1] task name
-- ARGV[2] versions key prefix  wasmq:versions:  (other tasks' histories are read)
-- ARGV[3] module key prefix    wasmq:module:    (unused modules are deleted)
--
-- Returns 1 when the task was registered, 0 otherwise.

if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return 0
end
local mine = {}
for _, digest in ipairs(redis.call('HVALS', KEYS[2])) do mine[digest] = true end
local current = redis.call('HGET', KEYS[1], ARGV[1])
local ok, decoded = pcall(cjson.decode, current)
if ok and type(decoded) == 'table' and type(decoded['digest']) == 'string' then
  mine[decoded['digest']] = true
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])

for _, other in ipairs(redis.call('HKEYS', KEYS[1])) do
  for _, digest in ipairs(redis.call('HVALS', ARGV[2] .. other)) do mine[digest] = nil end
  local rec = redis.call('HGET', KEYS[1], other)
  local ok2, d2 = pcall(cjson.decode, rec)
  if ok2 and type(d2) == 'table' and type(d2['digest']) == 'string' then mine[d2['digest']] = nil end
end
local index = redis.call('HGETALL', KEYS[3])
for i = 1, #index, 2 do
  if mine[index[i + 1]] then redis.call('HDEL', KEYS[3], index[i]) end
end
for digest, _ in pairs(mine) do redis.call('DEL', ARGV[3] .. digest) end
return 1
