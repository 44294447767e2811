-- Fire due cron entries: for each, create its run task, then move the entry to its next time.
--
-- KEYS[1]  task_set:scheduled (scored in Unix seconds; the times below are ms)
-- KEYS[2]  wasmq:cron:last_run (hash entry id -> id of its latest run)
-- KEYS[3]  wasmq:registry (each run uses the module registered when it fires)
-- ARGV[1]  now (ms)
-- ARGV[2]  now, RFC3339
-- ARGV[3]  G, how many tick groups follow; a group is what entries of one schedule due
--          at one time share, seven values:
--            due time (ms): the score its entries must still have;
--            next due time (ms);
--            due time, RFC3339 (the runs' scheduled_at);
--            next due time, RFC3339 (the entries' next_run_at);
--            ticks missed while no scheduler ran (added to missed_runs);
--            cron_expr and cron_tz the times were computed from (the entries must still
--            have them);
-- then three values per entry: entry id, its group (1..G), run id.
--
-- Also touches, per entry: task_metadata:<entry id>, task_metadata:<run id>,
-- task_metadata:<last run id> (read); per queue that gets runs: its pending list of
-- each run's priority, the entry's (task_queue:pending for "default",
-- task_queue:<q>:pending otherwise, :<priority> appended for the levels other than the
-- default) and its wake-token list wasmq:wake:<queue>.
--
-- The compare-and-set on each entry's score (and expression and zone, which the caller
-- may know from an earlier firing instead of reading them now) makes each firing happen
-- once however many schedulers race for it (an entry given twice fires at most once).
-- Overlap policy: while the entry's previous run has not finished (pending, scheduled,
-- retrying or in_progress) the firing is skipped and counted in skipped_runs, so at most
-- one run per entry is alive at any time. Each queue's runs are RPUSHed in argument
-- order: the last entry's run is claimed first.
-- Returns one outcome per entry, in argument order: 0 (paused, removed, changed or given
-- twice), 1 (run created), 2 (skipped: previous run still alive), 3 (this tick's run id
-- exists already), 4 (its score is another: another scheduler fired it first).
--
-- Everything is read and checked before the first write: a script stopped by an error
-- keeps the writes it made, and with many entries in one call that would strand runs.
-- Counters are rewritten, not HINCRBYed, for the same reason (a damaged counter restarts
-- from 0 instead of failing the call).

local NOW, NOW_TEXT = ARGV[1], ARGV[2]
local alive = {pending = true, scheduled = true, retrying = true, in_progress = true}
local finished = {paused = true, cancelled = true, completed = true, failed = true}

local function count(value, add)
  return string.format('%d', (tonumber(value) or 0) + add)
end

-- Like an enqueue, a run takes the task's current registration; the digest recorded on
-- the entry is the fallback when the task is no longer registered. One record serves
-- every entry of the same task in this call.
local registered = {}
local function registration(name, digest, version)
  local found = registered[name]
  if found == nil then
    found = false
    local record = redis.call('HGET', KEYS[3], name)
    if record then
      local ok, decoded = pcall(cjson.decode, record)
      if ok and type(decoded) == 'table' and type(decoded['digest']) == 'string' then
        found = {decoded['digest'], nil}
        if decoded['version'] ~= nil and type(decoded['version']) ~= 'table' then
          found[2] = tostring(decoded['version'])
        end
      end
    end
    registered[name] = found
  end
  if found then
    return found[1], found[2] or version
  end
  return digest, version
end

-- Reads: decide every entry.
local groups = tonumber(ARGV[3])
local outcomes, plans, given = {}, {}, {}
for i = 4 + 7 * groups, #ARGV - 2, 3 do
  local entry, g, run = ARGV[i], 4 + 7 * (tonumber(ARGV[i + 1]) - 1), ARGV[i + 2]
  local result, f = 0, nil
  local score = redis.call('ZSCORE', KEYS[1], entry)
  if given[entry] or not score then
    result = 0
  elseif score_to_ms(score) ~= tonumber(ARGV[g]) then
    result = 4
  else
    f = redis.pcall('HMGET', TASK_PREFIX .. entry, 'task_kind', 'task_stage', 'task_name',
      'task_version', 'payload', 'digest', 'queue', 'limits', 'max_retries', 'timeout',
      'run_count', 'skipped_runs', 'missed_runs', 'keep_result', 'keep_payload',
      'cron_expr', 'cron_tz', 'priority', 'wasmq_stage')
    if not f.err then f[2] = stage_of(f[2], f[19]) end
    if not f.err and f[1] == '2'
      and (f[16] or '') == ARGV[g + 5] and (f[17] or '') == ARGV[g + 6] then
      result = 1
      if finished[f[2]] then
        -- Left in the set by an interrupted writer: it must not fire.
        result = -1
      else
        local last = redis.call('HGET', KEYS[2], entry)
        if last then
          local stage = redis.pcall('HGET', TASK_PREFIX .. last, 'task_stage')
          if type(stage) == 'string' and alive[stage] then
            result = 2
          end
        end
        if result == 1 and redis.call('EXISTS', TASK_PREFIX .. run) == 1 then
          -- The run of this tick exists already (the entry was removed and re-created).
          result = 3
        end
      end
    end
  end
  given[entry] = true
  outcomes[#outcomes + 1] = math.max(result, 0)
  if result == 1 then
    local digest, version = registration(f[3] or '', f[6] or '', f[4] or '')
    plans[#plans + 1] = {result, entry, g, run, f, queue_or_default(f[7]), digest, version}
  elseif result == 2 or result == 3 or result == -1 then
    plans[#plans + 1] = {result, entry, g, run, f}
  end
end

local queues, runs_of, lists, run_level = {}, {}, {}, {}
for _, plan in ipairs(plans) do
  if plan[1] == 1 then
    local queue = plan[6]
    if not runs_of[queue] then
      runs_of[queue] = {}
      queues[#queues + 1] = queue
      local refused
      lists[queue], refused = queue_lists(queue, 'nothing fired')
      if not lists[queue] then
        return refused
      end
    end
  end
end

-- Writes.
local gone, moved, last_runs = {}, {}, {}
for _, plan in ipairs(plans) do
  local result, entry, g, run, f = plan[1], plan[2], plan[3], plan[4], plan[5]
  local next_ms, due_text, next_text, missed =
    ARGV[g + 1], ARGV[g + 2], ARGV[g + 3], tonumber(ARGV[g + 4])
  if result == -1 then
    gone[#gone + 1] = entry
  else
    local fields = {'next_run_at', next_text, 'updated_at', NOW_TEXT}
    if result == 1 then
      local digest, version = plan[7], plan[8]
      local run_fields = {
        'id', run, 'task_name', f[3] or '', 'task_version', version,
        'task_stage', 'pending', 'payload', f[5] or '', 'task_kind', '0',
        'created_at', NOW_TEXT, 'updated_at', NOW_TEXT, 'attempts', '0',
        'max_retries', f[9] or '3', 'timeout', f[10] or '30s', 'scheduled_at', due_text,
        'cron_expr', '', 'next_run_at', GO_ZERO_TIME, 'queue', f[7] or DEFAULT_QUEUE, 'digest', digest,
        'limits', f[8] or '', 'enqueued_ms', NOW, 'promoted_ms', NOW, 'cron_id', entry}
      -- Retention settings are the entry's, like its limits; absent means the default.
      if f[14] then
        run_fields[#run_fields + 1] = 'keep_result'
        run_fields[#run_fields + 1] = f[14]
      end
      if f[15] then
        run_fields[#run_fields + 1] = 'keep_payload'
        run_fields[#run_fields + 1] = f[15]
      end
      if f[18] then
        run_fields[#run_fields + 1] = 'priority'
        run_fields[#run_fields + 1] = f[18]
        run_level[run] = f[18]
      end
      redis.call('HSET', TASK_PREFIX .. run, unpack(run_fields))
      index_task(run, f[7] or DEFAULT_QUEUE, f[3] or '', NOW)
      local runs = runs_of[plan[6]]
      runs[#runs + 1] = run
      last_runs[#last_runs + 1] = entry
      last_runs[#last_runs + 1] = run
      fields[#fields + 1] = 'last_run_id'
      fields[#fields + 1] = run
      fields[#fields + 1] = 'last_run_at'
      fields[#fields + 1] = due_text
      fields[#fields + 1] = 'run_count'
      fields[#fields + 1] = count(f[11], 1)
    elseif result == 2 then
      fields[#fields + 1] = 'skipped_runs'
      fields[#fields + 1] = count(f[12], 1)
      fields[#fields + 1] = 'last_skipped_at'
      fields[#fields + 1] = due_text
    end
    if missed and missed > 0 then
      fields[#fields + 1] = 'missed_runs'
      fields[#fields + 1] = count(f[13], missed)
    end
    set_stage(TASK_PREFIX .. entry, 'scheduled', unpack(fields))
    moved[#moved + 1] = ms_to_score(next_ms)
    moved[#moved + 1] = entry
  end
end

each_chunk(gone, CHUNK, function(...) redis.call('ZREM', KEYS[1], ...) end)
each_chunk(moved, CHUNK, function(...) redis.call('ZADD', KEYS[1], ...) end)
each_chunk(last_runs, CHUNK, function(...) redis.call('HSET', KEYS[2], ...) end)

for _, queue in ipairs(queues) do
  push_levels(lists[queue], runs_of[queue], run_level)
end
return outcomes
