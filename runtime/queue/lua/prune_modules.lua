-- Delete the module bytes, and their compile-index and snapshot-index entries, that no
-- registered task uses: neither its current record (the module it runs and the source a
-- snapshot was made from) nor any version in its history.
--
-- KEYS[1] registry hash        wasmq:registry
-- KEYS[2] compile index hash   wasmq:compiles
-- KEYS[3] snapshot index hash  wasmq:snapshots  (values: JSON objects with a digest)
-- ARGV[1] versions key prefix  wasmq:versions:  (every registered task's history is read)
-- ARGV[2] module key prefix    wasmq:module:    (unused modules are deleted)
--
-- The cost grows with every registered task, version, compile and snapshot, which is why
-- `tasks rm` leaves this to an explicit `tasks prune`. Being one atomic step, no
-- registration can come to use a module between its check here and its deletion (one
-- that finds its module gone sends the bytes again). A module neither index names is
-- not found. Returns {modules deleted, index entries deleted}.

local used = {}
local registry = redis.call('HGETALL', KEYS[1])
for i = 1, #registry, 2 do
  for _, digest in ipairs(redis.call('HVALS', ARGV[1] .. registry[i])) do used[digest] = true end
  local ok, decoded = pcall(cjson.decode, registry[i + 1])
  if ok and type(decoded) == 'table' then
    for _, field in ipairs({'digest', 'source_digest'}) do
      if type(decoded[field]) == 'string' then used[decoded[field]] = true end
    end
  end
end
local modules, entries, seen = 0, 0, {}
for _, key in ipairs({KEYS[2], KEYS[3]}) do
  local index = redis.call('HGETALL', key)
  for i = 1, #index, 2 do
    local digest = index[i + 1]
    if key == KEYS[3] then
      local ok, decoded = pcall(cjson.decode, digest)
      digest = ok and type(decoded) == 'table' and decoded['digest'] or digest
    end
    if not used[digest] then
      redis.call('HDEL', key, index[i])
      entries = entries + 1
      if not seen[digest] then
        seen[digest] = true
        modules = modules + redis.call('DEL', ARGV[2] .. digest)
      end
    end
  end
end
return {modules, entries}
