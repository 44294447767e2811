-- Promote due one-off scheduled and retrying tasks to their queues' pending lists.
--
-- KEYS[1]  task_set:scheduled (scored in Unix seconds, as the reference scores it)
-- ARGV[1]  now (ms): ids due at or before it are due
-- ARGV[2]  most ids to look at in this call
-- ARGV[3]  now as an RFC3339 time (written to updated_at)
-- ARGV[4]  how many due ids to pass over first, latest first: the cron entries the
--          caller got from earlier calls of the same pass and has not fired yet (they
--          stay in the set until fired, everything else due leaves it)
--
-- Also touches, per due id: task_metadata:<id> (hash); per queue that gets tasks: its
-- pending list of each task's priority (task_queue:pending for "default",
-- task_queue:<q>:pending otherwise, with :<priority> appended for the levels other than
-- the default) and its wake-token list wasmq:wake:<queue>.
--
-- Due ids are taken latest first and each queue's ids are RPUSHed in that order, so the
-- earliest due ends up where workers pop first: promoted tasks run ahead of the backlog,
-- earliest first, also when a large backlog takes many calls (a later call pushes
-- earlier tasks, which then sit nearer the head).
--
-- Cron entries (task_kind 2) are not promoted here: their next time needs the cron
-- parser, so they are returned for the caller to fire with cron_fire.lua.
-- Returns {promoted count, dropped ids, {cron id, due ms, cron_expr, cron_tz, ...}, seen}.
--
-- Scores are Unix seconds, as the reference's producer and scheduler write and read them
-- (NextRunAt.Unix()); a score of 1e11 or more (year 5138 in s, 1973 in ms) was written in
-- ms by an older wasmq: such entries, due or not, are rescored in seconds first (up to
-- ARGV[2] per call), so none is promoted early or lost.
--
-- Everything is read and checked before the first write: a script stopped by an error
-- keeps the writes it made, and with a whole batch in one call that would strand tasks.

local now = tonumber(ARGV[1])
local legacy = redis.call('ZRANGEBYSCORE', KEYS[1], LEGACY_MS_SCORE, '+inf', 'WITHSCORES',
  'LIMIT', 0, ARGV[2])
if #legacy > 0 then
  -- Harmless should the script stop later: the entries keep their due times.
  local rescored = {}
  for i = 1, #legacy - 1, 2 do
    rescored[#rescored + 1] = ms_to_score(score_to_ms(legacy[i + 1]))
    rescored[#rescored + 1] = legacy[i]
  end
  each_chunk(rescored, CHUNK, function(...) redis.call('ZADD', KEYS[1], 'XX', ...) end)
end
local due = redis.call('ZREVRANGEBYSCORE', KEYS[1], ms_to_score(now), '-inf', 'WITHSCORES',
  'LIMIT', ARGV[4], ARGV[2])
local dropped, crons, leaving = {}, {}, {}
local queues, ids_of, level = {}, {}, {}
local promoted = 0
-- Terminal or running tasks left in the set by an interrupted producer must not run again.
local stale = {completed = true, failed = true, cancelled = true, in_progress = true}
local checked = {}

-- Most due tasks of a batch share a few queue names: check each name once.
local function clean(queue)
  local name = checked[queue]
  if name == nil then
    name = queue_or_default(queue)
    checked[queue] = name
  end
  return name
end

for i = 1, #due - 1, 2 do
  local id = due[i]
  local score = score_to_ms(due[i + 1])
  due[i + 1] = string.format('%d', score)
  if score <= now then
    local key = TASK_PREFIX .. id
    -- One call reads the fields and tells a missing or non-hash record apart, which
    -- cannot run: the id is forgotten.
    local f = redis.pcall('HMGET', key, 'task_kind', 'queue', 'task_stage', 'cron_expr', 'cron_tz',
      'priority')
    if f.err or (not f[1] and not f[2] and not f[3] and redis.call('EXISTS', key) == 0) then
      leaving[#leaving + 1] = id
      dropped[#dropped + 1] = id
    elseif f[1] == '2' then
      crons[#crons + 1] = id
      crons[#crons + 1] = due[i + 1]
      crons[#crons + 1] = f[4] or ''
      crons[#crons + 1] = f[5] or ''
    elseif stale[f[3] or ''] then
      leaving[#leaving + 1] = id
      dropped[#dropped + 1] = id
    else
      local queue = clean(f[2] or '')
      local ids = ids_of[queue]
      if not ids then
        ids = {}
        ids_of[queue] = ids
        queues[#queues + 1] = queue
      end
      ids[#ids + 1] = id
      level[id] = f[6]
      leaving[#leaving + 1] = id
      promoted = promoted + 1
    end
  end
end

local lists = {}
for _, queue in ipairs(queues) do
  local refused
  lists[queue], refused = queue_lists(queue, 'nothing promoted')
  if not lists[queue] then
    return refused
  end
end

each_chunk(leaving, CHUNK, function(...) redis.call('ZREM', KEYS[1], ...) end)

for _, queue in ipairs(queues) do
  local ids = ids_of[queue]
  for _, id in ipairs(ids) do
    set_stage(TASK_PREFIX .. id, 'pending', 'updated_at', ARGV[3], 'promoted_ms', ARGV[1])
  end
  push_levels(lists[queue], ids, level)
end
return {promoted, dropped, crons, #due / 2}
