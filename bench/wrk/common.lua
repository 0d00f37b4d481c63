-- Shared by the scenarios: random bearer tokens and user ids from files run.py writes.
local function lines(path)
  local out = {}
  for line in io.lines(path) do out[#out + 1] = line end
  return out
end

tokens = lines(os.getenv("BENCH_TOKENS"))
api_key = os.getenv("BENCH_API_KEY")
users = lines(os.getenv("BENCH_USERS"))

function pick(list)
  return list[math.random(#list)]
end

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end
-- Appended to every scenario: prints one JSON line wrk's caller parses.
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format(
    'RESULT {"requests":%d,"seconds":%.3f,"errors":%d,"non2xx":%d,"p50_ms":%.3f,"p99_ms":%.3f}\n',
    summary.requests, summary.duration / 1e6, errors, summary.errors.status,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
