"""The queue: the task model, Redis key names, Lua scripts, the broker, reaper and queries."""
