//! The Lua scripts behind the feeds in Redis, one per change, each run on one feed's key
//! so that every change is atomic (the member layout they rely on is described in
//! [`super`]). They share a prelude of helpers (the feed's state, whether the owner
//! follows an author, merging entries under the feed's cap), and kept apart from the Rust
//! that calls them they read as what they are: the feed's state machine.

use redis::Script;

/// Helpers every script starts with. `KEYS[1]` is the feed.
const PRELUDE: &str = r"
local key = KEYS[1]
local function state()
  return redis.call('ZRANGEBYLEX', key, '[\255s', '(\255t')[1]
end
local function set_state(old, new)
  if old ~= new then
    if old then redis.call('ZREM', key, old) end
    redis.call('ZADD', key, 0, new)
  end
end
local function follows(owner, author)
  return author == owner or redis.call('ZSCORE', key, '\255f' .. author)
end
local function cut_below(entry)
  local rank = redis.call('ZRANK', key, entry)
  if rank and rank > 0 then redis.call('ZREMRANGEBYRANK', key, 0, rank - 1) end
end
-- Merges entries ARGV[from..to], which hold every tweet of their authors at or above
-- the oldest of them (all of them when complete); keeps at most cap entries.
local function merge(from, to, complete, cap)
  local st = state()
  local floor = nil
  if st == '\255si' then
    floor = redis.call('ZRANGEBYLEX', key, '-', '(\255', 'LIMIT', 0, 1)[1]
  end
  local oldest = nil
  for i = from, to do
    redis.call('ZADD', key, 0, ARGV[i])
    if oldest == nil or redis.call('ZRANK', key, ARGV[i]) < redis.call('ZRANK', key, oldest) then
      oldest = ARGV[i]
    end
  end
  if floor then cut_below(floor) end
  if not complete and oldest then
    cut_below(oldest)
    set_state(st, '\255si')
    st = '\255si'
  end
  local count = redis.call('ZLEXCOUNT', key, '-', '(\255')
  if count > cap then
    redis.call('ZREMRANGEBYRANK', key, 0, count - cap - 1)
    set_state(st, '\255si')
  end
end
local function drop_if_useless()
  if state() == '\255si' and redis.call('ZLEXCOUNT', key, '-', '(\255') == 0 then
    redis.call('DEL', key)
  end
end
";

/// `KEYS[2]` the popular set; `ARGV`: upper bound (exclusive lex range), count, ttl.
/// Returns false when cold, else `{entries, floor or '', popular followees}`.
pub(super) const READ: &str = r"
local st = state()
if not st or string.sub(st, 3, 3) == 'b' then return false end
local entries = redis.call('ZREVRANGEBYLEX', key, ARGV[1], '-', 'LIMIT', 0, tonumber(ARGV[2]))
local floor = ''
if st == '\255si' then
  floor = redis.call('ZRANGEBYLEX', key, '-', '(\255', 'LIMIT', 0, 1)[1] or ''
end
local popular = {}
local followees = redis.call('ZRANGEBYLEX', key, '[\255f', '(\255g')
for i = 1, #followees, 500 do
  local ids = {}
  for j = i, math.min(i + 499, #followees) do
    table.insert(ids, string.sub(followees[j], 3))
  end
  local flags = redis.call('SMISMEMBER', KEYS[2], unpack(ids))
  for j, flag in ipairs(flags) do
    if flag == 1 then table.insert(popular, ids[j]) end
  end
end
redis.call('EXPIRE', key, ARGV[3])
return {entries, floor, popular}
";

/// `ARGV`: token, ttl.
pub(super) const BEGIN_BUILD: &str = r"
if redis.call('EXISTS', key) == 1 then return 0 end
redis.call('ZADD', key, 0, '\255sb' .. ARGV[1])
redis.call('EXPIRE', key, ARGV[2])
return 1
";

/// `ARGV`: token, owner, complete (1/0), cap, ttl, followee count n, n followees, then
/// the entries.
pub(super) const FINISH_BUILD: &str = r"
local st = state()
if st ~= '\255sb' .. ARGV[1] then return 0 end
local owner = ARGV[2]
local n = tonumber(ARGV[6])
for i = 7, 6 + n do redis.call('ZADD', key, 0, '\255f' .. ARGV[i]) end
for _, entry in ipairs(redis.call('ZRANGEBYLEX', key, '-', '(\255')) do
  if not follows(owner, string.sub(entry, 17, 32)) then redis.call('ZREM', key, entry) end
end
set_state(st, '\255sc')
merge(7 + n, #ARGV, ARGV[3] == '1', tonumber(ARGV[4]))
drop_if_useless()
redis.call('EXPIRE', key, ARGV[5])
return 1
";

/// `ARGV`: owner, entry, cap.
pub(super) const PUSH: &str = r"
local st = state()
if not st then return 0 end
if string.sub(st, 3, 3) == 'b' then
  redis.call('ZADD', key, 0, ARGV[2])
  return 1
end
if not follows(ARGV[1], string.sub(ARGV[2], 17, 32)) then return 0 end
merge(2, 2, true, tonumber(ARGV[3]))
return 1
";

/// `ARGV`: followee, complete (1/0), cap, then the followee's recent entries.
pub(super) const FOLLOW: &str = r"
local st = state()
if not st then return 0 end
if string.sub(st, 3, 3) == 'b' then redis.call('DEL', key) return 0 end
redis.call('ZADD', key, 0, '\255f' .. ARGV[1])
merge(4, #ARGV, ARGV[2] == '1', tonumber(ARGV[3]))
drop_if_useless()
return 1
";

/// `ARGV`: followee.
pub(super) const UNFOLLOW: &str = r"
local st = state()
if not st then return 0 end
if string.sub(st, 3, 3) == 'b' then redis.call('DEL', key) return 0 end
redis.call('ZREM', key, '\255f' .. ARGV[1])
for _, entry in ipairs(redis.call('ZRANGEBYLEX', key, '-', '(\255')) do
  if string.sub(entry, 17, 32) == ARGV[1] then redis.call('ZREM', key, entry) end
end
drop_if_useless()
return 1
";

/// `ARGV`: owner (unused), the tweet id, and the id followed by sixteen 0xff bytes (the
/// range of its entry).
pub(super) const REMOVE: &str = r"
local st = state()
if not st then return 0 end
if string.sub(st, 3, 3) == 'b' then redis.call('DEL', key) return 0 end
redis.call('ZREMRANGEBYLEX', key, '[' .. ARGV[2], '[' .. ARGV[3])
drop_if_useless()
return 1
";

pub(super) fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}{body}"))
}
