-- GET /v1/users/{id}/tweets?limit=20, accepting gzip, for one of 1,000 hot authors (the
-- first of the shuffled users), so that a response cache holds every page: the cache
-- scenario runs it against a server with the cache and one without.
dofile(os.getenv("BENCH_DIR") .. "/wrk/common.lua")

local hot = {}
for i = 1, math.min(1000, #users) do hot[i] = users[i] end

request = function()
  return wrk.format("GET", "/v1/users/" .. pick(hot) .. "/tweets?limit=20", {
    ["x-api-key"] = api_key,
    ["Accept-Encoding"] = "gzip",
  })
end
