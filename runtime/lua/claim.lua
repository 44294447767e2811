-- Claim up to `count` tasks from the worker's queues, in the order given.
--
-- KEYS[1]        lease zset        task_set:timeout
-- KEYS[2q]       pending list of queue q (q = 1..n)
-- KEYS[2q+1]     processing list of queue q
-- ARGV[1] now ms
-- ARGV[2] now as RFC3339 (updated_at)
-- ARGV[3] count
-- ARGV[4] lease grace ms
-- ARGV[5] worker id
-- ARGV[6] default timeout ms (when the task's own cannot be read)
-- ARGV[7] ceiling on a task's timeout, ms
-- Per-task keys derived here: task_metadata:<id>.
--
-- Each claimed id moves pending -> processing, its hash gets task_stage in_progress,
-- attempts + 1, worker and started_ms, and its lease deadline (now + timeout + grace)
-- goes into task_set:timeout, all in this one step. Ids whose task already ended
-- (a duplicate push) are dropped. Returns a list of {id, queue index, flat hash};
-- the hash is empty when the task record is missing (the caller reports and drops it).

local now = tonumber(ARGV[1])
local count = tonumber(ARGV[3])
local grace = tonumber(ARGV[4])
local default_timeout = tonumber(ARGV[6])
local ceiling = tonumber(ARGV[7])
local units = {ns = 1e-6, us = 1e-3, ms = 1, s = 1000, m = 60000, h = 3600000, d = 86400000}

-- Go duration strings ("30s", "1m30s", "250ms") or bare seconds, as the reference writes them.
local function duration_ms(text)
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

local out = {}
local nqueues = (#KEYS - 1) / 2
for q = 1, nqueues do
  local pending, processing = KEYS[2 * q], KEYS[2 * q + 1]
  while #out < count do
    local id = redis.call('RPOP', pending)
    if not id then break end
    local key = 'task_metadata:' .. id
    -- A missing record, or a key of another type, cannot be run: the caller drops the id.
    if redis.call('TYPE', key)['ok'] ~= 'hash' then
      out[#out + 1] = {id, q, {}}
    else
      -- One read and one write per task: this runs for every task the workers take.
      local got = redis.call('HMGET', key, 'task_stage', 'timeout', 'attempts')
      local stage = got[1]
      if stage ~= 'completed' and stage ~= 'failed' and stage ~= 'cancelled' then
        redis.call('LPUSH', processing, id)
        local timeout = math.min(duration_ms(got[2] or nil), ceiling)
        redis.call('ZADD', KEYS[1], now + timeout + grace, id)
        -- Never HINCRBY: a damaged counter would abort the script half way.
        local n = tonumber(got[3] or '0')
        if n then
          redis.call('HSET', key, 'task_stage', 'in_progress', 'worker', ARGV[5],
            'started_ms', ARGV[1], 'updated_at', ARGV[2], 'attempts', tostring(math.floor(n) + 1))
        else
          redis.call('HSET', key, 'task_stage', 'in_progress', 'worker', ARGV[5],
            'started_ms', ARGV[1], 'updated_at', ARGV[2])
        end
        out[#out + 1] = {id, q, redis.call('HGETALL', key)}
      end
    end
  end
  if #out >= count then break end
end
return out
