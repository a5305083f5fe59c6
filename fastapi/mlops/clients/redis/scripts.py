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

# KEYS[1] the index of predictions, then the streams of the models in this call.
# ARGV[1] a stream's length in predictions, ARGV[2] the oldest entry id a stream keeps
# (its age limit), ARGV[3] the predictions, a line a stream entry: the stream's position
# in KEYS, the entry's prediction ids (space-separated) and their records (a JSON list),
# tab-separated; ARGV[4] the predictions an entry holds at most. Adds each line as an
# entry of fields `ids` and `records`, indexes each id as "stream entry#position", then
# trims each stream to its limits, whole entries oldest first, their ids leaving the
# index with them: the index never holds more than the streams do. The index also
# counts each stream's predictions, under "#" and the stream's key (no prediction id
# starts with "#"); a stream written before entries held many (fields `id` and
# `record`, one prediction each) starts its count at its length.
RECORD_PREDICTIONS = """
local index, maxlen, minid, per_entry = KEYS[1], tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[4])
local counts = {}
for k = 2, #KEYS do
  redis.call('HSETNX', index, '#' .. KEYS[k], redis.call('XLEN', KEYS[k]))
  counts[k] = tonumber(redis.call('HGET', index, '#' .. KEYS[k]))
end
local located = {}
for position, ids, records in string.gmatch(ARGV[3], '(%d+)\\t([^\\t]+)\\t([^\\n]+)') do
  local k = tonumber(position)
  local entry = redis.call('XADD', KEYS[k], '*', 'ids', ids, 'records', records)
  local place = KEYS[k] .. ' ' .. entry .. '#'
  local n = 0
  for id in string.gmatch(ids, '%S+') do
    located[#located + 1] = id
    located[#located + 1] = place .. n
    n = n + 1
  end
  counts[k] = counts[k] + n
end
if #located > 0 then redis.call('HSET', index, unpack(located)) end
-- Stream entries as {entry id, its predictions' ids}: the ids are its first field's
-- value (`ids`, or `id` before entries held many), split once.
local function with_ids(entries)
  local found = {}
  for _, entry in ipairs(entries) do
    local ids = {}
    for id in string.gmatch(entry[2][2], '%S+') do ids[#ids + 1] = id end
    found[#found + 1] = {entry[1], ids}
  end
  return found
end
-- Takes entries (`with_ids`) out of a stream and their ids out of the index, a command
-- for a thousand at most (each command costs, and is written to the append-only file;
-- unpack's stack is bounded); how many predictions went.
local function remove(stream, entries)
  local ids, gone, n = {}, {}, 0
  local function flush()
    if #ids > 0 then redis.call('HDEL', index, unpack(ids)); n = n + #ids; ids = {} end
    if #gone > 0 then redis.call('XDEL', stream, unpack(gone)); gone = {} end
  end
  for _, entry in ipairs(entries) do
    for _, id in ipairs(entry[2]) do ids[#ids + 1] = id end
    gone[#gone + 1] = entry[1]
    if #ids >= 1000 or #gone == 1000 then flush() end
  end
  flush()
  return n
end
for k = 2, #KEYS do
  local stream = KEYS[k]
  local expired = with_ids(redis.call('XRANGE', stream, '-', '(' .. minid))
  counts[k] = counts[k] - remove(stream, expired)
  while counts[k] > maxlen do
    -- Entries of `per_entry` would do: no more read (each is kilobytes, read whole).
    local enough = math.ceil((counts[k] - maxlen) / per_entry)
    local oldest = with_ids(redis.call('XRANGE', stream, '-', '+', 'COUNT', enough))
    local gone, left = {}, counts[k]
    for _, entry in ipairs(oldest) do
      if left <= maxlen then break end
      left = left - #entry[2]
      gone[#gone + 1] = entry
    end
    if #gone == 0 then counts[k] = 0; break end  -- an empty stream: its count restarts
    counts[k] = counts[k] - remove(stream, gone)
  end
  redis.call('HSET', index, '#' .. stream, counts[k])
end
return 1
"""

# KEYS[1] a model's label stream, KEYS[2] the index of predictions. ARGV[1] the
# stream's length, ARGV[2] the oldest entry id it keeps; then two per label: the
# prediction id, the entry's field, value pairs as a JSON list. Adds each label, and
# removes the one sent before for the same prediction: 1 added, 2 replaced one, 0 the
# prediction left the index meanwhile.
JOIN_LABELS = """
local stream, index, maxlen, minid = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local outcomes = {}
for i = 0, (#ARGV - 2) / 2 - 1 do
  local id = ARGV[2 * i + 3]
  local current = redis.call('HGET', index, id)
  if not current then
    outcomes[i + 1] = 0
  else
    local source, prediction, previous = string.match(current, '^(%S+) (%S+) ?(%S*)$')
    if previous ~= '' then
      redis.call('XDEL', stream, previous)
    end
    local entry = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*',
      unpack(cjson.decode(ARGV[2 * i + 4])))
    redis.call('HSET', index, id, source .. ' ' .. prediction .. ' ' .. entry)
    outcomes[i + 1] = previous ~= '' and 2 or 1
  end
end
redis.call('XTRIM', stream, 'MINID', '~', minid)
return outcomes
"""

# KEYS[1] the rollouts in progress, KEYS[2] the model's ended ones. ARGV[1] the model,
# ARGV[2] the rollout's id, ARGV[3] its end (JSON), ARGV[4] how many ended ones to keep.
# Ends the rollout if it is still the one in progress: 1, else 0 (another process
# ended it first, or another rollout started since).
END_ROLLOUT = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current or cjson.decode(current)['id'] ~= ARGV[2] then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('LPUSH', KEYS[2], ARGV[3])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
return 1
"""

# KEYS[1] a claim, KEYS[2] the alert stream. ARGV[1] the claim's lifetime in seconds,
# ARGV[2] the stream's length, then the alert's field, value pairs. Publishes the alert
# unless the claim is held: at most once per lifetime, whoever asks.
PUBLISH_ONCE_IN = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return false
end
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
"""

# KEYS[1] the retrainings in flight (model -> record), KEYS[2] the model's cooldown.
# ARGV[1] the model, ARGV[2] its in-flight record, ARGV[3] the cooldown in seconds. One
# retraining in flight per model, one started per cooldown, whichever process asks.
CLAIM_RETRAINING = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 'in_flight' end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'cooling' end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
return 'claimed'
"""

# KEYS[1] a hash. ARGV[1] a field, ARGV[2] the value it must hold, ARGV[3] (optional)
# the value to put instead; without it the field is removed. Compare-and-set, so one
# process, the one that read the value, acts on it.
SWAP_FIELD = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
if ARGV[3] then redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
else redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1
"""

# KEYS[1] a job's record; ARGV field, value pairs. Written only into a record that
# exists: a late write must not make a partial record of one trimmed away.
SET_IF_RECORDED = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

# KEYS[1] a job's record. ARGV[1] the unfinished statuses as MARK_RUNNING's. The job's
# work is claimed once, and only while the job is unfinished: the trainer's queue and the
# job's entrypoint may both offer it; whoever claims first runs it.
CLAIM_WORK = """
local status = redis.call('HGET', KEYS[1], 'status')
for _, unfinished in ipairs(cjson.decode(ARGV[1])) do
  if status == unfinished then
    return redis.call('HSETNX', KEYS[1], 'claimed', 'true')
  end
end
return 0
"""
