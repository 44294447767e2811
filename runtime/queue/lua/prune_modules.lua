-- Delete the module bytes, and their compile-index entries, that no registered task
-- uses: neither its current record nor any version in its history.
--
-- KEYS[1] registry hash        wasmq:registry
-- KEYS[2] compile index hash   wasmq:compiles
-- ARGV[1] versions key prefix  wasmq:versions:  (every registered task's history is read)
-- ARGV[2] module key prefix    wasmq:module:    (unused modules are deleted)
--
-- The cost grows with every registered task, version and compile, which is why
-- `tasks rm` leaves this to an explicit `tasks prune`. Being one atomic step, no
-- registration can come to use a module between its check here and its deletion (one
-- that finds its module gone sends the bytes again). A module the compile index does
-- not name is not found. Returns {modules deleted, compile-index entries deleted}.

local used = {}
local registry = redis.call('HGETALL', KEYS[1])
for i = 1, #registry, 2 do
  for _, digest in ipairs(redis.call('HVALS', ARGV[1] .. registry[i])) do used[digest] = true end
  local ok, decoded = pcall(cjson.decode, registry[i + 1])
  if ok and type(decoded) == 'table' and type(decoded['digest']) == 'string' then
    used[decoded['digest']] = true
  end
end
local modules, entries, seen = 0, 0, {}
local index = redis.call('HGETALL', KEYS[2])
for i = 1, #index, 2 do
  local digest = index[i + 1]
  if not used[digest] then
    redis.call('HDEL', KEYS[2], index[i])
    entries = entries + 1
    if not seen[digest] then
      seen[digest] = true
      modules = modules + redis.call('DEL', ARGV[2] .. digest)
    end
  end
end
return {modules, entries}
