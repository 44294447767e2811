-- Record a running task's progress, only while this worker still runs it.
--
-- KEYS[1] task hash          task_metadata:<id>
-- ARGV[1] worker id
-- ARGV[2] progress value (a number)
-- ARGV[3] progress message ("" for none)
-- ARGV[4] now ms
--
-- The publisher thread writes late: by then the attempt may have been acked (the ack
-- wrote the final progress), recovered, or claimed by another worker, and none of
-- those may be overwritten. Returns 1 when written, 0 when refused.

local fields = redis.call('HMGET', KEYS[1], 'task_stage', 'worker')
if fields[1] ~= 'in_progress' or fields[2] ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'progress', ARGV[2], 'progress_message', ARGV[3],
  'progress_ms', ARGV[4])
return 1
