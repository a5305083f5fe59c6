"""The Lua scripts of the stores: each a check and a write in one atomic step. Fixed
text (loaded once with `register_script`, then run by its SHA); what varies, such as
the statuses a check accepts, comes in ARGV as JSON."""

from __future__ import annotations

# KEYS[1] a job's record. ARGV[1] the statuses (JSON-encoded, as a JSON list) that
# count as unfinished; ARGV[2] "running" and ARGV[3] the start time, JSON-encoded.
# Check-and-set, so a late "running" never overwrites a final status.
MARK_RUNNING = """
local status = redis.call('HGET', KEYS[1], 'status')
for _, unfinished in ipairs(cjson.decode(ARGV[1])) do
  if status == unfinished then
    redis.call('HSET', KEYS[1], 'status', ARGV[2])
    redis.call('HSETNX', KEYS[1], 'started_at', ARGV[3])
    return 1
  end
end
return 0
"""

# KEYS[1] a job's record. ARGV[1] the unfinished statuses as MARK_RUNNING's; then field,
# value pairs. Progress of an unfinished job (a search's trials): never after its end,
# never into a record that was trimmed away.
PROGRESS = """
local status = redis.call('HGET', KEYS[1], 'status')
for _, unfinished in ipairs(cjson.decode(ARGV[1])) do
  if status == unfinished then
    redis.call('HSET', KEYS[1], unpack(ARGV, 2))
    return 1
  end
end
return 0
"""

# KEYS[1] a job's record, KEYS[2] a stream. ARGV[1] the record's claim field, ARGV[2]
# the stream's length, then the entry's field, value pairs. Appends a job's entry (its
# final alert, its move of the champion) once: the claim is taken, or nothing is done.
APPEND_ONCE = """
if redis.call('HSETNX', KEYS[1], ARGV[1], 'true') == 0 then
  return false
end
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
"""

# KEYS: the active set, the job's record, the index, its model's index. ARGV[1] the
# limit (0: none), ARGV[2] the job id, ARGV[3] its creation time, then the record's
# field, value pairs. Admits a job only while fewer than the limit are active.
ADMIT_JOB = """
local limit = tonumber(ARGV[1])
if limit > 0 and redis.call('SCARD', KEYS[1]) >= limit then
  return 0
end
redis.call('HSET', KEYS[2], unpack(ARGV, 4))
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[2])
redis.call('SADD', KEYS[1], ARGV[2])
return 1
"""

# KEYS: the job's record, the active set, the totals, the run-time histogram. ARGV[1]
# the job id, ARGV[2] its status, ARGV[3] its run time in seconds, ARGV[4] the final
# statuses (JSON-encoded, as a JSON list), ARGV[5] the histogram's bounds (a JSON list),
# then the record's field, value pairs. Records a job's end; counts it (and its run
# time) the first time it ends only.
FINISH_JOB = """
local previous = redis.call('HGET', KEYS[1], 'status')
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('SREM', KEYS[2], ARGV[1])
for _, final in ipairs(cjson.decode(ARGV[4])) do
  if previous == final then
    return 0
  end
end
local status, seconds = ARGV[2], tonumber(ARGV[3])
redis.call('HINCRBY', KEYS[3], status, 1)
redis.call('HINCRBYFLOAT', KEYS[4], status .. ':sum', seconds)
for _, bound in ipairs(cjson.decode(ARGV[5])) do
  if seconds <= bound then
    redis.call('HINCRBY', KEYS[4], status .. ':le:' .. bound, 1)
  end
end
redis.call('HINCRBY', KEYS[4], status .. ':le:+Inf', 1)
return 1
"""

# KEYS[1] the definitions in use, KEYS[2] the archived ones. ARGV[1] the most that may be
# in use, ARGV[2] the name, ARGV[3] the definition. Creates it unless the name is in use
# (0) or the limit is reached (-1); a name that was archived is taken up again (1).
CREATE_MODEL = """
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 1 then
  return 0
end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[1]) then
  return -1
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('HDEL', KEYS[2], ARGV[2])
return 1
"""
