-- Register a task module: store its bytes, index its compile (and its snapshot), record
-- the task (new version when the digest changed), all at once.
--
-- KEYS[1] registry hash        wasmq:registry          (name -> JSON record)
-- KEYS[2] versions hash        wasmq:versions:<name>   (version -> digest)
-- KEYS[3] module bytes         wasmq:module:<digest>   (the module tasks run)
-- KEYS[4] compile index hash   wasmq:compiles          (compile key -> source digest)
-- KEYS[5] source module bytes  wasmq:module:<source digest> (KEYS[3] without a snapshot)
-- KEYS[6] snapshot index hash  wasmq:snapshots         (format:source:name -> JSON)
-- ARGV[1] task name
-- ARGV[2] module digest (of the module tasks run: the snapshot when there is one)
-- ARGV[3] module bytes, or "" when the caller knows Redis already has them
-- ARGV[4] compile key (hash of source, language, toolchain version, flags)
-- ARGV[5] the record as a JSON object WITHOUT version and registered_at (they are
--         appended here, from the current record)
-- ARGV[6] now, ms
-- ARGV[7] source digest (the compiled module; ARGV[2] when it runs as built)
-- ARGV[8] source bytes, or "" (when Redis has them, or when they are ARGV[3])
-- ARGV[9] snapshot index field, or "" when the module runs as built
-- ARGV[10] snapshot index value: {"digest": ARGV[2], ...what the snapshot kept}
--
-- Returns {changed (0|1), version, registered_at}, or {-1} when bytes the caller left
-- out are gone (the caller then sends them); nothing is written then.

local separate = KEYS[5] ~= KEYS[3]
if ARGV[3] == '' and redis.call('EXISTS', KEYS[3]) == 0 then return {-1} end
if separate and ARGV[8] == '' and redis.call('EXISTS', KEYS[5]) == 0 then return {-1} end
if ARGV[3] ~= '' then redis.call('SET', KEYS[3], ARGV[3]) end
if separate and ARGV[8] ~= '' then redis.call('SET', KEYS[5], ARGV[8]) end
redis.call('HSET', KEYS[4], ARGV[4], ARGV[7])
if ARGV[9] ~= '' then redis.call('HSET', KEYS[6], ARGV[9], ARGV[10]) end

local version, registered_at, changed = 0, tonumber(ARGV[6]), 1
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local ok, decoded = pcall(cjson.decode, current)
  if ok and type(decoded) == 'table' then
    version = tonumber(decoded['version']) or 0
    if decoded['digest'] == ARGV[2] and version > 0 then
      changed = 0
      registered_at = tonumber(decoded['registered_at']) or registered_at
    end
  end
end
if changed == 1 then
  -- Versions only grow, even if the record was damaged or edited by hand.
  for _, v in ipairs(redis.call('HKEYS', KEYS[2])) do
    local n = tonumber(v)
    if n and n > version then version = n end
  end
  version = version + 1
  redis.call('HSET', KEYS[2], tostring(version), ARGV[2])
end
local record = string.sub(ARGV[5], 1, -2) ..
  string.format(',"version":%d,"registered_at":%d}', version, registered_at)
redis.call('HSET', KEYS[1], ARGV[1], record)
return {changed, version, string.format('%d', registered_at)}
