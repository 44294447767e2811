-- Cancel a task.
--
-- KEYS[1] task hash        task_metadata:<id>
-- KEYS[2] scheduled zset   task_set:scheduled (scored in Unix seconds)
-- ARGV[1] id
-- ARGV[2] now ms
-- ARGV[3] now as RFC3339 (updated_at)
-- ARGV[4] result retention ms
-- Per-task keys derived here: the pending lists of the task's queue (field `queue`),
-- task_payload:<id> (expires with the record); channels task_done:<id> and
-- wasmq:cancel (CANCEL_CHANNEL, the id of a running task).
--
-- A pending, scheduled, retrying or paused task (a cron entry included) leaves its
-- list or set and becomes cancelled. A running task is marked, and its id published on
-- CANCEL_CHANNEL: the worker holding it stops its run (or does not start it) and acks
-- it, keeping its output so far; its result, if it still ended first, is discarded. Returns {status, previous stage} with status
-- cancelled, marked, final (it had already ended) or missing.

if redis.call('TYPE', KEYS[1])['ok'] ~= 'hash' then
  return {'missing', ''}
end
local stage = stage_at(KEYS[1]) or 'pending'
if stage == 'completed' or stage == 'failed' or stage == 'cancelled' then
  return {'final', stage}
end
local status = 'cancelled'
if stage == 'in_progress' then
  status = 'marked'
  redis.call('PUBLISH', CANCEL_CHANNEL, ARGV[1])
else
  local queue = redis.call('HGET', KEYS[1], 'queue')
  remove_pending(queue, ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
limit_release(ARGV[1])
set_stage(KEYS[1], 'cancelled', 'updated_at', ARGV[3], 'finished_ms', ARGV[2])
-- The reference keeps its records: in compat mode they do not expire.
if not COMPAT then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  redis.call('PEXPIRE', PAYLOAD_PREFIX .. ARGV[1], ARGV[4])
end
flow_cancelled(KEYS[1], ARGV[2], ARGV[4])
redis.call('PUBLISH', DONE_CHANNEL_PREFIX .. ARGV[1], 'cancelled')
return {status, stage}
