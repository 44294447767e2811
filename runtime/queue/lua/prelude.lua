-- Helpers every script in this directory can use; not a script of its own.
--
-- The loader (scripts.py) registers each script as: the key constants it generates
-- from keys.py (DEFAULT_QUEUE, QUEUE_PREFIX, TASK_PREFIX, ..., QUEUE_PARTS), then this
-- file, then the script. Key names therefore live in keys.py only: a script names a key
-- it derives with these constants and helpers, never with a literal.

-- Most arguments per command: unpack has to fit them on Lua's C stack.
local CHUNK = 1000

-- <prefix><queue>, the queue as a hash tag in the tagged (cluster) layout (keys._scoped):
-- every key named after a queue is built here, so it lands in that queue's slot.
local function queue_scoped(prefix, queue)
  return prefix .. TAG_OPEN .. queue .. TAG_CLOSE
end

-- -- What the reference workers share ------------------------------------------------
-- task_set:scheduled and task_set:timeout are scored in Unix seconds (with a ms
-- fraction), as the reference scores them; everything else here counts ms. A score of
-- 1e11 or more (year 5138 in seconds) was written in ms by an older wasmq: read as ms.
local LEGACY_MS_SCORE = 1e11

-- The score of the time `ms`.
local function ms_to_score(ms)
  return string.format('%.3f', tonumber(ms) / 1000)
end

-- The score of a lease that ends at `ms`: whole seconds, rounded up. Valkey stores an
-- integer score several times faster than a fractional one, and a lease a fraction of a
-- second longer changes nothing; claims write one per task.
local function lease_score(ms)
  return math.ceil(tonumber(ms) / 1000)
end

-- The time (ms) of score `score`, either unit.
local function score_to_ms(score)
  score = tonumber(score)
  if score >= LEGACY_MS_SCORE then return math.floor(score) end
  return math.floor(score * 1000 + 0.5)
end

-- An unset time, as Go writes its zero time.Time (the reference cannot parse '').
local GO_ZERO_TIME = '0001-01-01T00:00:00Z'

-- The reference knows four stages. Compat mode (COMPAT, generated) writes the coarse
-- one of a finer wasmq stage into task_stage and the fine one into wasmq_stage.
local COARSE_STAGE = {scheduled = 'pending', retrying = 'pending', paused = 'pending',
  cancelled = 'failed'}

-- A task's stage from its task_stage and wasmq_stage: the fine one only while it still
-- agrees with the coarse one (a reference worker that moved the task on wins).
local function stage_of(stage, fine)
  if fine and stage and COARSE_STAGE[fine] == stage then return fine end
  return stage
end

-- The stage of the task of hash `key`; false when there is none (missing, not a hash).
local function stage_at(key)
  local f = redis.pcall('HMGET', key, 'task_stage', 'wasmq_stage')
  if type(f) ~= 'table' or f.err or not f[1] then return false end
  return stage_of(f[1], f[2])
end

-- HSET task `key` to `stage` with the other field-value pairs given.
local function set_stage(key, stage, ...)
  local coarse = COARSE_STAGE[stage]
  if COMPAT and coarse then
    redis.call('HSET', key, 'task_stage', coarse, 'wasmq_stage', stage, ...)
  else
    redis.call('HSET', key, 'task_stage', stage, ...)
    if stage == 'pending' then redis.call('HDEL', key, 'wasmq_stage') end
  end
end

-- keys.queue(): the default queue keeps the reference layout (task_queue:<part>), a
-- named one has its name inserted (every queue, tagged, in the tagged layout). A record
-- without a queue field (nil or '') belongs to the default queue.
local function queue_key(queue, part)
  if not QUEUE_PARTS[part] then
    error('unknown queue part ' .. tostring(part))
  end
  if not queue or queue == '' or queue == DEFAULT_QUEUE then
    if TAG_OPEN == '' then return QUEUE_PREFIX .. part end
    queue = DEFAULT_QUEUE
  end
  return queue_scoped(QUEUE_PREFIX, queue) .. ':' .. part
end

-- keys.wake(), with the same default as queue_key.
local function wake_key(queue)
  if not queue or queue == '' then
    return queue_scoped(WAKE_PREFIX, DEFAULT_QUEUE)
  end
  return queue_scoped(WAKE_PREFIX, queue)
end

local function each_chunk(list, step, fn)
  for first = 1, #list, step do
    fn(unpack(list, first, math.min(first + step - 1, #list)))
  end
end

-- A damaged queue name goes to the default queue, where the worker fails the task with a
-- clear error instead of it waiting forever under a key no worker reads.
local function queue_or_default(queue)
  if not queue or #queue == 0 or #queue > 128 or not string.match(queue, '^[%w_%.%-]+$')
    or QUEUE_PARTS[queue] then
    return DEFAULT_QUEUE
  end
  return queue
end

-- -- Priorities ------------------------------------------------------------------------
-- keys.pending_at(): each priority level of a queue has its own pending list; the
-- default level keeps the queue's reference list and the others sit beside it. A
-- missing or unknown `priority` field is the default level, so tasks of producers that
-- know nothing of levels are claimed as before. (PRIORITIES, highest first, and the
-- set PRIORITY_LEVEL come from keys.py with the constants.)
local function priority_or_default(priority)
  if priority and PRIORITY_LEVEL[priority] then return priority end
  return DEFAULT_PRIORITY
end

-- The list of `priority` beside `pending`, a queue's default-level pending list.
local function at_level(pending, priority)
  if not priority or priority == DEFAULT_PRIORITY or not PRIORITY_LEVEL[priority] then
    return pending
  end
  return pending .. ':' .. priority
end

local function pending_key(queue, priority)
  return at_level(queue_key(queue, 'pending'), priority)
end

-- Every pending list of the queue whose default-level list is `pending`, highest first.
local level_lists = {}
local function levels_of(pending)
  local out = level_lists[pending]
  if not out then
    out = {}
    for i, level in ipairs(PRIORITIES) do out[i] = at_level(pending, level) end
    level_lists[pending] = out
  end
  return out
end

-- Up to n ids (n > 0) off a queue's pending lists, higher levels first and each level
-- in its own order; false when every level is empty (as RPOP replies).
local function pop_pending(pending, n)
  local out = false
  for _, list in ipairs(levels_of(pending)) do
    local ids = redis.call('RPOP', list, n)
    if ids then
      if out then
        for _, id in ipairs(ids) do out[#out + 1] = id end
      else
        out = ids
      end
      n = n - #ids
      if n <= 0 then break end
    end
  end
  return out
end

-- Tasks waiting at every level (what a queue's wake tokens are trimmed to).
local function pending_total(pending)
  local n = 0
  for _, list in ipairs(levels_of(pending)) do n = n + redis.call('LLEN', list) end
  return n
end

-- Take `id` out of every level beside `pending` (a record's level may have been
-- rewritten since it was pushed); returns how many were removed.
local function remove_pending_at(pending, id)
  local removed = 0
  for _, list in ipairs(levels_of(pending)) do
    removed = removed + redis.call('LREM', list, 0, id)
  end
  return removed
end

local function remove_pending(queue, id)
  return remove_pending_at(queue_key(queue, 'pending'), id)
end

-- The level recorded on a task (the default for a missing or damaged record).
local function priority_of(id)
  local priority = redis.pcall('HGET', TASK_PREFIX .. id, 'priority')
  if type(priority) ~= 'string' then return DEFAULT_PRIORITY end
  return priority_or_default(priority)
end

-- {default-level pending list, wake-token list, every level's pending list} of a
-- queue; nil and an error reply (ending with `refused`) when any holds another type,
-- as pushing there would stop the script half way. Scripts check every queue before
-- their first write.
local function queue_lists(queue, refused)
  local pending, wake = queue_key(queue, 'pending'), queue_scoped(WAKE_PREFIX, queue)
  local levels = levels_of(pending)
  for _, list in ipairs({wake, unpack(levels)}) do
    local kind = redis.call('TYPE', list).ok
    if kind ~= 'list' and kind ~= 'none' then
      return nil, redis.error_reply('ERR ' .. list .. ' is a ' .. kind .. ', not a list: ' .. refused)
    end
  end
  return {pending, wake, levels}
end

-- Digest and version ('' when unreadable) of a task's registry record (JSON text).
local function registered_version(record)
  local digest, version = '', ''
  local ok, decoded = pcall(cjson.decode, record)
  if ok and type(decoded) == 'table' then
    if type(decoded['digest']) == 'string' then digest = decoded['digest'] end
    if decoded['version'] ~= nil and type(decoded['version']) ~= 'table' then
      version = tostring(decoded['version'])
    end
  end
  return digest, version
end

-- Tokens are all alike: one table of them serves every push.
local tokens = {}

-- Push n wake tokens: each wakes one idle worker of the queue.
local function add_wake_tokens(wake, n)
  for j = #tokens + 1, math.min(n, CHUNK) do
    tokens[j] = '1'
  end
  for first = 1, n, CHUNK do
    redis.call('RPUSH', wake, unpack(tokens, 1, math.min(CHUNK, n - first + 1)))
  end
end

-- RPUSH ids (at least one) onto the pending list of `priority` (absent: the default
-- level) beside a queue's default-level list `pending`, with one wake token each; the
-- trim keeps tokens from outnumbering the tasks there are at all levels
-- (total >= #ids > 0, so 0..total-1 never means "all").
local function push_pending(pending, wake, ids, priority)
  local list = at_level(pending, priority)
  each_chunk(ids, CHUNK, function(...) redis.call('RPUSH', list, ...) end)
  add_wake_tokens(wake, #ids)
  redis.call('LTRIM', wake, 0, pending_total(pending) - 1)
end

-- push_pending of ids of one queue at mixed levels (`level[id]`, the default when
-- absent): each level's ids keep their order.
local function push_levels(lists, ids, level)
  local by_level = {}
  for _, id in ipairs(ids) do
    local priority = priority_or_default(level[id])
    local group = by_level[priority]
    if not group then
      group = {}
      by_level[priority] = group
    end
    group[#group + 1] = id
  end
  for _, priority in ipairs(PRIORITIES) do
    if by_level[priority] then push_pending(lists[1], lists[2], by_level[priority], priority) end
  end
end

-- Make one task (its record already written) available on its queue at its priority:
-- onto the pending list that is claimed from, with one wake token. Every script that
-- creates a task inside another step (a chain's next step, a chord's callback) uses
-- this, so the queue's wake and priority rules hold for it too.
local function push_task(queue, priority, id)
  local lists, problem = queue_lists(queue_or_default(queue), 'the task was not queued')
  if not lists then return problem end
  push_pending(lists[1], lists[2], {id}, priority)
  return nil
end

-- -- Task index ----------------------------------------------------------------------------

-- Task `id` of `queue` and task `name` was created at `ms`: the task list (dashboard)
-- finds it by time, per queue and per name. Every script that writes a new record calls it.
local function index_task(id, queue, name, ms)
  redis.call('ZADD', queue_scoped(INDEX_QUEUE_PREFIX, queue_or_default(queue)), ms, id)
  if name and name ~= '' then redis.call('ZADD', INDEX_NAME_PREFIX .. name, ms, id) end
end

-- -- Workflows: chains, groups and chords ---------------------------------------------
-- A member of a flow has `flow` (the flow id) and `flow_index` (its place, from 0, or
-- `callback`) on its record. The flow hash counts members by outcome; the hooks below
-- are called where a member's stage changes, in the same script, so a crash between a
-- step's end and the next step's start cannot happen.

-- `text` as a JSON value: itself when it is JSON that stays JSON inside an array (Lua's
-- decoder also takes hex, inf, nan and the like, refused here), else a JSON string.
local function flow_json(text)
  if not text then return 'null' end
  if pcall(cjson.decode, text) then
    local bare = string.gsub(string.gsub(text, '\\.', ''), '"[^"]*"', '""')
    bare = ' ' .. string.gsub(string.gsub(string.gsub(bare, 'true', ''), 'false', ''), 'null', '')
    if not string.find(bare, '[^%s%d%.eE%+%-%[%]{}:,"]') and not string.find(bare, '[^eE]%+')
      and not string.find(bare, '[^%d%.eE]0%d') and not string.find(bare, '[^%d]%.')
      and not string.find(bare, '%.[^%d]') then
      return text
    end
  end
  return cjson.encode(text)
end

-- flow id and member index of the task whose hash is `key`; nil when it is in no flow.
local function flow_of(key)
  local fields = redis.pcall('HMGET', key, 'flow', 'flow_index')
  if type(fields) ~= 'table' or not fields[1] then return nil end
  return fields[1], fields[2]
end

-- kind, total, state of a flow (nil when it is gone, e.g. expired after it ended).
local function flow_info(fkey)
  local info = redis.call('HMGET', fkey, 'kind', 'total', 'state')
  return info[1], tonumber(info[2]) or 0, info[3]
end

-- A flow that ended for good expires with the retention of its last task; a failed one
-- stays, as dead letters do, so that a redrive can finish it.
local function flow_end(flow, state, now, ttl)
  local fkey = FLOW_PREFIX .. flow
  redis.call('HSET', fkey, 'state', state, 'finished_ms', now)
  if ttl then
    for _, k in ipairs({fkey, FLOW_MEMBERS_PREFIX .. flow, FLOW_DATA_PREFIX .. flow}) do
      redis.call('PEXPIRE', k, ttl)
    end
  end
end

-- A group ends when every member has: completed when all did, failed when any failed.
local function flow_settle_group(flow, total, now, ttl)
  local c = redis.call('HMGET', FLOW_PREFIX .. flow, 'completed', 'failed', 'cancelled')
  local done, failed, cancelled = tonumber(c[1]) or 0, tonumber(c[2]) or 0, tonumber(c[3]) or 0
  if done + failed + cancelled < total then return end
  if failed > 0 then
    flow_end(flow, 'failed', now, nil)
  elseif cancelled > 0 then
    flow_end(flow, 'cancelled', now, ttl)
  else
    flow_end(flow, 'completed', now, ttl)
  end
end

-- Create the member whose fields the flow keeps under `field` (a chain's next step, a
-- chord's callback) with `payload`, or with a copy of the string at `copy_from` as its
-- payload, and queue it. Its id was assigned when the flow was made: an existing record
-- means it was created already, and nothing happens.
local function flow_spawn(flow, field, payload, copy_from, now, now_text)
  local spec = redis.call('HGET', FLOW_DATA_PREFIX .. flow, field)
  if not spec then return end
  local fields = cjson.decode(spec)
  local id = fields['id']
  local key = TASK_PREFIX .. id
  if redis.call('EXISTS', key) == 1 then return end
  local flat = {}
  for name, value in pairs(fields) do
    flat[#flat + 1] = name
    flat[#flat + 1] = value
  end
  local apart = PAYLOAD_PREFIX .. id
  if copy_from then
    redis.call('COPY', copy_from, apart, 'REPLACE')
    redis.call('PERSIST', apart)
    payload = false
  elseif #payload > FLOW_INLINE_MAX then
    redis.call('SET', apart, payload)
    payload = false
  end
  if payload then
    flat[#flat + 1] = 'payload'
    flat[#flat + 1] = payload
  else
    flat[#flat + 1] = 'payload_ref'
    flat[#flat + 1] = '1'
  end
  redis.call('HSET', key, unpack(flat))
  redis.call('HSET', key, 'task_stage', 'pending', 'created_at', now_text,
    'updated_at', now_text, 'enqueued_ms', tostring(now))
  index_task(id, fields['queue'], fields['task_name'], now)
  push_task(fields['queue'], fields['priority'], id)
end

-- ack.lua: task `id` (hash `key`) completed and its result is at task_result:<id>. A
-- chain creates its next step, a chord keeps the result and creates its callback once
-- the last member is done; HINCRBY runs once per member because a task completes once.
local function flow_completed(id, key, ttl, now, now_text)
  local flow, index = flow_of(key)
  if not flow then return end
  local fkey = FLOW_PREFIX .. flow
  local kind, total, state = flow_info(fkey)
  if not kind or state == 'cancelled' then return end
  if index == 'callback' then
    flow_end(flow, 'completed', now, ttl)
    return
  end
  local done = redis.call('HINCRBY', fkey, 'completed', 1)
  local result, data = RESULT_PREFIX .. id, FLOW_DATA_PREFIX .. flow
  if kind == 'group' then
    flow_settle_group(flow, total, now, ttl)
  elseif kind == 'chain' then
    local step = tonumber(index) + 1
    if step >= total then
      flow_end(flow, 'completed', now, ttl)
      return
    end
    redis.call('HSET', fkey, 'step', step, 'state', 'running')
    local own = redis.call('HGET', data, 'p' .. step)
    if own then
      local previous = flow_json(redis.call('GET', result) or '')
      local payload = '{"payload":' .. flow_json(own) .. ',"previous":' .. previous .. '}'
      flow_spawn(flow, 's' .. step, payload, nil, now, now_text)
    elseif redis.call('STRLEN', result) > FLOW_INLINE_MAX then
      flow_spawn(flow, 's' .. step, nil, result, now, now_text)
    else
      flow_spawn(flow, 's' .. step, redis.call('GET', result) or '', nil, now, now_text)
    end
  else
    redis.call('HSET', data, 'r' .. index, redis.call('GET', result) or '')
    if done >= total then
      local parts = {}
      for i = 0, total - 1 do
        parts[i + 1] = flow_json(redis.call('HGET', data, 'r' .. i) or '')
      end
      redis.call('HSET', fkey, 'state', 'running', 'members_done_ms', now)
      flow_spawn(flow, 'sc', '[' .. table.concat(parts, ',') .. ']', nil, now, now_text)
    end
  end
end

-- A member of the flow of hash `key` ended as `outcome` (failed, cancelled): counted, and
-- its chain, chord or settled group ends with that outcome (a failed flow keeps its keys
-- for a redrive: `ttl` nil).
local function flow_member_ended(key, outcome, now, ttl)
  local flow, index = flow_of(key)
  if not flow then return end
  local fkey = FLOW_PREFIX .. flow
  local kind, total, state = flow_info(fkey)
  if not kind or state == 'cancelled' then return end
  if index ~= 'callback' then redis.call('HINCRBY', fkey, outcome, 1) end
  if kind == 'group' then
    flow_settle_group(flow, total, now, ttl)
  else
    flow_end(flow, outcome, now, ttl)
  end
end

-- nack.lua, reap.lua, recover.lua: the task of hash `key` was dead-lettered. A chain or
-- chord stops (failed); a group fails once every member has ended.
local function flow_failed(key, now)
  flow_member_ended(key, 'failed', now, nil)
end

-- dlq_redrive.lua: the dead-lettered task of hash `key` is pending again, so its flow
-- runs again (a chain continues and a chord fires once it completes).
local function flow_redriven(key)
  local flow, index = flow_of(key)
  if not flow then return end
  local fkey = FLOW_PREFIX .. flow
  local kind, _, state = flow_info(fkey)
  if not kind or state == 'cancelled' then return end
  local failed = 0
  if index ~= 'callback' then
    failed = redis.call('HINCRBY', fkey, 'failed', -1)
    if failed < 0 then
      redis.call('HSET', fkey, 'failed', 0)
      failed = 0
    end
  end
  if state == 'failed' and (kind == 'group' or failed == 0) then
    redis.call('HSET', fkey, 'state', 'running')
    redis.call('HDEL', fkey, 'finished_ms')
  end
end

-- cancel.lua: the task of hash `key` was cancelled. A chain or chord cannot finish
-- without it, so it is cancelled too (its later steps never start).
local function flow_cancelled(key, now, ttl)
  flow_member_ended(key, 'cancelled', now, ttl)
end

-- -- Rate and concurrency limits ----------------------------------------------------------
-- LIMITS holds scope -> JSON limit, a scope being 'task:<name>' or 'queue:<name>'. A claim
-- starts a task only while each limited scope it belongs to has a free slot (holders in
-- its running set whose lease is live) and room in its sliding window (claims in the
-- last period_ms). A refused task goes aside onto the scope's waiting list, still
-- pending and its attempt uncounted. A holder that ends or goes back (ack, nack,
-- release, reap, recover, cancel) releases the oldest waiters into the freed slots, and
-- claims look at every scope with waiters again when LIMIT_DUE says (at the latest
-- LIMIT_RECHECK ms on), so a waiter never outlives the limit that holds it.

-- The longest a set-aside task waits before a claim looks at its scope again, ms.
local LIMIT_RECHECK = 1000
-- Most waiters one look releases, and most due scopes one claim looks at.
local LIMIT_RELEASE_MAX = 100
local LIMIT_SCOPES_MAX = 16

-- A stored limit as {concurrency = n, rate = n, period = ms} (either part nil); nil when
-- it does not parse, and then it limits nothing.
local function limit_parse(raw)
  if not raw then return nil end
  local ok, c = pcall(cjson.decode, raw)
  if not ok or type(c) ~= 'table' then return nil end
  local out = {}
  local n = tonumber(c['concurrency'])
  if n and n >= 1 then out.concurrency = math.floor(n) end
  local rate, period = tonumber(c['rate']), tonumber(c['period_ms'])
  if rate and rate >= 1 and period and period >= 1 then
    out.rate, out.period = math.floor(rate), period
  end
  if not out.concurrency and not out.rate then return nil end
  return out
end

-- Slots held in `scope`. Leases are renewed while a task runs, so a holder whose
-- recorded deadline passed is looked up in the lease set: kept under its new deadline,
-- or dropped when its lease is gone (a killed worker's slot frees with its lease).
local function limit_holders(scope, now, leases)
  local running = LIMIT_RUNNING_PREFIX .. scope
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', running, '-inf', now)) do
    -- Leases are scored in seconds; the running sets stay in ms.
    local lease = redis.call('ZSCORE', leases, id)
    lease = lease and score_to_ms(lease)
    if lease and lease > now then
      redis.call('ZADD', running, lease, id)
    else
      redis.call('ZREM', running, id)
    end
  end
  return redis.call('ZCARD', running)
end

-- {running, used} of a scope, read once per claim and then counted in Lua. Without the
-- lease set (state.leases) lapsed holders are left for the next claim to drop.
local function limit_usage(state, scope, c)
  local u = state.usage[scope]
  if not u then
    u = {running = 0, used = 0}
    if not c.concurrency then
      u.running = 0
    elseif state.leases then
      u.running = limit_holders(scope, state.now, state.leases)
    else
      u.running = redis.call('ZCARD', LIMIT_RUNNING_PREFIX .. scope)
    end
    if c.rate then
      local window = LIMIT_RATE_PREFIX .. scope
      redis.call('ZREMRANGEBYSCORE', window, '-inf', state.now - c.period)
      u.used = redis.call('ZCARD', window)
    end
    state.usage[scope] = u
  end
  return u
end

-- How many more tasks of `scope` may start now (a scope without a limit: a batch).
local function limit_room(state, scope, c)
  if not c then return LIMIT_RELEASE_MAX end
  local u = limit_usage(state, scope, c)
  local room = LIMIT_RELEASE_MAX
  if c.concurrency then room = math.min(room, c.concurrency - u.running) end
  if c.rate then room = math.min(room, c.rate - u.used) end
  return room
end

-- When a claim should look at `scope` again: when its window frees a place if that is
-- sooner than the recheck (slots free on ack, which releases waiters itself).
local function limit_next(state, scope, c)
  local at = state.now + LIMIT_RECHECK
  if c and c.rate and limit_usage(state, scope, c).used >= c.rate then
    local oldest = redis.call('ZRANGE', LIMIT_RATE_PREFIX .. scope, 0, 0, 'WITHSCORES')
    if oldest[2] then at = math.min(at, tonumber(oldest[2]) + c.period + 1) end
  end
  return at
end

-- Put up to `n` of the oldest waiters of `scope` back at the head of their queues,
-- the oldest to be claimed first. Ids that left meanwhile (cancelled) are dropped.
local function limit_release_waiters(scope, n)
  local waiting = LIMIT_WAITING_PREFIX .. scope
  local back = {}
  while #back < n do
    local id = redis.call('RPOP', waiting)
    if not id then break end
    local f = redis.pcall('HMGET', TASK_PREFIX .. id, 'task_stage', 'queue', 'limit_wait')
    if type(f) == 'table' and not f.err and f[1] == 'pending' and f[3] == scope then
      back[#back + 1] = {id, f[2]}
    end
  end
  for i = #back, 1, -1 do
    local id = back[i][1]
    if push_task(back[i][2], priority_of(id), id) then
      -- A damaged queue list: the task stays aside rather than in no list at all.
      redis.call('RPUSH', waiting, id)
    end
  end
  return #back
end

-- Release what the limit of a due scope allows now; look again later while tasks wait.
local function limit_look(state, scope)
  local c = state.config[scope]
  local room = limit_room(state, scope, c)
  if room > 0 then limit_release_waiters(scope, room) end
  if redis.call('LLEN', LIMIT_WAITING_PREFIX .. scope) > 0 then
    redis.call('ZADD', LIMIT_DUE, limit_next(state, scope, c), scope)
  else
    redis.call('ZREM', LIMIT_DUE, scope)
  end
end

-- claim.lua: the limits to apply, or nil when none are set and nothing waits (one
-- EXISTS is all an unlimited claim pays). Due scopes are looked at first, so the
-- waiters they release can be claimed by this very call. `leases` is the lease set.
local function limits_load(now, leases)
  if redis.call('EXISTS', LIMITS, LIMIT_DUE) == 0 then return nil end
  local state = {now = now, leases = leases, config = {}, usage = {}, queues = false}
  local any = false
  local flat = redis.call('HGETALL', LIMITS)
  for i = 1, #flat - 1, 2 do
    local c = limit_parse(flat[i + 1])
    if c then
      state.config[flat[i]] = c
      any = true
      if string.sub(flat[i], 1, 6) == 'queue:' then state.queues = true end
    end
  end
  local due = redis.call('ZRANGEBYSCORE', LIMIT_DUE, '-inf', now, 'LIMIT', 0, LIMIT_SCOPES_MAX)
  for _, scope in ipairs(due) do limit_look(state, scope) end
  if not any then return nil end
  return state
end

-- claim.lua, per id about to be claimed: true when a limit of its task name or queue
-- is reached, and the task is then set aside (behind the scope's waiters, or first when
-- it had been released from there). Otherwise it takes a slot (until `deadline`, its
-- lease) and a window place in each limited scope it belongs to, and its record lists
-- the slots to give back (field limit_slots).
local function limit_refuse(state, id, name, attempts, deadline)
  local key = TASK_PREFIX .. id
  local scopes = {}
  if name and state.config['task:' .. name] then scopes[1] = 'task:' .. name end
  if state.queues then
    local queue = redis.call('HGET', key, 'queue')
    if not queue or queue == '' then queue = DEFAULT_QUEUE end
    if state.config['queue:' .. queue] then scopes[#scopes + 1] = 'queue:' .. queue end
  end
  if #scopes == 0 then return false end
  for _, scope in ipairs(scopes) do
    local c = state.config[scope]
    if limit_room(state, scope, c) <= 0 then
      local waiting = LIMIT_WAITING_PREFIX .. scope
      if redis.call('HGET', key, 'limit_wait') then
        redis.call('RPUSH', waiting, id)
      else
        redis.call('LPUSH', waiting, id)
      end
      redis.call('HSET', key, 'limit_wait', scope)
      redis.call('ZADD', LIMIT_DUE, 'LT', limit_next(state, scope, c), scope)
      return true
    end
  end
  local slots = {}
  for _, scope in ipairs(scopes) do
    local c, u = state.config[scope], state.usage[scope]
    if c.concurrency then
      redis.call('ZADD', LIMIT_RUNNING_PREFIX .. scope, deadline, id)
      u.running = u.running + 1
      slots[#slots + 1] = scope
    end
    if c.rate then
      -- One member per attempt: a claim given back (attempt uncounted) and taken again
      -- overwrites its own place instead of using a second one.
      local window = LIMIT_RATE_PREFIX .. scope
      redis.call('ZADD', window, state.now, id .. ':' .. (tonumber(attempts) or 0))
      if not u.expires then
        redis.call('PEXPIRE', window, c.period)
        u.expires = true
      end
      u.used = u.used + 1
    end
  end
  if #slots > 0 then redis.call('HSET', key, 'limit_slots', table.concat(slots, ' ')) end
  redis.call('HDEL', key, 'limit_wait')
  return false
end

-- Hook of ack, nack, release, reap, recover and cancel, where a task stops holding its
-- place: it gives back its slots, each freed slot releases the oldest waiter of its
-- scope (unless the scope's window is full: a claim releases it when the window has
-- room), and a task cancelled while set aside leaves the waiting list.
local limits_set = nil
local function limit_release(id)
  -- Once per script call: with no limit set and no task waiting, an ack of a batch pays
  -- one EXISTS. Slots left behind by a removed limit lapse with their leases.
  if limits_set == nil then limits_set = redis.call('EXISTS', LIMITS, LIMIT_DUE) > 0 end
  if not limits_set then return end
  local key = TASK_PREFIX .. id
  local f = redis.pcall('HMGET', key, 'limit_slots', 'limit_wait')
  if type(f) ~= 'table' or f.err or (not f[1] and not f[2]) then return end
  if f[1] then
    redis.call('HDEL', key, 'limit_slots')
    for scope in string.gmatch(f[1], '%S+') do
      local running = LIMIT_RUNNING_PREFIX .. scope
      if redis.call('ZREM', running, id) == 1
          and redis.call('EXISTS', LIMIT_WAITING_PREFIX .. scope) == 1 then
        local t = redis.call('TIME')
        local state = {now = t[1] * 1000 + math.floor(t[2] / 1000), usage = {}}
        -- One waiter per freed slot: waiters released earlier may not be claimed yet,
        -- and the slots counted free would then be theirs.
        if limit_room(state, scope, limit_parse(redis.call('HGET', LIMITS, scope))) > 0 then
          limit_release_waiters(scope, 1)
        end
      end
    end
  end
  if f[2] then redis.call('LREM', LIMIT_WAITING_PREFIX .. f[2], 0, id) end
end

-- Unique tasks and cancel ----------------------------------------------------------------

-- ack.lua, a task cancelled while it ran: its result goes, what it printed so far stays
-- (as for any ended task) with its timings, and a run the cancel stopped records why.
-- `at` is the task's first value in ack.lua's ARGV; `stopped`, `progress` and `chunks`
-- the places of its error message, progress and log chunks (false when absent).
local function keep_cancelled_run(key, id, at, stopped, progress, chunks, nchunks)
  local ttl = ARGV[at + 1]
  redis.call('DEL', RESULT_PREFIX .. id)
  redis.call('HSET', key, 'updated_at', ARGV[2], 'started_ms', ARGV[at + 6],
    'duration_ms', ARGV[at + 2], 'log_bytes', ARGV[at + 3], 'log_dropped', ARGV[at + 4])
  if ARGV[at + 5] ~= '' then
    redis.call('HSET', key, 'log_file', ARGV[at + 5])
  end
  if stopped then
    redis.call('HSET', key, 'error', ARGV[stopped], 'error_kind', 'cancelled', 'retryable', '0')
  end
  if progress then
    redis.call('HSET', key, 'progress', ARGV[progress], 'progress_message',
      ARGV[progress + 1], 'progress_ms', ARGV[1])
  end
  local logs = LOGS_PREFIX .. id
  redis.call('DEL', logs)
  if nchunks > 0 then
    redis.call('RPUSH', logs, unpack(ARGV, chunks, chunks + nchunks - 1))
    redis.call('PEXPIRE', logs, ttl)
  end
  -- The reference keeps its records: in compat mode they do not expire.
  if not COMPAT then redis.call('PEXPIRE', key, ttl) end
end

-- enqueue.lua: the task holding the unique key of the task being enqueued (fields as
-- enqueue.lua's ARGV[7] JSON), when that task has not ended: {lock key, holder id}, or
-- {lock key} when the key is free (nil when the task has no unique key). An ended task
-- (completed, failed for good, cancelled) or a vanished record gives the key up.
local function unique_holder(fields_json)
  if not string.find(fields_json, '"unique_key"', 1, true) then return nil end
  local fields = cjson.decode(fields_json)
  local lock = UNIQUE_PREFIX .. fields['unique_key']
  local holder = redis.call('GET', lock)
  if holder then
    local stage = redis.pcall('HGET', TASK_PREFIX .. holder, 'task_stage')
    if type(stage) == 'string' and stage ~= 'completed' and stage ~= 'failed'
        and stage ~= 'cancelled' then
      return {lock, holder}
    end
  end
  return {lock, false, tonumber(fields['unique_for']) or 0}
end

-- enqueue.lua: the new task `id` takes the free key `unique` (from unique_holder).
local function unique_take(unique, id)
  if not unique then return end
  if unique[3] > 0 then
    redis.call('SET', unique[1], id, 'PX', unique[3])
  else
    redis.call('SET', unique[1], id)
  end
end

-- dlq_redrive.lua --latest: the task's record moves onto its task's current registered
-- version (a task no longer registered keeps its own, and fails as unregistered).
local function redrive_latest(key, registry)
  local record = redis.call('HGET', registry, redis.call('HGET', key, 'task_name') or '')
  if not record then return end
  local digest, version = registered_version(record)
  if digest == '' then return end
  redis.call('HSET', key, 'digest', digest, 'task_version', version)
end
