-- Claim up to `count` tasks from the worker's queues, in the order given.
--
-- KEYS[1]        lease zset        task_set:timeout (scored in Unix seconds)
-- KEYS[4q-2]     pending list of queue q (q = 1..n), its default priority level
-- KEYS[4q-1]     processing list of queue q
-- KEYS[4q]       wake-token list of queue q   wasmq:wake:<queue>
-- KEYS[4q+1]     idle workers of queue q      wasmq:idle:<queue>
-- KEYS[#KEYS]    this worker's wake tokens    wasmq:wakeup:<worker id>
-- ARGV[1] now ms
-- ARGV[2] now as RFC3339 (updated_at)
-- ARGV[3] count
-- ARGV[4] lease grace ms
-- ARGV[5] worker id
-- ARGV[6] default timeout ms (when the task's own cannot be read)
-- ARGV[7] ceiling on a task's timeout, ms
-- ARGV[8..] the fields to return, starting task_stage, task_name, timeout, attempts,
--           payload_ref
-- Per-task keys derived here: task_metadata:<id>, task_payload:<id> (read when the
-- record says its payload is stored there and it is small enough to return). Per-queue
-- keys derived here: the pending lists of the other priority levels, beside KEYS[4q-2];
-- a queue's higher levels are taken first (strict: lower levels wait while higher ones
-- hold tasks), and its wake tokens are trimmed to the tasks left at all levels.
--
-- Each claimed id moves pending -> processing, its hash gets task_stage in_progress,
-- attempts + 1 (not in compat mode, where attempts counts failed attempts as the
-- reference's do), worker (what marks a wasmq claim: the reaper leaves leases without
-- it to the reference workers) and started_ms, and its lease deadline (now + timeout +
-- grace) goes into task_set:timeout, all in this one step. Ids whose task already ended
-- (a duplicate push) are dropped. Ids over a rate or concurrency limit of their task
-- name or queue go aside (prelude.lua, limit_refuse) and are not returned. The wake
-- tokens of each queue are trimmed to its pending length, so no idle worker wakes for
-- a task that is gone; the worker is no longer idle, and tokens addressed to it are
-- dropped (it claims again while the queues hold tasks, so it needs none).
-- Returns {{{id, queue index, field values, payload or false}, ...}, pending left}: the
-- values are empty when the task record is missing or not a hash (the caller reports
-- and drops it); the payload is false when it is in the hash or must be read separately
-- (too large).

local now = tonumber(ARGV[1])
local count = tonumber(ARGV[3])
local grace = tonumber(ARGV[4])
local default_timeout = tonumber(ARGV[6])
local ceiling = tonumber(ARGV[7])
-- Payloads stored apart up to this size come back with the claim (one round trip);
-- larger ones the worker reads with a plain GET, so they never pass through Lua.
local inline_payload = 65536
local units = {ns = 1e-6, us = 1e-3, ms = 1, s = 1000, m = 60000, h = 3600000, d = 86400000}

-- Go duration strings ("30s", "1m30s", "250ms") or bare seconds, as the reference writes them.
local parsed = {}
local function parse_duration(text)
  if not text or text == '' then return default_timeout end
  local n = tonumber(text)
  if n then return n * 1000 end
  local total, pos = 0, 1
  while pos <= #text do
    local s, e, num, unit = string.find(text, '^(%d+%.?%d*)(%a+)', pos)
    if not s or not units[unit] then return default_timeout end
    total = total + tonumber(num) * units[unit]
    pos = e + 1
  end
  if total <= 0 then return default_timeout end
  return total
end

-- A batch's tasks mostly share one timeout: parse each text once.
local function duration_ms(text)
  local key = text or ''
  local ms = parsed[key]
  if not ms then
    ms = parse_duration(text)
    parsed[key] = ms
  end
  return ms
end

local out = {}
local leases = {}
local left = 0
local nqueues = (#KEYS - 2) / 4
redis.call('DEL', KEYS[#KEYS])
local limits = limits_load(now, KEYS[1])
for q = 1, nqueues do
  local pending, processing, wake = KEYS[4 * q - 2], KEYS[4 * q - 1], KEYS[4 * q]
  redis.call('ZREM', KEYS[4 * q + 1], ARGV[5])
  if #out < count then
    local ids = pop_pending(pending, count - #out)
    if ids then
      local claimed = {}
      for _, id in ipairs(ids) do
        local key = TASK_PREFIX .. id
        -- Only the fields a worker needs (ARGV[8..]), in the caller's order: a whole
        -- HGETALL converted into Lua and back costs more than the rest of the claim.
        local got = redis.pcall('HMGET', key, unpack(ARGV, 8))
        if type(got) ~= 'table' or got.err
            or (not got[1] and not got[2] and redis.call('EXISTS', key) == 0) then
          out[#out + 1] = {id, q, {}, false}
        else
          local stage = got[1]
          if stage ~= 'completed' and stage ~= 'failed' and stage ~= 'cancelled'
              and not (limits and limit_refuse(limits, id, got[2], got[4],
                now + math.min(duration_ms(got[3]), ceiling) + grace)) then
            claimed[#claimed + 1] = id
            local timeout = math.min(duration_ms(got[3]), ceiling)
            leases[#leases + 1] = lease_score(now + timeout + grace)
            leases[#leases + 1] = id
            if COMPAT then
              redis.call('HSET', key, 'task_stage', 'in_progress', 'worker', ARGV[5],
                'started_ms', ARGV[1], 'updated_at', ARGV[2])
              redis.call('HDEL', key, 'wasmq_stage')
            else
              -- Never HINCRBY: a damaged counter would abort the script half way.
              local n = tonumber(got[4] or '0')
              local attempts = n and tostring(math.floor(n) + 1) or got[4]
              redis.call('HSET', key, 'task_stage', 'in_progress', 'worker', ARGV[5],
                'started_ms', ARGV[1], 'updated_at', ARGV[2], 'attempts', attempts)
              got[4] = attempts
            end
            got[1] = 'in_progress'
            local payload = false
            if got[5] then
              local pkey = PAYLOAD_PREFIX .. id
              if redis.call('STRLEN', pkey) <= inline_payload then
                payload = redis.call('GET', pkey) or ''
              end
            end
            out[#out + 1] = {id, q, got, payload}
          end
        end
      end
      if #claimed > 0 then
        redis.call('LPUSH', processing, unpack(claimed))
      end
    end
  end
  local remaining = pending_total(pending)
  left = left + remaining
  if remaining == 0 then
    redis.call('DEL', wake)
  else
    redis.call('LTRIM', wake, 0, remaining - 1)
  end
end
if #leases > 0 then
  redis.call('ZADD', KEYS[1], unpack(leases))
end
return {out, left}
