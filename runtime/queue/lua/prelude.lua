-- Helpers every script in this directory can use; not a script of its own.
--
-- The loader (scripts.py) registers each script as: the key constants it generates
-- from keys.py (DEFAULT_QUEUE, QUEUE_PREFIX, TASK_PREFIX, ..., QUEUE_PARTS), then this
-- file, then the script. Key names therefore live in keys.py only: a script names a key
-- it derives with these constants and helpers, never with a literal.

-- Most arguments per command: unpack has to fit them on Lua's C stack.
local CHUNK = 1000

-- keys.queue(): the default queue keeps the reference layout (task_queue:<part>), a
-- named one has its name inserted. A record without a queue field (nil or '') belongs
-- to the default queue.
local function queue_key(queue, part)
  if not QUEUE_PARTS[part] then
    error('unknown queue part ' .. tostring(part))
  end
  if not queue or queue == '' or queue == DEFAULT_QUEUE then
    return QUEUE_PREFIX .. part
  end
  return QUEUE_PREFIX .. queue .. ':' .. part
end

-- keys.wake(), with the same default as queue_key.
local function wake_key(queue)
  if not queue or queue == '' then
    return WAKE_PREFIX .. DEFAULT_QUEUE
  end
  return WAKE_PREFIX .. queue
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

-- {pending list, wake-token list} of a queue; nil and an error reply (ending with
-- `refused`) when either holds another type, as pushing there would stop the script
-- half way. Scripts check every queue before their first write.
local function queue_lists(queue, refused)
  local pending, wake = queue_key(queue, 'pending'), WAKE_PREFIX .. queue
  for _, list in ipairs({pending, wake}) do
    local kind = redis.call('TYPE', list).ok
    if kind ~= 'list' and kind ~= 'none' then
      return nil, redis.error_reply('ERR ' .. list .. ' is a ' .. kind .. ', not a list: ' .. refused)
    end
  end
  return {pending, wake}
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

-- RPUSH ids (at least one) onto a pending list with one wake token each; the trim keeps
-- tokens from outnumbering the tasks there are (length >= #ids > 0, so 0..length-1
-- never means "all").
local function push_pending(pending, wake, ids)
  local length = 0
  each_chunk(ids, CHUNK, function(...) length = redis.call('RPUSH', pending, ...) end)
  add_wake_tokens(wake, #ids)
  redis.call('LTRIM', wake, 0, length - 1)
end
