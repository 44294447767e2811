-- Enqueue one task atomically; idempotent by id.
--
-- KEYS[1] task hash            task_metadata:<id>
-- KEYS[2] pending list         task_queue[:<queue>]:pending[:<priority>] (the task's level)
-- KEYS[3] scheduled zset       task_set:scheduled (scored in Unix seconds)
-- KEYS[4] registry hash        wasmq:registry
-- KEYS[5] queue names set      wasmq:queues
-- KEYS[6] scheduler wake list  wasmq:scheduler:wake
-- KEYS[7] wake-token list      wasmq:wake:<queue>
-- KEYS[8] payload apart        task_payload:<id>
-- KEYS[9] idle workers zset    wasmq:idle:<queue>
-- ARGV[1] task id
-- ARGV[2] task name (looked up in the registry: its current digest and version are recorded)
-- ARGV[3] queue name
-- ARGV[4] due ms, or "" to push to pending now
-- ARGV[5] "1" when the payload is in KEYS[8]: the caller SET it there (NX, with a short
--         expiry) in the same MULTI, so large payloads never pass through Lua
-- ARGV[6] payload (bytes), when not apart
-- ARGV[7] the other fields of the new hash, as a JSON object of strings (one argument
--         instead of forty keeps producers fast)
-- ARGV[8] now ms (idle workers that started waiting before now - ARGV[9] are dead)
-- ARGV[9] longest wait of a live idle worker, ms
-- Per-worker key derived here: wasmq:wakeup:<worker id> (a token for the woken worker).
--
-- Per-key derived here: wasmq:unique:<unique_key> (when the fields have one), the task
-- index of the queue and of the task name (wasmq:index:queue:<queue>, wasmq:index:task:<name>).
--
-- Returns {0, <flat hash>} when the id exists (nothing is changed), {0, <flat hash>,
-- holder id} when a task that has not ended holds the task's unique key (nothing is
-- changed), {-1} when the task name is not registered, {1, digest, version} when the
-- task was created (and took its unique key).

-- An existing id keeps its payload: the caller's SET NX left an existing payload key
-- alone, and a key it did create expires on its own.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0, redis.call('HGETALL', KEYS[1])}
end

local apart = ARGV[5] == '1'
local unique = unique_holder(ARGV[7])
if unique and unique[2] then
  if apart then redis.call('DEL', KEYS[8]) end
  return {0, redis.call('HGETALL', TASK_PREFIX .. unique[2]), unique[2]}
end
local record = redis.call('HGET', KEYS[4], ARGV[2])
if not record then
  if apart then redis.call('DEL', KEYS[8]) end
  return {-1}
end
local digest, version = registered_version(record)

local fields = {'payload', ARGV[6]}
if apart then
  fields = {'payload_ref', '1'}
  redis.call('PERSIST', KEYS[8])
end
for name, value in pairs(cjson.decode(ARGV[7])) do
  fields[#fields + 1] = name
  fields[#fields + 1] = value
end
fields[#fields + 1] = 'digest'
fields[#fields + 1] = digest
fields[#fields + 1] = 'task_version'
fields[#fields + 1] = version
redis.call('HSET', KEYS[1], unpack(fields))
index_task(ARGV[1], ARGV[3], ARGV[2], ARGV[8])
unique_take(unique, ARGV[1])
redis.call('SADD', KEYS[5], ARGV[3])

if ARGV[4] == '' then
  -- One token per task wakes one idle worker, the one idle for the shortest time;
  -- with none idle, the token waits in the queue's list (claims trim it to what is left).
  redis.call('LPUSH', KEYS[2], ARGV[1])
  local oldest = tonumber(ARGV[8]) - tonumber(ARGV[9])
  local woken = false
  while not woken do
    local last = redis.call('ZPOPMAX', KEYS[9])
    if #last == 0 then break end
    if tonumber(last[2]) >= oldest then
      local inbox = WORKER_WAKE_PREFIX .. last[1]
      redis.call('RPUSH', inbox, '1')
      redis.call('PEXPIRE', inbox, 60000)
      woken = true
    end
  end
  if not woken then
    add_wake_tokens(KEYS[7], 1)
  end
else
  local due = tonumber(ARGV[4])
  local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  redis.call('ZADD', KEYS[3], ms_to_score(due), ARGV[1])
  -- A sleeping scheduler only needs waking when this task is due before everything else.
  if #first == 0 or due < score_to_ms(first[2]) then
    redis.call('LPUSH', KEYS[6], '1')
    redis.call('LTRIM', KEYS[6], 0, 15)
  end
end
return {1, digest, version}
